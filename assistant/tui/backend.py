"""The real ChatSession: `assistant.api.Assistant` behind the chat app's protocol.

Loading order keeps the screen responsive: the policy (pydantic, fast), then a preflight that names any missing
model without importing torch, then the Assistant (`Assistant.from_policy`, on a worker thread) and its warm-up
(`Assistant.warm_up`), whose progress fills the loading panel's rows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any, cast

from assistant.agent.approval import ApproveCallback, Decision, DecisionAction
from assistant.api import Assistant
from assistant.attachments import Attachment
from assistant.cli.policy_cmd import dump_policy
from assistant.events import ApprovalRequested, Event
from assistant.images import images_refusal, read_image_files, refuse_images
from assistant.models import TINY_PREFIX
from assistant.tui.attachments import attachment_events
from assistant.tui.errors import unexpected
from assistant.tui.preflight import check_models, missing_models_problem, used_guards
from assistant.tui.session import (
    COMPONENT_LABELS,
    ApprovalDecision,
    Approver,
    DefinitionReviewer,
    LoadProgress,
    ProgressReporter,
    SessionError,
    SetupProblem,
    ToolInfo,
)
from assistant.warmup import MAIN_MODEL, WarmUp
from guards.policy import Policy, PolicyError, policy_warnings
from guards.policy.loader import load_policy
from guards.policy.registry import MODEL_GUARDS
from model.backends.errors import BackendError, ModelNotFoundError
from model.images import ImageData, ImageError
from tools.mcp.pins import DefinitionReview
from tools.mcp.vetting import ReviewCallback

_DECISION_ACTIONS: dict[str, DecisionAction] = {"once": "approve", "session": "approve_session", "deny": "deny"}


class AssistantSession:
    def __init__(
        self,
        policy_path: Path,
        *,
        model: str | None = None,
        origin: str = "--policy",
        tiny_dir: Path | None = None,
        db_path: Path | None = None,
        tools: Sequence[Any] = (),
    ) -> None:
        self.policy_path = policy_path
        self.model = model
        self.origin = origin
        self.tiny_dir = tiny_dir
        self.db_path = db_path
        self.extra_tools = tuple(tools)
        self.policy: Policy | None = None
        self.assistant: Assistant | None = None
        self._ready = asyncio.Event()
        self._review: ReviewCallback | None = None

    @property
    def policy_name(self) -> str:
        return self.policy_path.name if self.origin != "built-in" else "built-in default"

    async def load(self, report: ProgressReporter, review: DefinitionReviewer | None = None) -> None:
        policy = self.policy = self._load_policy()
        self._review = _on_loop(review, asyncio.get_running_loop()) if review is not None else None
        guards = used_guards(policy)
        for guard in sorted(MODEL_GUARDS):
            report(LoadProgress(guard, "pending" if guard in guards else "disabled"))
        main_source = self.model or policy.models.main.source
        report(LoadProgress(MAIN_MODEL, "pending", main_source))
        missing = await asyncio.to_thread(check_models, policy, self.model)
        if missing:
            for item in missing:
                report(LoadProgress(item.component, "failed", "missing"))
            builtin = self.origin == "built-in"
            raise SessionError(missing_models_problem(missing, str(self.policy_path), builtin=builtin))
        for name in sorted(guards):  # their folders are found (a `tiny:` model built, once) as the Assistant is made
            source = getattr(policy.models, name).source
            detail = "building the tiny test model (first use only)" if source.startswith(TINY_PREFIX) else source
            report(LoadProgress(name, "loading", detail))
        report(LoadProgress(MAIN_MODEL, "loading", main_source))
        try:
            built = await asyncio.to_thread(self._build)
            if guards:  # transformers' lazy imports race when two threads import it first at once (5.x): import it here
                await asyncio.to_thread(_import_transformers)
            await built.warm_up(progress=lambda step: self._warm_progress(step, report))
        except Exception as exc:
            for component in COMPONENT_LABELS:
                if component == MAIN_MODEL or component in guards:
                    report(LoadProgress(component, "failed"))
            raise SessionError(_load_problem(exc)) from exc
        self.assistant = built
        self._ready.set()

    def _build(self) -> Assistant:
        built = Assistant.from_policy(
            self.policy_path, model=self.model, tools=self.extra_tools, tiny_dir=self.tiny_dir, db_path=self.db_path,
            review_definition=self._review,
        )
        return built.replace(interface="tui")

    @staticmethod
    def _warm_progress(step: WarmUp, report: ProgressReporter) -> None:
        """The warm-up's steps as the loading panel's rows (a guard without a model, Code Shield, has no row)."""
        if step.name not in COMPONENT_LABELS or step.state == "failed":
            return  # a failure is reported with the problem it raises
        detail = step.detail or ("loading weights" if step.name != MAIN_MODEL and step.state == "loading" else "")
        report(LoadProgress(step.name, step.state, detail, step.fraction))

    def _load_policy(self) -> Policy:
        try:
            return load_policy(self.policy_path)
        except PolicyError as exc:
            issues = "\n".join(str(issue) for issue in exc.errors[:8])
            raise SessionError(
                SetupProblem(
                    f"The policy {self.policy_path} is not valid",
                    issues,
                    f"fix the lines above (`assistant policy check {self.policy_path}` lists them), "
                    "or start with another policy: `assistant chat --policy FILE`",
                )
            ) from exc

    async def _agent(self) -> Assistant:
        await self._ready.wait()
        assert self.assistant is not None
        return self.assistant

    @property
    def max_attachment_chars(self) -> int:
        return int(self.policy.tools.max_result_chars) if self.policy is not None else 20_000

    def images_refusal(self) -> str | None:
        if self.assistant is None or self.policy is None:
            return "the models are still loading; attach the image again once they are ready"
        return images_refusal(self.policy, self.assistant.pipeline, self.assistant.backend)

    def read_images(self, paths: Sequence[Path]) -> tuple[ImageData, ...]:
        if self.policy is None:
            raise ImageError("the policy is not loaded yet; attach the image again once it is")
        return read_image_files(self.policy, paths)

    async def stream(
        self, text: str, *, thread_id: str, approve: Approver, attachments: Sequence[Attachment] = (),
        images: Sequence[ImageData] = (),
    ) -> AsyncGenerator[Event, None]:
        agent = await self._agent()
        # before the attachments are judged and stored: a message whose images are refused sends nothing
        refuse_images(agent.policy, agent.pipeline, agent.backend, images)
        passed: list[dict[str, Any]] = []
        for attachment in attachments:
            attached = await agent.attach(attachment, thread=thread_id)
            for event in attachment_events(attached):
                yield event
            if attached.message is None:
                return  # blocked: neither the file nor the message is sent
            passed.append(attached.message)  # sealed with its judgement
        if passed:
            await agent.append_messages(thread_id, passed)
        # an async generator (typed as an iterator): closed at once when the chat stops the turn
        turn = cast(AsyncGenerator[Event, None], agent.stream(text, thread=thread_id, approve=_agent_approver(approve),
                                                              images=images))
        async with contextlib.aclosing(turn) as events:
            async for event in events:
                yield event

    async def keep_stopped(self, thread_id: str, text: str, events: Sequence[Event]) -> None:
        if self.assistant is not None:
            await self.assistant.keep_stopped(thread_id, text, events)

    async def pending_approval(self, thread_id: str) -> ApprovalRequested | None:
        return await (await self._agent()).pending_approval(thread_id)

    async def resume(
        self, thread_id: str, decision: ApprovalDecision, *, approve: Approver
    ) -> AsyncGenerator[Event, None]:
        agent = await self._agent()
        async for event in agent.resume(thread_id, _to_agent(decision), approve=_agent_approver(approve)):
            yield event

    async def known_threads(self) -> list[str]:
        return await (await self._agent()).list_threads()

    async def history(self, thread_id: str) -> list[tuple[str, str]]:
        messages = await (await self._agent()).history(thread_id)
        return [
            (str(m.get("role")), str(m.get("content") or ""))
            for m in messages
            if m.get("role") in ("user", "assistant") and m.get("content")
        ]

    async def forget_thread(self, thread_id: str) -> None:
        """Delete the thread's checkpoints (what the model would see when the conversation continues)."""
        if self.assistant is not None:
            await self.assistant.delete_thread(thread_id)

    def policy_text(self) -> str:
        if self.policy is None:
            return "# the policy is not loaded yet"
        header = [f"# {self.policy_path}"]
        if self.model:
            header.append(f"# models.main is replaced by --model {self.model}")
        header += [f"# warning: {warning}" for warning in policy_warnings(self.policy)]
        return "\n".join(header) + "\n" + dump_policy(self.policy)

    def tools(self) -> list[ToolInfo]:
        if self.assistant is None or self.policy is None:
            return []
        return [  # the rows of `assistant tools list`: withheld MCP tools included, with why
            ToolInfo(row["name"], row["description"], bool(row["side_effects"]), row["status"] == "approval required",
                     blocked=row.get("reason", "") if row["status"] == "blocked" else "")
            for row in self.assistant.tool_listing()
        ]


