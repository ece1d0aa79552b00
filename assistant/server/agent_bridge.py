"""The agent for the stateless Chat Completions API: the agent's one graph, with two of its nodes replaced.

- A seeded entry (in place of `input_guard`): the client's (already judged) history becomes the thread's `messages`,
  then the agent's own `input_guard` judges the new user message; when the request ends with client tool results
  instead, the turn continues at the model node (the results were judged at `tool_result` before, see `trust.py`).
- Client tools: a request's `tools` join the policy's tools as Llama 3.1 custom tools, once their definitions passed
  the `tool_definition` path (judged once per definition and remembered; a definition without that record never
  reaches the prompt: `AgentDeps.encode` refuses it). The review (in place of `review_calls`) runs the agent's own
  first (the `tool_call` guards and the policy's tool rules); a call to a client tool that passes ends the turn, and
  the server returns it as `tool_calls`. A client tool never runs on the server.

Both replacements go to `assistant.agent.graph.build_graph` as `GraphNodes`; everything else is the agent's.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.runtime import Runtime
from langgraph.types import Command

from assistant.agent.deps import AgentDeps
from assistant.agent.graph import Agent, EntryNode, GraphNodes, compile_graph
from assistant.agent.nodes import input_guard
from assistant.agent.provenance import LEDGER, VERSION, definition_text, judged_definition
from assistant.agent.routes import END, MODEL, ToApproval, ToEnd, ToExecute, ToModel
from assistant.agent.state import AgentState, MessageDict, new_turn
from assistant.agent.tool_nodes import review_calls
from assistant.agent.turn import TurnContext
from assistant.events import Event
from assistant.server.openai_compat import ClientTool
from guards.runtime.gate import Judgement, judge
from guards.verdict import StageResult
from model.backends.base import BackendStats, GenerationParams, ModelBackend
from model.constraint import OutputConstraint
from model.images import ImageData
from model.messages import BUILTIN_TOOLS, ToolDefinition, ToolSpec
from tools.base import Tool, ToolOutput


@dataclass(frozen=True)
class ClientToolCalls:
    """Internal event (never sent as is): the turn ended with calls the client runs."""

    calls: tuple[dict[str, Any], ...]
    elapsed_ms: float = field(default=0.0, kw_only=True)
    type: str = field(default="client_tool_calls", init=False)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "calls": [dict(c) for c in self.calls], "elapsed_ms": self.elapsed_ms}


@dataclass(frozen=True)
class Seed:
    messages: list[MessageDict]
    # the request ends with client tool results, or an assistant message to continue: the turn goes on at the model
    after_tools: bool


class ClientToolProxy(Tool):
    """Stands for a client's function in the agent's tool table: described to the model, never run here."""

    side_effects = True  # unknown to the server: the safe assumption for the policy's rules

    def __init__(self, name: str, description: str, parameters: dict[str, Any]) -> None:
        self.name = name
        self.description = description
        self._parameters = parameters

    @property
    def parameters(self) -> dict[str, Any]:  # the client's own schema (there is no pydantic model to derive it from)
        return self._parameters

    def definition(self) -> ToolDefinition:
        return ToolDefinition(name=self.name, description=self.description, parameters=self.parameters)

    async def run(self, arguments: Mapping[str, Any]) -> ToolOutput:
        return await self.call(dict(arguments))

    async def call(self, arguments: dict[str, Any]) -> ToolOutput:
        return ToolOutput.failure(f"{self.name} is the client's tool; the server never runs it")


class TimedBackend:
    """The main model with a latency observer around each completion; the rest of `ModelBackend` is the wrapped
    backend's."""

    def __init__(self, backend: ModelBackend, observe: Callable[[float], None]) -> None:
        self._backend = backend
        self._observe = observe
        self.name = backend.name
        self.on_progress = backend.on_progress

    @property
    def model_dir(self) -> Path | None:
        return self._backend.model_dir

    async def aclose(self) -> None:
        await self._backend.aclose()

    @property
    def context_window(self) -> int:
        return self._backend.context_window

    @property
    def stats(self) -> BackendStats:
        return self._backend.stats

    @property
    def speculation_ok(self) -> bool:
        return self._backend.speculation_ok

    @property
    def accepts_images(self) -> bool:
        return self._backend.accepts_images

    def load(self) -> object:  # the server loads every model before it is ready
        return self._backend.load()

    def constraint_problem(self, constraint: OutputConstraint) -> str | None:
        return self._backend.constraint_problem(constraint)

    async def stream(self, prompt_ids: list[int], params: GenerationParams) -> AsyncIterator[str]:
        started = time.perf_counter()
        try:
            async for delta in self._backend.stream(prompt_ids, params):
                yield delta
        finally:
            self._observe(time.perf_counter() - started)


