"""The real ChatSession: `assistant.api.Assistant` behind the chat app's protocol.

Loading order keeps the screen responsive: the policy (pydantic, fast), then a preflight that names any missing
model without importing torch, then the Assistant itself in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from assistant.events import ApprovalRequested, Event, GuardVerdict, Refusal, ToolCallProposed, ToolResult
from assistant.tui.attachments import ATTACHMENT_TOOL, CALL_PREFIX, Attachment, attachment_message
from assistant.tui.preflight import check_models, missing_models_problem, used_guards
from assistant.tui.session import (
    ApprovalDecision,
    Approver,
    Component,
    LoadProgress,
    ProgressReporter,
    SessionError,
    SetupProblem,
    ToolInfo,
)

_DECISION_ACTIONS = {"once": "approve", "session": "approve_session", "deny": "deny"}


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
        self.policy: Any = None
        self.assistant: Any = None
        self._ready = asyncio.Event()

    @property
    def policy_name(self) -> str:
        return self.policy_path.name if self.origin != "built-in" else "built-in default"

    async def load(self, report: ProgressReporter) -> None:
        self.policy = self._load_policy()
        guards = used_guards(self.policy)
        for component in ("llama_guard", "prompt_guard"):
            report(LoadProgress(component, "pending" if component in guards else "disabled"))  # type: ignore[arg-type]
        report(LoadProgress("main", "pending", self.model or self.policy.models.main.source))
        missing = await asyncio.to_thread(check_models, self.policy, self.model)
        if missing:
            for item in missing:
                report(LoadProgress(item.component, "failed", "missing"))
            raise SessionError(
                missing_models_problem(missing, str(self.policy_path), builtin=self.origin == "built-in")
            )
        try:
            from assistant.api import Assistant
        except ModuleNotFoundError as exc:
            raise SessionError(
                SetupProblem("The agent is not installed", f"{exc}", "reinstall the project (`make setup`)", False)
            ) from exc
        dirs = await self._resolve_guards(guards, report)
        if guards:  # transformers' lazy imports race when two threads import it first at once (5.x): import it here
            await asyncio.to_thread(_import_transformers)
        report(LoadProgress("main", "loading", self.model or self.policy.models.main.source))
        warm = asyncio.gather(*(self._warm_guard(name, dirs, report) for name in sorted(guards)))
        try:
            built = await asyncio.to_thread(
                Assistant.from_policy,
                self.policy_path,
                model=self.model,
                tools=self.extra_tools,
                tiny_dir=self.tiny_dir,
                db_path=self.db_path,
            )
            self.assistant = built.replace(interface="tui")
            await self._load_main(report)
        except Exception as exc:
            warm.cancel()
            report(LoadProgress("main", "failed"))
            raise SessionError(_load_problem(exc)) from exc
        report(LoadProgress("main", "ready"))
        await warm
        self._ready.set()

    async def _load_main(self, report: ProgressReporter) -> None:
        """Local backends load their weights on first use; load them now, with the backend's own progress events."""
        backend = self.assistant.backend
        load = getattr(backend, "load", None)
        if load is None:
            return  # scripted and server backends have nothing to load
        if hasattr(backend, "on_progress"):
            backend.on_progress = lambda event: report(LoadProgress("main", "loading", event.message, event.fraction))
        await asyncio.to_thread(load)

    async def _resolve_guards(self, guards: set[Component], report: ProgressReporter) -> dict[str, str]:
        """Find (or, for `tiny:` sources, build once) the guards' model directories."""
        if not guards:
            return {}
        from assistant.models import guard_model_dirs

        for name in sorted(guards):
            source = getattr(self.policy.models, name).source
            detail = "building the tiny test model (first use only)" if source.startswith("tiny:") else source
            report(LoadProgress(name, "loading", detail))
        try:
            return await asyncio.to_thread(guard_model_dirs, self.policy, tiny_dir=self.tiny_dir)
        except Exception as exc:
            for name in guards:
                report(LoadProgress(name, "failed"))
            raise SessionError(_load_problem(exc)) from exc

    async def _warm_guard(self, name: Component, dirs: dict[str, str], report: ProgressReporter) -> None:
        """Load one guard's model now (guards otherwise load on their first check); the agent shares it."""
        from guards.stage_runners import LlamaGuardRunner, PromptGuardRunner

        runner_cls = LlamaGuardRunner if name == "llama_guard" else PromptGuardRunner
        runner: Any = runner_cls(self.policy, dirs[name])
        if name == "llama_guard" and self.policy.models.llama_guard.backend == "openai":
            from guards.llama_guard_remote import RemoteLlamaGuardRunner

            runner = RemoteLlamaGuardRunner(self.policy)  # a vLLM server: loading checks that it serves the model
        load = getattr(runner, "load", None) or runner._guard
        report(LoadProgress(name, "loading", "loading weights"))
        try:
            await asyncio.to_thread(load)
        except Exception as exc:
            report(LoadProgress(name, "failed"))
            raise SessionError(_load_problem(exc)) from exc
        report(LoadProgress(name, "ready"))

    def _load_policy(self) -> Any:
        from guards.policy import PolicyError
        from guards.policy.loader import load_policy

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

    @property
    def max_attachment_chars(self) -> int:
        return int(self.policy.tools.max_result_chars) if self.policy is not None else 20_000

    async def stream(
        self, text: str, *, thread_id: str, approve: Approver, attachments: Sequence[Attachment] = ()
    ) -> AsyncIterator[Event]:
        await self._ready.wait()
        from assistant.agent.provenance import seal

        passed: list[dict[str, Any]] = []
        for number, attachment in enumerate(attachments):
            events, judgement = await judge_attachment(self.assistant.pipeline, attachment, number, thread_id)
            for event in events:
                yield event
            if not judgement.passed:
                return
            passed.append(seal(attachment_message(attachment), judgement))  # its record: this judgement
        if passed:
            await self.assistant.append_messages(thread_id, passed)
        turn = self.assistant.stream(text, thread=thread_id, approve=self._agent_approver(approve))
        async with contextlib.aclosing(turn) as events:  # closed at once when the chat stops the turn
            async for event in events:
                yield event

    async def keep_stopped(self, thread_id: str, text: str, events: Sequence[Event]) -> None:
        if self.assistant is not None:
            await self.assistant.keep_stopped(thread_id, text, events)

    @staticmethod
    def _agent_approver(approve: Approver) -> Any:
        async def ask(request: ApprovalRequested) -> Any:
            return _to_agent(await approve(request))

        return ask

    async def pending_approval(self, thread_id: str) -> ApprovalRequested | None:
        await self._ready.wait()
        return await self.assistant.pending_approval(thread_id)

    async def resume(self, thread_id: str, decision: ApprovalDecision, *, approve: Approver) -> AsyncIterator[Event]:
        await self._ready.wait()
        async for event in self.assistant.resume(thread_id, _to_agent(decision), approve=self._agent_approver(approve)):
            yield event

    async def known_threads(self) -> list[str]:
        await self._ready.wait()
        db_path = Path(self.assistant.db_path)
        if not db_path.exists():
            return []
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        seen: dict[str, None] = {}
        async with AsyncSqliteSaver.from_conn_string(str(db_path)) as saver:
            async for checkpoint in saver.alist(None):
                seen.setdefault(str(checkpoint.config["configurable"]["thread_id"]), None)
        return list(seen)

    async def history(self, thread_id: str) -> list[tuple[str, str]]:
        await self._ready.wait()
        messages = await self.assistant.history(thread_id)
        return [
            (str(m.get("role")), str(m.get("content") or ""))
            for m in messages
            if m.get("role") in ("user", "assistant") and m.get("content")
        ]

    async def forget_thread(self, thread_id: str) -> None:
        """Delete the thread's checkpoints (what the model would see when the conversation continues)."""
        if self.assistant is None:
            return
        await self.assistant.delete_thread(thread_id)

    def policy_text(self) -> str:
        if self.policy is None:
            return "# the policy is not loaded yet"
        from assistant.cli.policy_cmd import dump_policy
        from guards.policy import policy_warnings

        header = [f"# {self.policy_path}"]
        if self.model:
            header.append(f"# models.main is replaced by --model {self.model}")
        header += [f"# warning: {warning}" for warning in policy_warnings(self.policy)]
        return "\n".join(header) + "\n" + dump_policy(self.policy)

    def tools(self) -> list[ToolInfo]:
        if self.assistant is None:
            return []
        tools = getattr(self.assistant, "tools", None) or {}
        items = tools.values() if isinstance(tools, dict) else tools
        approval = set(self.policy.tools.approval_required) if self.policy is not None else set()
        return [
            ToolInfo(t.name, getattr(t, "description", ""), bool(getattr(t, "side_effects", False)), t.name in approval)
            for t in items
        ]


