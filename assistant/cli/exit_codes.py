"""Exit codes shared by every command (documented in docs/AGENT.md and the README)."""

OK = 0
POLICY_INVALID = 1
BAD_INPUT = 2
REFUSED = 3
GUARD_ERROR = 4
MODEL_ERROR = 5