def _import_transformers() -> None:
    import transformers  # lazy: the chat's start screen and the policy tools never need it

    for name in ("AutoTokenizer", "AutoModelForCausalLM", "AutoModelForSequenceClassification"):
        getattr(transformers, name)


def _on_loop(review: DefinitionReviewer, loop: asyncio.AbstractEventLoop) -> ReviewCallback:
    """`review` (a coroutine of the app's loop) callable from the MCP servers' own loop thread, where definitions
    are vetted: the question runs on the app's loop and its answer comes back."""

    async def on_app_loop(item: DefinitionReview) -> bool:
        return await review(item)

    async def asked(item: DefinitionReview) -> bool:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(on_app_loop(item), loop))

    return asked


def _agent_approver(approve: Approver) -> ApproveCallback:
    async def ask(request: ApprovalRequested) -> Decision:
        return _to_agent(await approve(request))

    return ask


def _to_agent(decision: ApprovalDecision) -> Decision:
    return Decision(_DECISION_ACTIONS[decision.kind], decision.reason, decision.call_id)


def _load_problem(exc: BaseException) -> SetupProblem:
    """A loading failure as what/why/fix; ModelNotFoundError already carries them."""
    if isinstance(exc, ModelNotFoundError):
        return SetupProblem(f"Model not found: {exc.looked_for}", str(exc.why), str(exc.fix))
    if type(exc) is BackendError:  # its subclasses say more than 'failed to start'
        return SetupProblem("The model backend failed to start", str(exc), "check the model settings in the policy")
    return SetupProblem("The assistant could not start", unexpected("loading", exc), "", offer_offline=True)
