"""One run of the graph (a turn, or the rest of a paused one) as the data its nodes read besides the state.

`Agent.stream` builds one `TurnContext` per run and hands it to LangGraph as the run's context; every node receives
it as `runtime.context`. The run context is never checkpointed: the user's new text stays out of storage until the
input guard passed it and sealed it into `messages`, and the speculation slot (a running generation) is never stored.

Its methods are the guard calls every node makes the same way: with the thread's recent conversation as context,
the thread id for the audit log, and each stage's verdicts emitted as they come.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from langgraph.config import get_stream_writer

from assistant.agent.deps import AgentDeps
from assistant.agent.speculation import SpeculationSlot
from assistant.agent.state import MessageDict
from assistant.events import Event, verdict_events
from guards.runtime.gate import Judgement, Path, judge
from guards.verdict import StageResult
from model.images import ImageData
from model.messages import ToolCall
from tools.executor import Produced, Ran, Review
from tools.rules import TurnState

CONTEXT_MESSAGES = 4  # earlier user/assistant messages Llama Guard sees as context

Emit = Callable[[Event], None]


def stream_event(event: Event) -> None:
    """Put `event` on the run's custom stream, which `Agent` reads and stamps (callable from node code only)."""
    get_stream_writer()(event)


def guard_context(messages: Sequence[MessageDict]) -> tuple[tuple[str, str], ...]:
    """Earlier plain user/assistant messages (no tool traffic), as (role, text) pairs, for Llama Guard's context:
    the user's request of this turn is always among them."""
    pairs = [
        (m["role"], m["content"])
        for m in messages
        if m["role"] in ("user", "assistant") and not m.get("tool_calls") and m.get("content")
    ]
    return tuple(pairs[-CONTEXT_MESSAGES:])


@dataclass(frozen=True)
class TurnContext:
    deps: AgentDeps
    thread_id: str
    text: str = ""  # the user's new message; "" when the run resumes a paused turn
    images: tuple[ImageData, ...] = ()  # the images attached to it, judged with it (model.images)
    speculation: SpeculationSlot = field(default_factory=SpeculationSlot)  # the model running ahead of the guards
    emit: Emit = stream_event

    def emit_verdicts(self, result: StageResult, call_id: str | None = None) -> None:
        for event in verdict_events(result, call_id):
            self.emit(event)

    def call_verdicts(self, call: ToolCall) -> Callable[[StageResult], None]:
        """`emit_verdicts` for the stages that judge `call` (its review, its result): the events name the call."""
        return lambda result: self.emit_verdicts(result, call.call_id)

    async def judge(self, path: Path, text: str, messages: Sequence[MessageDict], code: str | None = None,
                    images: tuple[ImageData, ...] = ()) -> Judgement:
        """`guards.runtime.gate.judge` with the thread's conversation as context; `images` go with `text`, and the
        verdicts of the guards that saw them name them."""
        on_result: Callable[[StageResult], None] = self.emit_verdicts
        if images:
            labels = tuple(image.label for image in images)
            pipeline = self.deps.pipeline

            def name_images(result: StageResult) -> None:
                seeing = set(pipeline.image_guards(result.stage))
                for event in verdict_events(result, None):
                    self.emit(dataclasses.replace(event, images=labels) if event.guard in seeing else event)

            on_result = name_images

        return await judge(self.deps.pipeline, path, text, conversation=guard_context(messages), code=code,
                           thread_id=self.thread_id, on_result=on_result, images=images)

    async def review(self, call: ToolCall, rules: TurnState, messages: Sequence[MessageDict]) -> Review:
        """A proposed call through the tool path's guards and rules (`ToolPath.review`)."""
        on_result = self.call_verdicts(call)
        return await self.deps.tool_path.review(call, rules, conversation=guard_context(messages),
                                                thread_id=self.thread_id, on_result=on_result)

    async def judge_result(self, call: ToolCall, produced: Produced, messages: Sequence[MessageDict]) -> Ran:
        """A call's output through the tool path's result guards (`ToolPath.judge_result`)."""
        path = self.deps.tool_path
        return await path.judge_result(call, produced, conversation=guard_context(messages), thread_id=self.thread_id,
                                       on_result=self.call_verdicts(call))
