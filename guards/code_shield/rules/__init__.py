"""The project's own semgrep rules (YAML, one file per language), shipped as package data."""
