"""What the graph's nodes run on: the policy, the main model, the guards, the tools. Built once per Assistant."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from typing import TYPE_CHECKING

from assistant.agent.provenance import admit_tools
from model.backends.base import ModelBackend
from model.messages import Message, ToolSpec
from model.prompt_format import encode_dialog
from tools.executor import ToolPath

if TYPE_CHECKING:  # types only: the policy and pipeline modules are loaded by whoever builds the deps
    from guards.policy import Policy
    from guards.runtime.pipeline import GuardPipeline
    from model.tokenizer import Llama3Tokenizer
    from tools.base import Tool


@dataclass(frozen=True)
class Performance:
    """The agent's own performance switch (the others live where their work is done: KV-cache reuse in the backend,
    streaming moderation in the policy, Llama Guard's prefix cache in the guard, concurrent guards in the pipeline).

    `speculative`: start the model while the input guards (or the tool-result guards) still run; its output is used
    only if they pass. None: where the backend says a discarded generation is cheap and harmless (`speculation_ok`:
    local models, not a scripted file, whose lines it would consume, nor a paid remote API)."""

    speculative: bool | None = None

    def speculates(self, backend: ModelBackend) -> bool:
        if self.speculative is not None:
            return self.speculative
        return backend.speculation_ok


@dataclass(frozen=True)
class AgentDeps:
    policy: Policy
    backend: ModelBackend
    tokenizer: Llama3Tokenizer
    pipeline: GuardPipeline
    tools: Mapping[str, Tool]  # name -> tool (enabled tools only)
    tool_spec: ToolSpec
    today: Callable[[], date] = field(default=date.today)
    performance: Performance = field(default_factory=Performance)
    # name -> provenance record of each custom tool's definition (the deployer's, or a judged client tool's): a
    # definition without one never reaches the prompt (`encode` refuses it)
    tool_records: Mapping[str, str] = field(default_factory=dict)

    @property
    def custom_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tool_spec.tools)

    @property
    def builtin_names(self) -> tuple[str, ...]:
        return self.tool_spec.builtin_tools

    @cached_property
    def tool_path(self) -> ToolPath:
        return ToolPath(self.tools, self.policy, self.pipeline)

    def encode(self, messages: Sequence[Message]) -> list[int]:
        """The exact Llama 3.1 prompt for `messages`, with the policy's system prompt, dialect and tool format."""
        admit_tools(self.tool_spec.tools, self.tool_records)
        agent = self.policy.agent
        system = [Message("system", agent.system_prompt)] if agent.system_prompt else []
        return encode_dialog(
            [*system, *messages], self.tool_spec, today=self.today(), dialect=agent.dialect, tokenizer=self.tokenizer
        )

    @property
    def prompt_budget(self) -> int:
        """Prompt tokens that leave room for a full answer in the model's context window."""
        window = self.policy.models.main.context_window
        backend_window = self.backend.context_window
        if backend_window:  # the model's own limit, when the backend knows one, bounds the policy's
            window = min(window, int(backend_window))
        return max(1, window - self.policy.models.main.max_new_tokens)
