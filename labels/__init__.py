"""The label schema (codebooks) and everything that speaks to Label Studio."""