def _import_transformers() -> None:
    import transformers

    for name in ("AutoTokenizer", "AutoModelForCausalLM", "AutoModelForSequenceClassification"):
        getattr(transformers, name)


def _to_agent(decision: ApprovalDecision) -> Any:
    from assistant.agent.approval import Decision

    return Decision(_DECISION_ACTIONS[decision.kind], decision.reason, decision.call_id)  # type: ignore[arg-type]


def _load_problem(exc: BaseException) -> SetupProblem:
    """A loading failure as what/why/fix; ModelNotFoundError already carries them."""
    looked_for, why, fix = getattr(exc, "looked_for", None), getattr(exc, "why", None), getattr(exc, "fix", None)
    if looked_for and why and fix:
        return SetupProblem(f"Model not found: {looked_for}", str(why), str(fix))
    name = type(exc).__name__
    if name == "BackendError":
        return SetupProblem("The model backend failed to start", str(exc), "check the model settings in the policy")
    from assistant.tui.errors import unexpected

    return SetupProblem("The assistant could not start", unexpected("loading", exc), "", offer_offline=True)


async def judge_attachment(
    pipeline: Any, attachment: Attachment, number: int, thread_id: str
) -> tuple[list[Event], Any]:
    """Judge an attachment on the tool_result path (what the model would read); the chat's events for it, and
    whether it passed. A guard error blocks it (fail closed)."""
    from guards.gate import judge

    call_id = f"{CALL_PREFIX}{number}"
    events: list[Event] = [
        ToolCallProposed(call_id=call_id, name=ATTACHMENT_TOOL,
                         arguments={"file": str(attachment.path), "characters": len(attachment.text)})
    ]  # fmt: skip
    judgement = await judge(pipeline, "tool_result", attachment.content, thread_id=thread_id)
    for result in judgement.results:
        events += [
            GuardVerdict(stage=v.stage, guard=v.guard, decision=v.decision, score=v.score,
                         categories=tuple(v.categories), reasons=tuple(v.reasons), latency_ms=v.latency_ms,
                         error=v.error)
            for v in result.verdicts
        ]  # fmt: skip
    if judgement.passed:
        events.append(ToolResult(call_id=call_id, name=ATTACHMENT_TOOL, ok=True, output=attachment.text))
        return events, judgement
    guard_error = judgement.outcome == "error"
    why = "a guard failed" if guard_error else f"the {judgement.stage} guards blocked it"
    message = f"The attached file {attachment.name} was not sent: {why}. Your message was not sent either."
    events.append(ToolResult(call_id=call_id, name=ATTACHMENT_TOOL, ok=False, output="", blocked=True, error=why))
    events.append(Refusal(stage=judgement.stage or "tool_result", message=message, guard_error=guard_error))
    return events, judgement
