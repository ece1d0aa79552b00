"""`assistant serve`: the guarded agent behind an HTTP API (OpenAI Chat Completions and native threads).

Modules: `app` (factory, lifespan, small routes), `auth` (API keys, thread ownership), `limits` (body size,
concurrent turns, timeouts, disconnects), `errors` (OpenAI error bodies), `trust` (keyed hashes of judged messages,
judging client history), `agent_bridge` (the agent's graph with a seeded entry and client tools), `openai_compat`
(request parsing, response and chunk shapes), `chat_routes`, `threads_routes`, `metrics`. See docs/SERVER.md.
"""
