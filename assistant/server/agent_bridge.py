"""The agent's own graph for the stateless Chat Completions API: same nodes, guards, policy and audit, plus two seams.

- A seeded entry: the client's (already judged) history becomes the thread's `messages`, then the agent's own
  `input_guard` node judges the new user message; when the request ends with client tool results instead, the turn
  continues at the model node (the results were judged at `tool_result` before, see `trust.py`).
- Client tools: a request's `tools` join the policy's tools as Llama 3.1 custom tools, once their definitions passed
  the `tool_definition` path (judged once per definition and remembered; a definition without that record never
  reaches the prompt: `AgentDeps.encode` refuses it). The agent's `review_calls`
  node runs first (the `tool_call` guards and the policy's tool rules); a call to a client tool that passes ends the
  turn, and the server returns it as `tool_calls`. A client tool never runs on the server.

Nothing here changes agent code: nodes come from the agent's factories.
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assistant.server.openai_compat import ClientTool

if TYPE_CHECKING:  # LangGraph passes a node its config only when the parameter is annotated RunnableConfig
    from langchain_core.runnables import RunnableConfig


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
    messages: list[dict[str, Any]]
    after_tools: bool  # the request ends with client tool results: continue the turn at the model


@dataclass
class ClientToolProxy:
    """Stands for a client's function in the agent's tool table: described to the model, never run here."""

    name: str
    description: str
    parameters: dict[str, Any]
    side_effects: bool = True  # unknown to the server: the safe assumption for the policy's rules
    builtin: bool = False

    def definition(self) -> Any:
        from model.messages import ToolDefinition

        return ToolDefinition(name=self.name, description=self.description, parameters=self.parameters)

    async def run(self, arguments: Any) -> Any:
        from tools.base import ToolOutput

        return ToolOutput.failure(f"{self.name} is the client's tool; the server never runs it")


class TimedBackend:
    """The main model with a latency observer around each completion (every other attribute passes through)."""

    def __init__(self, backend: Any, observe: Any) -> None:
        self._backend = backend
        self._observe = observe

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)

    async def stream(self, prompt_ids: list[int], params: Any) -> AsyncIterator[str]:
        started = time.perf_counter()
        try:
            async for delta in self._backend.stream(prompt_ids, params):
                yield delta
        finally:
            self._observe(time.perf_counter() - started)


class Bridge:
    """Builds (and caches, per set of client tools) the server's variant of the agent graph."""

    def __init__(self, deps: Any, *, cache_size: int = 32) -> None:
        self.deps = deps
        self.seeds: dict[str, Seed] = {}  # thread id -> seed of the run in progress
        self._graphs: OrderedDict[tuple[Any, ...], tuple[Any, Any, frozenset[str]]] = OrderedDict()
        self._cache_size = cache_size
        self._passed: OrderedDict[str, str] = OrderedDict()  # definition text -> its record, once it passed

    async def judge_tools(
        self, pipeline: Any, tools: tuple[ClientTool, ...], *, thread_id: str | None = None
    ) -> tuple[dict[str, str], list[Any], Any]:
        """The records of the client's tool definitions, each judged on the `tool_definition` path the first time
        it is seen, the results of those checks, and at the first that does not pass the judgement that stopped it
        (the request is refused)."""
        from assistant.agent.provenance import definition_text, judged_definition
        from guards.gate import judge

        records: dict[str, str] = {}
        results: list[Any] = []
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
        from model.messages import BUILTIN_TOOLS

        taken = set(self.deps.tools) | set(BUILTIN_TOOLS)
        clash = sorted(t.name for t in tools if t.name in taken)
        return f"client tool names clash with the server's tools: {', '.join(clash)}" if clash else None

    def graph_for(self, tools: tuple[ClientTool, ...], records: dict[str, str]) -> tuple[Any, Any, frozenset[str]]:
        import json

        key = tuple((t.name, t.description, json.dumps(t.parameters, sort_keys=True), records.get(t.name))
                    for t in tools)  # fmt: skip
        cached = self._graphs.get(key)
        if cached is not None:
            self._graphs.move_to_end(key)
            return cached
        from model.messages import ToolSpec

        proxies = {t.name: ClientToolProxy(t.name, t.description, t.parameters) for t in tools}
        spec = self.deps.tool_spec
        deps = dataclasses.replace(
            self.deps, tools={**self.deps.tools, **proxies}, tool_records={**self.deps.tool_records, **records},
            tool_spec=ToolSpec(tools=(*spec.tools, *(p.definition() for p in proxies.values())),
                               builtin_tools=spec.builtin_tools, tool_format=spec.tool_format),
        )  # fmt: skip
        built = (deps, build_server_graph(deps, self.seeds, frozenset(proxies)).compile(), frozenset(proxies))
        self._graphs[key] = built
        while len(self._graphs) > self._cache_size:
            self._graphs.popitem(last=False)
        return built

    async def stream(
        self, saver: Any, thread_id: str, seed: Seed, user_text: str | None, tools: tuple[ClientTool, ...],
        records: dict[str, str],
    ) -> AsyncIterator[Any]:  # fmt: skip
        """One turn on a fresh thread seeded with `seed`; the agent's events (plus ClientToolCalls)."""
        from assistant.agent.graph import Agent

        deps, compiled, _ = self.graph_for(tools, records)
        self.seeds[thread_id] = seed
        try:
            agent = Agent(deps, saver, compiled=compiled)
            async for event in agent.stream(user_text, thread_id=thread_id, interface="server"):
                yield event
        finally:
            self.seeds.pop(thread_id, None)

    async def messages(
        self, saver: Any, thread_id: str, tools: tuple[ClientTool, ...], records: dict[str, str]
    ) -> list[dict[str, Any]]:
        """The thread's messages as the turn left them (sealed by their judgements)."""
        from assistant.agent.graph import Agent

        deps, compiled, _ = self.graph_for(tools, records)
        return list((await Agent(deps, saver, compiled=compiled).state(thread_id)).get("messages") or [])


