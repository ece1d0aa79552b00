"""The guarded agent: a LangGraph graph whose one output is the typed event stream of `assistant.events`.

`assistant.api.Assistant` is the entry point; see docs/AGENT.md for the graph, its invariants and the events.
"""
