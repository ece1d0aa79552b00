"""A ChatSession whose turns are scripted by the test (for UI behaviour the agent's scripted model cannot reach)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from assistant.attachments import Attachment
from assistant.events import (
    ApprovalRequested,
    Event,
    Final,
    GuardVerdict,
    Refusal,
    TokenDelta,
    ToolCallProposed,
    ToolResult,
)
from assistant.images import ImagesRefused
from assistant.tui.session import (
    ApprovalDecision,
    Approver,
    LoadProgress,
    ProgressReporter,
    SessionError,
    SetupProblem,
    ToolInfo,
)
from model.images import ImageData, ImageError, ImageLimits, read_images

Turn = Callable[[str, Approver], AsyncIterator[Event]]


def passed(stage: str, guard: str = "llama_guard", score: float = 0.01, call_id: str | None = None) -> GuardVerdict:
    return GuardVerdict(stage=stage, guard=guard, decision="allow", score=score, latency_ms=12.0, call_id=call_id)


async def answer_turn(text: str, approve: Approver, answer: str = "Hello! **How** can I help?") -> AsyncIterator[Event]:
    yield passed("user_input", "prompt_guard", 0.002)
    yield passed("user_input")
    for piece in answer.split(" "):
        yield TokenDelta(text=piece + " ")
    yield passed("model_output")
    yield Final(text=answer)


async def blocked_turn(text: str, approve: Approver) -> AsyncIterator[Event]:
    yield passed("user_input", "prompt_guard", 0.001)
    yield GuardVerdict(stage="user_input", guard="llama_guard", decision="block", score=0.97, categories=("S2",))
    yield Refusal(stage="user_input", message="I can't help with that request.")


async def tool_turn(text: str, approve: Approver) -> AsyncIterator[Event]:
    """A code_interpreter call that needs approval; runs only when approved."""
    yield passed("user_input")
    arguments = {"code": "print(6 * 7)"}
    yield ToolCallProposed(call_id="c1", name="code_interpreter", arguments=arguments)
    yield GuardVerdict(stage="code", guard="code_shield", decision="allow", latency_ms=40.0, call_id="c1")
    request = ApprovalRequested(call_id="c1", name="code_interpreter", arguments=arguments, reason="needs approval")
    yield request
    decision = await approve(request)
    if decision.approved:
        yield ToolResult(call_id="c1", name="code_interpreter", ok=True, output="42\n")
        answer = "The answer is 42."
    else:
        yield ToolResult(call_id="c1", name="code_interpreter", ok=False, output="", error=f"denied: {decision.reason}")
        answer = "I did not run the code, as you asked."
    yield TokenDelta(text=answer)
    yield passed("model_output")
    yield Final(text=answer)


@dataclass
class FakeSession:
    turns: list[Turn] = field(default_factory=list)
    policy_name: str = "fake.yaml"
    problem: SetupProblem | None = None
    gate: asyncio.Event | None = None  # when set, loading waits for it after the main model started
    guard_fraction: float | None = None  # known progress makes the bars deterministic (snapshots)
    forgotten: list[str] = field(default_factory=list)
    pending: dict[str, ApprovalRequested] = field(default_factory=dict)
    agent_threads: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # started outside the chat

    async def load(self, report: ProgressReporter, review: object = None) -> None:
        if self.problem is not None:
            report(LoadProgress("main", "failed", "missing"))
            raise SessionError(self.problem)
        report(LoadProgress("main", "loading", "tiny", 0.5))
        report(LoadProgress("prompt_guard", "loading", "loading weights", self.guard_fraction))
        report(LoadProgress("llama_guard", "loading", "building the tiny test model", self.guard_fraction))
        if self.gate is not None:
            await self.gate.wait()
        report(LoadProgress("prompt_guard", "ready"))
        report(LoadProgress("llama_guard", "ready"))
        report(LoadProgress("main", "ready"))

    max_attachment_chars: int = 2000
    images_refused: str | None = None  # why this fake takes no images (None: it takes them)
    image_limits: ImageLimits = field(default_factory=ImageLimits)
    received: list[tuple[str, list[Attachment]]] = field(default_factory=list)  # (text, attachments) per turn
    received_images: list[list[ImageData]] = field(default_factory=list)  # the images of each turn
    kept: list[tuple[str, str, list[Event]]] = field(default_factory=list)  # keep_stopped calls
    closed: list[str] = field(default_factory=list)  # texts whose stream was closed before its end

    def images_refusal(self) -> str | None:
        return self.images_refused

    def read_images(self, paths: Sequence[Path]) -> tuple[ImageData, ...]:
        items = []
        for path in paths:
            try:
                items.append((path.name, path.read_bytes()))
            except OSError as exc:
                raise ImageError(f"{path}: cannot read the image ({exc.strerror})") from None
        return read_images(items, self.image_limits)

    async def stream(
        self, text: str, *, thread_id: str, approve: Approver, attachments: Sequence[Attachment] = (),
        images: Sequence[ImageData] = (),
    ) -> AsyncIterator[Event]:
        if images and self.images_refused is not None:  # as the agent: before anything runs
            raise ImagesRefused(self.images_refused)
        self.received.append((text, list(attachments)))
        self.received_images.append(list(images))
        for number, attachment in enumerate(attachments):
            call_id = f"attachment-{number}"
            yield ToolCallProposed(call_id=call_id, name="attachment",
                                   arguments={"file": str(attachment.path), "characters": len(attachment.text)})
            if "injtrigger" in attachment.text:
                yield GuardVerdict(stage="tool_result", guard="prompt_guard", decision="block", score=0.99,
                                   call_id=call_id)
                yield ToolResult(call_id=call_id, name="attachment", ok=False, output="", blocked=True,
                                 error="the tool_result guards blocked it")
                yield Refusal(stage="tool_result", message=f"The attached file {attachment.name} was not sent.")
                return
            yield passed("tool_result", "prompt_guard", 0.003, call_id=call_id)
            yield ToolResult(call_id=call_id, name="attachment", ok=True, output=attachment.text)
        turn = self.turns.pop(0) if self.turns else answer_turn
        finished = False
        try:
            async for event in turn(text, approve):
                yield event
            finished = True
        finally:
            if not finished:
                self.closed.append(text)

    async def keep_stopped(self, thread_id: str, text: str, events: Sequence[Event]) -> None:
        self.kept.append((thread_id, text, list(events)))

    async def pending_approval(self, thread_id: str) -> ApprovalRequested | None:
        return self.pending.get(thread_id)

    async def resume(self, thread_id: str, decision: ApprovalDecision, *, approve: Approver) -> AsyncIterator[Event]:
        if decision.call_id != self.pending[thread_id].call_id:  # as the agent: a decision names the call shown
            raise AssertionError(f"the decision names call {decision.call_id!r}, not the pending one")
        request = self.pending.pop(thread_id)
        ok = decision.approved
        yield ToolResult(call_id=request.call_id, name=request.name, ok=ok, output="42\n" if ok else "", error=None)
        yield TokenDelta(text="Resumed.")
        yield Final(text="Resumed.")

    async def known_threads(self) -> list[str]:
        return list(self.agent_threads)

    async def history(self, thread_id: str) -> list[tuple[str, str]]:
        return list(self.agent_threads.get(thread_id, []))

    async def forget_thread(self, thread_id: str) -> None:
        self.forgotten.append(thread_id)

    def policy_text(self) -> str:
        return "version: 1\nmodels:\n  main: {source: 'tiny:llama'}\n"

    def tools(self) -> list[ToolInfo]:
        return [ToolInfo("code_interpreter", "Runs Python in a sandbox.", side_effects=True, needs_approval=True)]


async def code_shield_turn(text: str, approve: Approver) -> AsyncIterator[Event]:
    """Code Shield blocks the code of a code_interpreter call: the code never runs."""
    yield passed("user_input")
    yield ToolCallProposed(call_id="c2", name="code_interpreter", arguments={"code": "eval(input())"})
    yield GuardVerdict(stage="code", guard="code_shield", decision="block", reasons=("insecure-eval-use (CWE-95)",),
                       call_id="c2")
    yield ToolResult(call_id="c2", name="code_interpreter", ok=False, output="", blocked=True,
                     error="The generated code was blocked by the policy.")
    yield Refusal(stage="code", message="The generated code was blocked by the policy.")


async def slow_turn(text: str, approve: Approver) -> AsyncIterator[Event]:
    """Input passes, one piece of the answer is shown, then the model "thinks" until the turn is stopped."""
    yield passed("user_input", "prompt_guard", 0.002)
    yield passed("user_input")
    yield TokenDelta(text="The first part, shown. ")
    await asyncio.sleep(3600)
    yield TokenDelta(text="Never shown.")
    yield Final(text="The first part, shown. Never shown.")


async def stuck_turn(text: str, approve: Approver) -> AsyncIterator[Event]:
    """The input guards never answer (until the turn is stopped)."""
    await asyncio.sleep(3600)
    yield passed("user_input")


async def running_tool_turn(text: str, approve: Approver) -> AsyncIterator[Event]:
    """A code_interpreter call that runs until the turn is stopped."""
    yield passed("user_input")
    yield ToolCallProposed(call_id="c9", name="code_interpreter", arguments={"code": "import time; time.sleep(60)"})
    await asyncio.sleep(3600)
    yield ToolResult(call_id="c9", name="code_interpreter", ok=True, output="")
