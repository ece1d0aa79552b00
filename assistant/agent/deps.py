"""What the graph's nodes run on: the policy, the main model, the guards, the tools. Built once per Assistant."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

from assistant.agent.performance import Performance
from model.messages import Message, ToolSpec

if TYPE_CHECKING:
    from guards.pipeline import GuardPipeline
    from guards.policy import Policy


@dataclass(frozen=True)
class AgentDeps:
    policy: Policy
    backend: Any  # model.backends.base.ModelBackend
    tokenizer: Any  # model.tokenizer.Llama3Tokenizer
    pipeline: GuardPipeline
    tools: Mapping[str, Any]  # name -> tools.base.Tool (enabled tools only)
    tool_spec: ToolSpec
    today: Callable[[], date] = field(default=date.today)
    performance: Performance = field(default_factory=Performance)

    @property
    def custom_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tool_spec.tools)

    @property
    def builtin_names(self) -> tuple[str, ...]:
        return self.tool_spec.builtin_tools

    def encode(self, messages: Sequence[Message]) -> list[int]:
        """The exact Llama 3.1 prompt for `messages`, with the policy's system prompt, dialect and tool format."""
        from model.prompt_format import encode_dialog

        agent = self.policy.agent
        system = [Message("system", agent.system_prompt)] if agent.system_prompt else []
        return encode_dialog(
            [*system, *messages], self.tool_spec, today=self.today(), dialect=agent.dialect, tokenizer=self.tokenizer
        )

    @property
    def prompt_budget(self) -> int:
        """Prompt tokens that leave room for a full answer in the model's context window."""
        window = self.policy.models.main.context_window
        backend_window = getattr(self.backend, "context_window", None)
        if backend_window:  # the model's own limit, when the backend knows one, bounds the policy's
            window = min(window, int(backend_window))
        return max(1, window - self.policy.models.main.max_new_tokens)
