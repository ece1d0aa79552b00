"""Llama Guard: its exact prompt (prompt), the in-process model (guard), a remote OpenAI-compatible server (remote,
remote_io), and its runner."""