def build_server_graph(deps: Any, seeds: dict[str, Seed], client_tools: frozenset[str]) -> Any:
    from langgraph.graph import START, StateGraph

    from assistant.agent.nodes import APPROVAL, EXECUTE, INPUT_GUARD, MODEL, REVIEW, make_model
    from assistant.agent.state import AgentState
    from assistant.agent.tool_nodes import make_approval, make_execute

    graph = StateGraph(AgentState)
    graph.add_node(INPUT_GUARD, make_seeded_entry(deps, seeds))
    graph.add_node(MODEL, make_model(deps))
    graph.add_node(REVIEW, make_client_review(deps, client_tools))
    graph.add_node(APPROVAL, make_approval(deps))
    graph.add_node(EXECUTE, make_execute(deps))
    graph.add_edge(START, INPUT_GUARD)
    return graph


def make_seeded_entry(deps: Any, seeds: dict[str, Seed]) -> Any:
    from langgraph.types import Command

    from assistant.agent.nodes import MODEL, make_input_guard, thread_of
    from assistant.agent.provenance import LEDGER, VERSION
    from assistant.agent.state import new_turn

    input_guard = make_input_guard(deps)

    async def seeded_entry(state: Any, config: RunnableConfig) -> Any:
        seed = seeds.get(thread_of(config) or "")
        if seed is None:  # a thread without a seed (an approval resume never re-enters here): the agent's own entry
            return await input_guard(state, config)
        messages = list(seed.messages)  # sealed by trust.py: judged now, or recognised
        if not seed.after_tools:
            return await input_guard({"messages": messages, "dropped": 0, LEDGER: VERSION}, config)
        start = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=0)
        steps = sum(1 for m in messages[start:] if m["role"] == "assistant")
        turn = {**new_turn(start), "steps": steps}  # the client's tool results are in view: untrusted content
        return Command(update={"messages": messages, "turn": turn, LEDGER: VERSION}, goto=MODEL)

    return seeded_entry


def make_client_review(deps: Any, client_tools: frozenset[str]) -> Any:
    from langgraph.graph import END
    from langgraph.types import Command

    from assistant.agent.nodes import emit
    from assistant.agent.tool_nodes import make_review

    review = make_review(deps)

    async def review_calls(state: Any, config: RunnableConfig) -> Any:
        command = await review(state, config)  # tool_call guards and the policy's rules, for every call
        if not client_tools or command.goto == END:
            return command
        turn = dict((command.update or {}).get("turn") or {})
        chosen = [c for c in turn.get("pending") or () if c["name"] in client_tools and c["status"] in ("run", "ask")]
        if not chosen:  # e.g. the policy denied the client call: the model reads why, as for any tool
            return command
        emit(ClientToolCalls(tuple({"call_id": c["call_id"], "name": c["name"], "arguments": dict(c["arguments"])}
                                   for c in chosen)))  # fmt: skip
        return Command(update={"turn": {**turn, "outcome": "client_tools", "pending": []}}, goto=END)

    return review_calls
