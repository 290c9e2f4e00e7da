"""Model definitions, loading saved models, and inference."""
