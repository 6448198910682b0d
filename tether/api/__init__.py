"""The HTTP API layer."""
