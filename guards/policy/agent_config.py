"""`agent`: the loop's limits, the prompt dialect and the streaming moderation of the model's output."""

from __future__ import annotations

from typing import Literal

from guards.policy.base import Flag, NonEmptyStr, NonNegativeInt, PolicyModel, PositiveInt


class StreamingModerationConfig(PolicyModel):
    """Check the model's output while it streams: every `chunk_chars` new characters a check judges the whole answer
    so far (the last check the whole answer). `lookback_chars` is no longer read (each check sees everything before
    it); it is still accepted so that existing policies load."""

    enabled: Flag = True
    chunk_chars: PositiveInt = 400
    # The first chunk only (null: chunk_chars): a smaller one shows the first checked text sooner while the next
    # chunk generates; the checks after it are chunk_chars apart. 48 characters is about 10 tokens: the first text
    # appears after one short check instead of after chunk_chars (about 100 tokens at the default 400).
    first_chunk_chars: PositiveInt | None = 48
    lookback_chars: NonNegativeInt = 200  # unused, see above


class AgentConfig(PolicyModel):
    system_prompt: NonEmptyStr | None = None
    dialect: Literal["meta", "hf"] = "meta"
    # How custom tools are offered and calls written back: json | function_tag (Llama 3.1) | pythonic (Llama 3.2/3.3
    # Python-list calls; Llama 4's only format). null: the family's default (json for llama3, pythonic for llama4).
    tool_format: Literal["json", "function_tag", "pythonic"] | None = None
    max_steps: PositiveInt = 8
    max_tool_retries: NonNegativeInt = 2
    # A user message longer than this is refused as bad input before anything runs or is stored.
    max_input_chars: PositiveInt = 100_000
    streaming_moderation: StreamingModerationConfig = StreamingModerationConfig()
