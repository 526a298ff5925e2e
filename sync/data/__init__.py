"""Data shipped with the package (facts, examples)."""
