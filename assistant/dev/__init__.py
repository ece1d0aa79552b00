"""Developer-side helpers (not used by a guarded turn): building the tiny test models."""
