"""The graph's edges are the destinations its nodes declare (`-> Command[Literal[...]]`), one builder for every
surface: the server's replacement nodes give the same graph, and a node that declares nothing is refused."""

from __future__ import annotations

import pytest
from langgraph.types import Command

from assistant.agent.graph import GraphNodes, build_graph, compile_graph
from assistant.agent.state import AgentState
from assistant.server.agent_bridge import client_review, make_seeded_entry

EDGES = {
    ("__start__", "input_guard"),
    ("input_guard", "model"), ("input_guard", "__end__"),
    ("model", "model"), ("model", "review_calls"), ("model", "__end__"),
    ("review_calls", "approval"), ("review_calls", "execute"), ("review_calls", "__end__"),
    ("approval", "execute"),
    ("execute", "model"), ("execute", "execute"), ("execute", "__end__"),
}


def edges(nodes: GraphNodes | None = None) -> set[tuple[str, str]]:
    return {(edge.source, edge.target) for edge in compile_graph(nodes).get_graph().edges}


def test_the_declared_destinations_are_the_edges() -> None:
    assert edges() == EDGES


def test_the_server_replaces_two_nodes_of_the_same_graph() -> None:
    server = GraphNodes(input_guard=make_seeded_entry({}), review_calls=client_review)
    assert edges(server) == EDGES


def test_a_node_without_declared_destinations_is_refused() -> None:
    async def undeclared(state: AgentState, runtime: object) -> Command:  # declares nothing, on purpose
        return Command(goto="model")

    with pytest.raises(TypeError, match="input_guard node declares no destinations"):
        build_graph(GraphNodes(input_guard=undeclared))
