"""The tagging service: REST API and Label Studio ML backend (FastAPI)."""
