"""Serve a model: an OpenAI-compatible HTTP API (api.py) and an interactive chat (chat.py)."""
