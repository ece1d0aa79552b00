"""What the chat app needs from its backend, as a protocol, so tests and development run the real app on a fake.

The real implementation (`assistant.tui.backend.AssistantSession`) wraps `assistant.api.Assistant`. Conversation
titles and the transcript the UI shows live in the app's own store (`assistant.tui.store`); the session only keeps
the agent's state per thread.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from assistant.attachments import Attachment
from assistant.events import ApprovalRequested, Event
from assistant.warmup import MAIN_MODEL
from guards.policy.registry import MODEL_GUARDS, guard_label
from model.images import ImageData
from tools.mcp.pins import DefinitionReview

Component = str  # MAIN_MODEL or a model guard's name (guards.policy.registry.MODEL_GUARDS)
LoadState = Literal["pending", "loading", "ready", "disabled", "failed"]
# The loading panel's rows, in this order: the main model, then each guard with a model.
COMPONENT_LABELS: dict[Component, str] = {
    MAIN_MODEL: "Model",
    **{name: guard_label(name) for name in sorted(MODEL_GUARDS)},
}


@dataclass(frozen=True)
class LoadProgress:
    """One model's loading state; `fraction` is None when progress is unknown (the bar pulses)."""

    component: Component
    state: LoadState
    detail: str = ""
    fraction: float | None = None


@dataclass(frozen=True)
class ApprovalDecision:
    """A human decision on one tool call: approve once, approve this tool for the session, or deny with a reason.
    `call_id`: the call whose request the human was shown (the app sets it); the agent applies the decision to that
    call only."""

    kind: Literal["once", "session", "deny"]
    reason: str = ""
    call_id: str = ""

    @property
    def approved(self) -> bool:
        return self.kind != "deny"


@dataclass(frozen=True)
class ToolInfo:
    name: str
    description: str
    side_effects: bool = False
    needs_approval: bool = False
    blocked: str = ""  # why an MCP tool is withheld from the model (its definition's verdict or pin), else ""


@dataclass(frozen=True)
class SetupProblem:
    """Why the session cannot start, and what the user can do about it (shown on the start screen)."""

    title: str
    message: str
    fix: str
    offer_offline: bool = True


class SessionError(Exception):
    """A problem the user can fix (missing model, server down, bad policy); never shown as a traceback."""

    def __init__(self, problem: SetupProblem) -> None:
        super().__init__(problem.message)
        self.problem = problem


Approver = Callable[[ApprovalRequested], Awaitable[ApprovalDecision]]
ProgressReporter = Callable[[LoadProgress], None]
DefinitionReviewer = Callable[[DefinitionReview], Awaitable[bool]]  # True: offer the tool this session


class ChatSession(Protocol):
    """The backend of the chat app."""

    @property
    def policy_name(self) -> str:
        """Short name of the policy in use (shown in the header)."""
        ...

    async def load(self, report: ProgressReporter, review: DefinitionReviewer | None = None) -> None:
        """Load the models, reporting each component's progress; raise SessionError for fixable problems. `review`
        asks the user about an MCP tool definition new or changed since it was pinned (`on_change: ask`), at load
        and whenever a server's tool list changes; it is called on the app's loop."""
        ...

    @property
    def max_attachment_chars(self) -> int:
        """The most characters an attached file may have (the policy's tools.max_result_chars)."""
        ...

    def images_refusal(self) -> str | None:
        """Why this session cannot take images (`assistant.images.images_refusal`: images off, no guard that sees
        images on user_input, a main model that takes none; or the models are not loaded yet), None when it can."""
        ...

    def read_images(self, paths: Sequence[Path]) -> tuple[ImageData, ...]:
        """The image files of one message, checked against the policy's `images` limits (count, bytes, pixels,
        format); ImageError names the file and the limit."""
        ...

    def stream(
        self, text: str, *, thread_id: str, approve: Approver, attachments: Sequence[Attachment] = (),
        images: Sequence[ImageData] = (),
    ) -> AsyncGenerator[Event, None]:
        """Run one guarded turn on a thread, yielding the agent's events. Verdicts on a tool call carry its
        `call_id`. Attachments are judged first (`Assistant.attach`), each shown as a ToolCallProposed named
        `attachment`, its verdicts (carrying that call_id) and a ToolResult; a blocked one ends the turn with a
        Refusal before the message is sent. `images` go with the text (`Assistant.stream(images=)`): judged with it
        by the guards that see images (their verdicts name them in `GuardVerdict.images`); ImagesRefused is raised
        before anything runs (attachments included) when the session cannot take them."""
        ...

    async def keep_stopped(self, thread_id: str, text: str, events: Sequence[Event]) -> None:
        """The user stopped this turn (its stream was closed): keep in the thread what was shown of it."""
        ...

    async def pending_approval(self, thread_id: str) -> ApprovalRequested | None:
        """A tool call of this thread still waiting for a decision (e.g. the app was closed on the dialog)."""
        ...

    def resume(
        self, thread_id: str, decision: ApprovalDecision, *, approve: Approver
    ) -> AsyncGenerator[Event, None]:
        """Continue a thread that waits for an approval, with the decision."""
        ...

    async def known_threads(self) -> list[str]:
        """Thread ids in the agent's own store, SQLite or PostgreSQL (also those `assistant run`, the Python API or
        `assistant serve` started)."""
        ...

    async def history(self, thread_id: str) -> list[tuple[str, str]]:
        """A thread's user and assistant messages as the model sees them (for threads the chat did not record)."""
        ...

    async def forget_thread(self, thread_id: str) -> None:
        """Delete the agent's saved state of a thread."""
        ...

    def policy_text(self) -> str:
        """The effective policy (defaults filled in), as YAML."""
        ...

    def tools(self) -> list[ToolInfo]:
        """The tools the policy allows."""
        ...
