"""Typed guard failures. The pipeline turns any of these into a verdict with `error` set, decided by `on_error`
(default block): a guard that cannot give a clean answer never counts as "safe"."""

from __future__ import annotations


class GuardError(Exception):
    """A guard could not produce a trustworthy verdict."""


class GuardModelNotFoundError(GuardError):
    """A guard model could not be loaded: the message names what was looked for, why it failed and how to fix it."""


class GuardOutputError(GuardError):
    """A guard model answered something that is not a valid verdict (for Llama Guard: neither `safe` nor
    `unsafe\\nS<n>[,S<n>...]`)."""


class GuardImageError(GuardError):
    """Images were given to a guard that must judge them but cannot see them (a text-only Llama Guard checkpoint, or
    a remote Llama Guard, which is sent token ids): never judged on the text alone, and blocked whatever `on_error`
    says (`guards.runtime.pipeline`)."""
