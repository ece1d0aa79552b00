"""Prompt Guard: the windowed jailbreak / injection classifier (guard) and its runner."""
