"""`server`: the limits `assistant serve` enforces per request and per process (see docs/SERVER.md)."""

from __future__ import annotations

from guards.policy.base import PolicyModel, PositiveInt, Seconds


class ServerConfig(PolicyModel):
    """Every limit refuses with a clear HTTP error (413 body, 400 messages, 429 busy) before any guard or model runs."""

    max_body_bytes: PositiveInt = 1_000_000  # request body size (413 past it)
    max_messages: PositiveInt = 200  # messages in one chat completions request (400 past it)
    max_concurrent_turns: PositiveInt = 8  # turns running at once across all clients (429 with Retry-After past it)
    turn_timeout_s: Seconds = 300.0  # one turn, guards and model included (the turn is cancelled past it)
    retry_after_s: PositiveInt = 1  # the Retry-After a busy server sends
