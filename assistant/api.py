"""The Python API for scripts: one guarded agent, driven by a policy file.

    from assistant.api import Assistant
    bot = Assistant.from_policy("policy.yaml", tools=[send_email], model="scripted:answers.jsonl")
    result = bot.run("Hello", thread="t1")          # Result(text, events, verdicts, tool_calls, refused, ...)
    async for event in bot.stream("Hi", thread="t1", approve=my_callback): ...

Everything the assistant does reaches the caller as the typed events of `assistant.events`; `Result` only collects
them. Conversations persist per thread in SQLite (`db_path`, default under the data dir), so a thread can be
continued - or an approval answered - by a new Assistant in a new process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.agent.approval import ApproveCallback, Decision, coerce_decision
from assistant.agent.deps import AgentDeps, Performance
from assistant.agent.graph import Agent, ThreadBusy, compile_graph
from assistant.agent.nodes import MODEL
from assistant.agent.provenance import RECORD, admit, deployer_definition, judged_definition
from assistant.agent.state import new_turn
from assistant.attachments import Attached, Attachment, judge_attachment, read_attachment
from assistant.events import (
    ApprovalRequested,
    Error,
    Event,
    Final,
    GuardVerdict,
    Notice,
    Refusal,
    TokenDelta,
    ToolCallProposed,
)
from assistant.home import default_audit_path
from assistant.images import read_image_files, refuse_images
from assistant.models import guard_model_dirs, main_model_spec
from assistant.stopped import stopped_messages
from assistant.storage import list_threads as stored_threads
from assistant.storage import open_checkpointer, storage_target
from assistant.warmup import WarmUp, warm_up
from guards.policy import load_policy
from guards.runtime.pipeline import GuardPipeline
from model.backends import load_backend
from model.family import default_tool_format, resolve_family
from model.images import ImageData
from model.messages import ToolSpec
from model.tokenizer import get_tokenizer
from tools.listing import tool_rows
from tools.mcp.tool import McpTool
from tools.mcp.vetting import ReviewCallback, Vetting, vetting_for
from tools.registry import add_mcp_tools, build_registry

if TYPE_CHECKING:
    from assistant.agent.deps import AgentDeps
    from assistant.agent.graph import Agent, Graph
    from guards.policy import Policy
    from guards.runtime.pipeline import GuardPipeline
    from model.backends.base import ModelBackend
    from model.tokenizer import Llama3Tokenizer
    from tools.base import Tool


@dataclass(frozen=True)
class Result:
    """One turn, collected. Exactly one of: `text` answered, `refused`, `error`, or `pending_approval`."""

    thread_id: str
    text: str | None
    events: tuple[Event, ...]
    verdicts: tuple[GuardVerdict, ...] = ()
    tool_calls: tuple[ToolCallProposed, ...] = ()
    refusal: Refusal | None = None
    error: Error | None = None
    pending_approval: ApprovalRequested | None = None

    @property
    def refused(self) -> bool:
        return self.refusal is not None

    @property
    def guard_error(self) -> bool:
        return self.refusal is not None and self.refusal.guard_error

    @property
    def streamed_text(self) -> str:
        return "".join(e.text for e in self.events if isinstance(e, TokenDelta))

    @classmethod
    def collect(cls, thread_id: str, events: Sequence[Event]) -> Result:
        final = next((e for e in reversed(events) if isinstance(e, Final)), None)
        refusal = next((e for e in reversed(events) if isinstance(e, Refusal)), None)
        error = next((e for e in reversed(events) if isinstance(e, Error)), None)
        last = events[-1] if events else None
        return cls(
            thread_id=thread_id,
            text=final.text if final else (refusal.message if refusal else None),
            events=tuple(events),
            verdicts=tuple(e for e in events if isinstance(e, GuardVerdict)),
            tool_calls=tuple(e for e in events if isinstance(e, ToolCallProposed)),
            refusal=refusal,
            error=error,
            pending_approval=last if isinstance(last, ApprovalRequested) else None,
        )


@dataclass(frozen=True)
class Assistant:
    """The policy's guarded agent. Build with `from_policy`; models load on first use and are shared. Immutable:
    `replace(...)` gives a changed copy (the graph is compiled once per instance, on first use)."""

    policy: Policy
    backend: ModelBackend
    tokenizer: Llama3Tokenizer
    pipeline: GuardPipeline
    tools: Mapping[str, Tool]
    db_path: Path
    approve: ApproveCallback | None = None
    today: Callable[[], date] = date.today
    performance: Performance = field(default_factory=Performance)
    interface: str = "api"  # who answers approvals, for the audit log: api, cli, tui, server
    mcp: Any = None  # tools.mcp.McpToolset: the policy's MCP servers, started by from_policy, stopped by close()
    # thread -> the user's message of its last run as the input guard sealed it (for keep_stopped)
    _admitted: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)
    _deps: dict[int, AgentDeps] = field(default_factory=dict, init=False, repr=False, compare=False)

    def replace(self, **changes: Any) -> Assistant:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_policy(
        cls,
        path: str | Path,
        *,
        tools: Iterable[Any] = (),
        model: str | None = None,
        approve: ApproveCallback | None = None,
        db_path: str | Path | None = None,
        guard_runners: dict[str, Any] | None = None,
        tiny_dir: Path | None = None,
        today: Callable[[], date] | None = None,
        review_definition: ReviewCallback | None = None,
    ) -> Assistant:
        """Load and check the policy (PolicyError names file, line and key), resolve the models (`model`: a
        `scripted:FILE.jsonl`, `transformers:PATH`, `openai:URL` or `tiny:NAME` spec overriding the policy's main
        model), and register `tools` (Tool objects or `@tool` functions) next to the policy's own.
        `review_definition`: asks a human about an MCP tool definition that is new or changed since it was pinned,
        under `on_change: ask` (may be called from another thread's event loop; None: such tools are withheld)."""

        path = Path(path)
        policy = load_policy(path)
        backend = load_main_backend(main_model_spec(policy, model))
        pipeline = GuardPipeline.from_policy(
            policy, model_dirs=guard_model_dirs(policy, tiny_dir=tiny_dir), runners=guard_runners, policy_path=path,
            default_audit_path=default_audit_path(),
        )
        return cls(
            policy=policy,
            backend=backend,
            tokenizer=tokenizer_for(backend, policy.models.main.family),
            pipeline=pipeline,
            db_path=Path(db_path) if db_path else default_db_path(policy, path),
            approve=approve,
            today=today or date.today,
            **build_tools_and_mcp(policy, tools, vetting=vetting_for(pipeline, path, review_definition)),  # last
        )

    def close(self) -> None:
        """Stop the policy's MCP servers (idempotent; they are stopped at exit at the latest)."""
        if self.mcp is not None:
            self.mcp.close()

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Assistant:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)

    @property
    def deps(self) -> AgentDeps:
        """Built once, and again after an MCP server's list changed what the model may see (`McpToolset.version`)."""
        version = self.mcp.version if self.mcp is not None else 0
        cached = self._deps.get(version)
        if cached is None:
            self._deps.clear()
            cached = self._deps[version] = self._build_deps()
        return cached

    def tool_listing(self) -> list[dict[str, Any]]:
        """The tools the model may call, with side effects and policy status, and every MCP tool withheld from it
        with why (`GET /v1/tools`; the same rows as `assistant tools list --json`)."""
        return tool_rows(self.tools.values(), self.policy.tools, self.mcp.withheld if self.mcp is not None else ())

    def _build_deps(self) -> AgentDeps:
        # an MCP tool withheld mid-session (a rug pull, a removal) drops out of the prompt and the tool map
        tools = {name: t for name, t in self.tools.items() if not (isinstance(t, McpTool) and t.withheld)}
        builtin = tuple(name for name, t in tools.items() if t.builtin)
        custom = tuple(t for t in tools.values() if not t.builtin)
        spec = ToolSpec(tools=tuple(t.definition() for t in custom), builtin_tools=builtin,
                        tool_format=self.policy.agent.tool_format or default_tool_format(self.tokenizer.family))
        records = {t.name: tool_record(t) for t in custom}
        return AgentDeps(self.policy, self.backend, self.tokenizer, self.pipeline, tools, spec, self.today,
                         performance=self.performance, tool_records={k: v for k, v in records.items() if v})

    @cached_property
    def _compiled(self) -> Graph:
        # compiling costs ~20 ms: once per Assistant; each stream binds its own SQLite connection (the graph holds
        # no dependencies: each run gets them in its TurnContext)

        return compile_graph()

    @asynccontextmanager
    async def _open_agent(self, thread_id: str | None = None) -> AsyncIterator[Agent]:
        # One SQLite connection per stream: aiosqlite connections belong to the event loop that opened them, and
        # `run()` starts a fresh loop per call.

        # The policy's `storage`: this SQLite file (default), or PostgreSQL shared by replicas (assistant/storage.py).
        target = storage_target(getattr(self.policy, "storage", None), sqlite_path=self.db_path)
        async with open_checkpointer(target, lock_thread=thread_id) as saver:  # a turn: one at a time per thread
            yield Agent(self.deps, saver, compiled=self._compiled)

    async def _events(self, text: str | None, thread_id: str, approve: ApproveCallback | None,
                      resume: Decision | None, images: tuple[ImageData, ...] = ()) -> AsyncGenerator[Event, None]:
        """The agent's events, from a task of their own: a consumer that leaves early (break, an exception, a
        cancelled task) closes this generator, which cancels the turn's task and waits for it, so the turn ends
        cleanly and its SQLite connection (and the worker thread aiosqlite keeps) is closed before we return."""
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=1)

        async def produce() -> None:
            try:
                async with self._open_agent(thread_id) as agent:
                    try:
                        async for event in agent.stream(text, thread_id=thread_id, approve=approve or self.approve,
                                                        resume=resume, interface=self.interface,
                                                        images=images):
                            await queue.put(("event", event))
                    finally:
                        self._admitted[thread_id] = agent.admitted_input
                await queue.put(("end", None))
            except BaseException as exc:  # handed to the consumer (ThreadBusy, a bug); cancellation ends quietly
                if not isinstance(exc, asyncio.CancelledError):
                    await queue.put(("raise", exc))
                raise

        task = asyncio.ensure_future(produce())
        try:
            while True:
                kind, value = await queue.get()
                if kind == "end":
                    return
                if kind == "raise":
                    raise value
                yield value
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def stream(
        self, text: str, *, thread: str | None = None, approve: ApproveCallback | None = None,
        images: Sequence[ImageData] = (),
    ) -> AsyncIterator[Event]:
        """One turn as events; the last is Final, Refusal or Error - or ApprovalRequested when a tool call waits for
        a human and no `approve` callback (here or at construction) was given; answer it with `resume`. `images`
        (`read_images` / `assistant.images.read_image_files`) go with the text: ImagesRefused is raised before
        anything runs when this policy cannot judge them or its main model cannot take them."""
        thread_id = thread or new_thread_id()
        refuse_images(self.policy, self.pipeline, self.backend, images)
        for notice in self.mcp.take_notices() if self.mcp is not None else ():  # once: a server failed to start
            yield Notice(kind=notice.kind, message=notice.message)
        # aclosing: a consumer that closes this stream closes `_events` now, which waits for the turn to end
        async with contextlib.aclosing(self._events(text, thread_id, approve, None, tuple(images))) as events:
            async for event in events:
                yield event

    async def resume(
        self, thread: str, decision: Decision | bool | dict[str, str], *, approve: ApproveCallback | None = None,
        call_id: str | None = None,
    ) -> AsyncIterator[Event]:
        """Continue a thread that waits for an approval, with the human's decision (works after a restart). The
        decision names the call it decides - `call_id` here or `Decision.call_id`: the `call_id` of the
        ApprovalRequested that was shown; a decision for another call (stale, already decided) raises StaleApproval,
        and so does a second decision on a call another request is deciding at the same moment."""
        chosen = coerce_decision(decision)
        if call_id is not None:
            chosen = chosen.for_call(call_id)
        async with contextlib.aclosing(self._events(None, thread, approve, chosen)) as events:
            async for event in events:
                yield event

    async def pending_approval(self, thread: str) -> ApprovalRequested | None:
        async with self._open_agent() as agent:
            pending = await agent.pending_approval(thread)
        return pending.request if pending else None

    async def history(self, thread: str) -> list[dict[str, Any]]:
        """The thread's messages as the model sees them (blocked text never appears here)."""

        async with self._open_agent() as agent:
            state = await agent.state(thread)
        return [{k: v for k, v in m.items() if k != RECORD} for m in state.get("messages") or []]

    async def keep_stopped(self, thread: str, text: str, events: Sequence[Event]) -> None:
        """After the user stopped a turn (`assistant.stopped`): keep the answer as far as it was shown, after the
        user's message as the input guard sealed it; nothing when the message was stopped before it passed."""

        admitted = self._admitted.pop(thread, None)
        if messages := stopped_messages(text, events, await self.history(thread), admitted):
            await self.append_messages(thread, messages)

    async def delete_thread(self, thread: str) -> None:
        """Forget a thread: its messages, pending approvals and session approvals."""
        async with self._open_agent() as agent:
            await agent.checkpointer.adelete_thread(thread)

    async def append_messages(self, thread: str, messages: Sequence[dict[str, Any]]) -> None:
        """Append judged messages to a thread: the answer of a stopped turn as far as it was shown
        (`assistant.stopped`), a guarded attachment (the chat's /attach). Each must carry its judgement record
        (`assistant.agent.provenance.seal`): an unsealed message raises Unjudged and nothing is stored. Raises
        ThreadBusy while the thread waits for an approval."""

        admit(messages)

        async with self._open_agent(thread) as agent:
            if await agent.pending_approval(thread) is not None:
                raise ThreadBusy(f"thread {thread!r} waits for an approval decision; answer it first")
            state = await agent.state(thread)
            stored = [*(state.get("messages") or []), *(dict(m) for m in messages)]
            turn = new_turn(max(len(stored) - 1, 0))
            await agent.graph.aupdate_state(agent.config(thread), {"messages": stored, "turn": turn}, as_node=MODEL)

    async def warm_up(self, progress: Callable[[WarmUp], None] | None = None) -> None:
        """Load the main model and every guard the policy enables now, side by side on worker threads, instead of on
        first use (a UI calls this while the user waits or types). `progress` hears each one's state (`WarmUp`, on
        the event loop's thread); the first failure is raised."""
        await warm_up(self.backend, self.pipeline.runners, progress)

    async def list_threads(self) -> list[str]:
        """The ids of the threads in the policy's store (`storage`: this SQLite file, or the PostgreSQL database that
        replicas share), the most recently updated first: also those that other surfaces started (`assistant run`,
        scripts, `assistant serve`)."""
        return await stored_threads(storage_target(getattr(self.policy, "storage", None), sqlite_path=self.db_path))

    async def attach(
        self, source: Path | str | bytes | Attachment, *, name: str | None = None, thread: str | None = None
    ) -> Attached:
        """Read a file as untrusted content - a path, or its bytes with its `name` - and judge it on the path a tool's
        result takes (`guards.runtime.gate.ROLE_PATHS`). Raises AttachmentError (a ValueError) for a file that cannot
        be attached (a link, not UTF-8 text, longer than `tools.max_result_chars`). `thread` is named in the audit
        log. Nothing is stored: when it passed, `append_messages(thread, [attached.message])` puts it in the thread,
        where the model reads it (and the untrusted-content rule applies) from the next turn on."""
        if isinstance(source, Attachment):
            attachment = source
        else:
            attachment = read_attachment(source, self.policy.tools.max_result_chars, name=name)
        return await judge_attachment(self.pipeline, attachment, thread_id=thread)

    async def arun(self, text: str, *, thread: str | None = None, approve: ApproveCallback | None = None,
                   images: Sequence[ImageData] = ()) -> Result:
        thread_id = thread or new_thread_id()
        events = [e async for e in self.stream(text, thread=thread_id, approve=approve, images=images)]
        return Result.collect(thread_id, events)

    async def aresume(
        self, thread: str, decision: Decision | bool | dict[str, str], *, call_id: str | None = None
    ) -> Result:
        events = [e async for e in self.resume(thread, decision, call_id=call_id)]
        return Result.collect(thread, events)

    def run(self, text: str, *, thread: str | None = None, approve: ApproveCallback | None = None,
            images: Sequence[ImageData] = ()) -> Result:
        """`arun` for scripts without an event loop of their own."""
        return asyncio.run(self.arun(text, thread=thread, approve=approve, images=images))

    def read_images(self, paths: Sequence[str | Path]) -> tuple[ImageData, ...]:
        """Image files checked against the policy's `images` limits (ImageError names the file and the limit)."""
        return read_image_files(self.policy, paths)

    def resume_sync(
        self, thread: str, decision: Decision | bool | dict[str, str], *, call_id: str | None = None
    ) -> Result:
        return asyncio.run(self.aresume(thread, decision, call_id=call_id))


