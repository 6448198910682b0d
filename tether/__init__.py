"""Tether: a self-hosted OpenAI Responses API server with durable, resumable streams."""

__version__ = "0.1.0"