class Bridge:
    """The server's variant of the agent graph (compiled once), and the agent's dependencies per set of client tools
    (cached)."""

    def __init__(self, deps: AgentDeps, *, cache_size: int = 32) -> None:
        self.deps = deps
        self.seeds: dict[str, Seed] = {}  # thread id -> seed of the run in progress
        nodes = GraphNodes(input_guard=make_seeded_entry(self.seeds), review_calls=client_review)
        self.graph = compile_graph(nodes)
        self._deps: OrderedDict[tuple[tuple[str, str, str, str | None], ...], AgentDeps] = OrderedDict()
        self._cache_size = cache_size
        self._passed: OrderedDict[str, str] = OrderedDict()  # definition text -> its record, once it passed

    async def judge_tools(
        self, pipeline: Any, tools: tuple[ClientTool, ...], *, thread_id: str | None = None
    ) -> tuple[dict[str, str], list[StageResult], Judgement | None]:
        """The records of the client's tool definitions, each judged on the `tool_definition` path the first time
        it is seen, the results of those checks, and at the first that does not pass the judgement that stopped it
        (the request is refused)."""
        records: dict[str, str] = {}
        results: list[StageResult] = []
        for tool in tools:
            definition = ClientToolProxy(tool.name, tool.description, tool.parameters).definition()
            text = definition_text(definition)
            if (record := self._passed.get(text)) is None:
                judgement = await judge(pipeline, "tool_definition", text, thread_id=thread_id)
                results.extend(judgement.results)
                if not judgement.passed:
                    return records, results, judgement
                record = judged_definition(definition, judgement)
                self._passed[text] = record
                while len(self._passed) > 1024:
                    self._passed.popitem(last=False)
            self._passed.move_to_end(text)
            records[tool.name] = record
        return records, results, None

    def check_tool_names(self, tools: tuple[ClientTool, ...]) -> str | None:
        taken = set(self.deps.tools) | set(BUILTIN_TOOLS)
        clash = sorted(t.name for t in tools if t.name in taken)
        return f"client tool names clash with the server's tools: {', '.join(clash)}" if clash else None

    def deps_for(self, tools: tuple[ClientTool, ...], records: dict[str, str]) -> AgentDeps:
        """The agent's dependencies with the client's tools (as proxies) and their definitions' records."""
        key = tuple((t.name, t.description, json.dumps(t.parameters, sort_keys=True), records.get(t.name))
                    for t in tools)
        cached = self._deps.get(key)
        if cached is not None:
            self._deps.move_to_end(key)
            return cached
        proxies = {t.name: ClientToolProxy(t.name, t.description, t.parameters) for t in tools}
        spec = self.deps.tool_spec
        deps = dataclasses.replace(
            self.deps, tools={**self.deps.tools, **proxies}, tool_records={**self.deps.tool_records, **records},
            tool_spec=ToolSpec(tools=(*spec.tools, *(p.definition() for p in proxies.values())),
                               builtin_tools=spec.builtin_tools, tool_format=spec.tool_format),
        )
        self._deps[key] = deps
        while len(self._deps) > self._cache_size:
            self._deps.popitem(last=False)
        return deps

    async def stream(
        self, saver: BaseCheckpointSaver[Any], thread_id: str, seed: Seed, user_text: str | None,
        tools: tuple[ClientTool, ...], records: dict[str, str],
        backend: Callable[[ModelBackend], ModelBackend] | None = None, images: tuple[ImageData, ...] = (),
    ) -> AsyncIterator[Event | ClientToolCalls]:
        """One turn on a fresh thread seeded with `seed`; the agent's events (plus ClientToolCalls). `backend`
        wraps the main model for this turn only (the request's settings and usage: `sampling.RequestBackend`)."""
        deps = self.deps_for(tools, records)
        if backend is not None:
            deps = dataclasses.replace(deps, backend=backend(deps.backend))
        agent = Agent(deps, saver, compiled=self.graph)
        self.seeds[thread_id] = seed
        try:
            async for event in agent.stream(user_text, thread_id=thread_id, interface="server", images=images):
                yield event
        finally:
            self.seeds.pop(thread_id, None)

    async def messages(
        self, saver: BaseCheckpointSaver[Any], thread_id: str, tools: tuple[ClientTool, ...], records: dict[str, str]
    ) -> list[MessageDict]:
        """The thread's messages as the turn left them (sealed by their judgements)."""
        agent = Agent(self.deps_for(tools, records), saver, compiled=self.graph)
        return list((await agent.state(thread_id)).get("messages") or [])


def make_seeded_entry(seeds: Mapping[str, Seed]) -> EntryNode:
    async def seeded_entry(state: AgentState, runtime: Runtime[TurnContext]) -> Command[Literal[ToModel, ToEnd]]:
        seed = seeds.get(runtime.context.thread_id)
        if seed is None:  # a thread without a seed (an approval resume never re-enters here): the agent's own entry
            return await input_guard(state, runtime)
        messages = list(seed.messages)  # sealed by trust.py: judged now, or recognised
        if not seed.after_tools:
            return await input_guard({"messages": messages, "dropped": 0, LEDGER: VERSION}, runtime)
        start = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=0)
        steps = sum(1 for m in messages[start:] if m["role"] == "assistant")
        turn = {**new_turn(start), "steps": steps}  # the client's tool results are in view: untrusted content
        return Command(update={"messages": messages, "turn": turn, LEDGER: VERSION}, goto=MODEL)

    return seeded_entry


async def client_review(
    state: AgentState, runtime: Runtime[TurnContext]
) -> Command[Literal[ToApproval, ToExecute, ToEnd]]:
    """The agent's review (tool_call guards and the policy's rules, for every call); then a passed call to a client
    tool ends the turn with the calls the client runs."""
    command = await review_calls(state, runtime)
    ctx = runtime.context
    client_tools = {name for name, tool in ctx.deps.tools.items() if isinstance(tool, ClientToolProxy)}
    if not client_tools or command.goto == END:
        return command
    turn = dict((command.update or {}).get("turn") or {})
    chosen = [c for c in turn.get("pending") or () if c["name"] in client_tools and c["status"] in ("run", "ask")]
    if not chosen:  # e.g. the policy denied the client call: the model reads why, as for any tool
        return command
    calls = tuple({"call_id": c["call_id"], "name": c["name"], "arguments": dict(c["arguments"])} for c in chosen)
    # a server event, not one of the agent's (TurnContext.emit takes those): onto the run's stream directly
    runtime.stream_writer(ClientToolCalls(calls))
    return Command(update={"turn": {**turn, "outcome": "client_tools", "pending": []}}, goto=END)
