"""Errors raised by model backends. Both carry a message meant for the person running the assistant."""

from __future__ import annotations


class BackendError(RuntimeError):
    """The model backend failed: server down, bad response, scripted file exhausted or malformed, ..."""


class ModelNotFoundError(BackendError):
    """A model could not be found or loaded: what was looked for, why it failed, and how to fix it."""

    def __init__(self, looked_for: str, why: str, fix: str) -> None:
        self.looked_for = looked_for
        self.why = why
        self.fix = fix
        super().__init__(f"model not found: {looked_for}\n  why: {why}\n  fix: {fix}")
