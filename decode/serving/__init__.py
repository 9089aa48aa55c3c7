"""OpenAI-compatible completions: the client (a served teacher) and the server (`python -m decode.serve`)."""
