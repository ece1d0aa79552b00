"""`server`: the limits `assistant serve` enforces per request and per process (see docs/SERVER.md)."""

from __future__ import annotations

from guards.policy.base import NonNegativeInt, PolicyModel, PositiveInt, Seconds


class ServerConfig(PolicyModel):
    """Every limit refuses with a clear HTTP error (413 body, 400 messages, 429 busy) before any guard or model runs."""

    max_body_bytes: PositiveInt = 1_000_000  # request body size (413 past it)
    max_messages: PositiveInt = 200  # messages in one chat completions request (400 past it)
    max_concurrent_turns: PositiveInt = 8  # turns running at once across all clients (past it: the queue)
    queue_size: NonNegativeInt = 64  # requests waiting for a turn slot (429 with Retry-After past it; 0: no queue)
    queue_timeout_s: Seconds = 30.0  # the longest a request waits in the queue (then 429 with Retry-After)
    turn_timeout_s: Seconds = 300.0  # one turn, guards and model included (the turn is cancelled past it)
    retry_after_s: PositiveInt = 1  # the least Retry-After a busy server sends (it is computed from the queue)