def default_db_path(policy: Any, policy_path: Path | None = None) -> Path:
    """The SQLite thread file: the policy's `storage.path` (relative to the policy file), else the data dir's."""

    storage = getattr(policy, "storage", None)
    if getattr(storage, "backend", "sqlite") != "sqlite":
        storage = None  # unused with postgres; the Assistant still keeps a path
    target = storage_target(storage, policy_dir=policy_path.parent if policy_path else None)
    assert target.sqlite_path is not None
    return target.sqlite_path


def new_thread_id() -> str:
    return uuid.uuid4().hex[:12]


def load_main_backend(spec: Any) -> Any:

    return load_backend(spec)


def tokenizer_for(backend: ModelBackend, family: str | None = None) -> Llama3Tokenizer:
    """The model family's tokenizer (`family`: the policy's, else the checkpoint's config, else llama3): the backend's
    own files when it has a local model directory, else llama-models' file."""
    model_dir = Path(backend.model_dir) if backend.model_dir else None
    return get_tokenizer(model_dir, resolve_family(family, model_dir))


def build_tools(policy: Any, extra: Iterable[Any]) -> dict[str, Any]:
    """The tools the model may call and is told about: the policy's enabled built-ins and custom tools plus `extra`,
    within the policy's allow/deny lists (the rules also deny calls to any other name)."""

    registry = build_registry(policy.tools, extra=list(extra))
    return {t.name: t for t in registry.visible(policy.tools)}


def tool_record(tool: Any) -> str | None:
    """The provenance record of a tool's definition: the judged definition of an MCP tool (None when it was never
    judged: the prompt then refuses it), the deployer's for the policy's and the application's own tools."""
    definition = tool.definition()
    if isinstance(tool, McpTool):
        return judged_definition(definition, tool.judgement) if tool.judgement is not None else None
    return deployer_definition(definition)


def build_tools_and_mcp(policy: Any, extra: Iterable[Any], *, vetting: Vetting | None = None) -> dict[str, Any]:
    """{"tools": ..., "mcp": ...}: `build_tools` plus the tools of the policy's MCP servers, which start here
    (tools.mcp; raises McpStartupError, a ValueError, when a `required` server fails); `vetting` judges and
    pin-checks their definitions (without it, the prompt refuses them: no judgement on record)."""

    registry = build_registry(policy.tools, extra=list(extra))
    mcp = add_mcp_tools(registry, policy.tools, vetting=vetting)
    return {"tools": {t.name: t for t in registry.visible(policy.tools)}, "mcp": mcp}
