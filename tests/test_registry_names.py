"""Stage and guard names are written once: in their declarations (guards/policy/registry.py). Product code uses the
registry's constants (`USER_INPUT`, `LLAMA_GUARD`, ...) or iterates `STAGES` / `GUARDS`, so adding a stage or a guard
does not mean hunting for its siblings' names; and the policy schema's `stages` and `refusals` follow from the
declarations.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from guards.policy import Policy
from guards.policy.registry import GUARD_NAMES, GUARDS, STAGE_NAMES, STAGES
from guards.policy.stages import RefusalsBase, StageConfig, StagesBase

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("assistant", "guards", "tools", "model")
REGISTRY = "guards/policy/registry.py"
NAMES = frozenset(STAGE_NAMES) | frozenset(GUARD_NAMES)

# (file, string) -> why that string, in that file, is not the stage or guard of the same name.
ALLOWED: dict[tuple[str, str], str] = {
    ("guards/runtime/gate.py", "tool_call"): "the gate's `tool_call` path (Path, TOOL_CALL_PATH), where a proposed "
    "call goes: a path, not a stage (it runs the tool_call and code stages)",
    ("guards/runtime/gate.py", "tool_result"): "the gate's `tool_result` path (Path, TOOL_RESULT_PATH): it runs the "
    "tool_result and model_output stages",
    ("guards/policy/checks.py", "code"): "a custom Llama Guard category's `code` key, in a policy key path",
    ("guards/code_shield/guard.py", "code"): "code_interpreter's `code` argument",
    ("guards/code_shield/semgrep_server.py", "code"): "a language-server diagnostic's `code` field (the rule id)",
    ("tools/code_interpreter.py", "code"): "the tool's own `code` argument",
    ("tools/executor.py", "code"): "code_interpreter's `code` argument",
    ("model/prompt_meta.py", "code"): "code_interpreter's `code` argument (model/ imports nothing of guards/)",
    ("model/tool_parser.py", "code"): "code_interpreter's `code` argument, parsed from <|python_tag|> output",
    ("assistant/server/errors.py", "code"): "the OpenAI error object's `code` field",
    ("assistant/server/metrics.py", "code"): "an HTTP response's status code (ASGI message)",
    ("assistant/server/perimeter.py", "code"): "a WebSocket close code (ASGI message)",
    ("assistant/events.py", "tool_call"): "the ToolCallProposed event's JSON `type`, not the stage",
    ("assistant/events.py", "tool_result"): "the ToolResult event's JSON `type`, not the stage",
    ("assistant/tui/transcript.py", "tool_call"): "the ToolCallProposed event's JSON `type` (stored transcripts)",
    ("assistant/tui/transcript.py", "tool_result"): "the ToolResult event's JSON `type` (stored transcripts)",
    ("assistant/tui/screens/approval.py", "code"): "code_interpreter's `code` argument, shown highlighted",
    ("assistant/tui/widgets/messages.py", "code"): "code_interpreter's `code` argument, shown highlighted",
    ("assistant/agent/rejudge.py", "code"): "code_interpreter's `code` argument of a stored call",
}

# Files exempt from the check while parallel work moves them onto the registry (none left).
PENDING: frozenset[str] = frozenset()


def _modules() -> Iterator[str]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix()


def _names_in(module: str) -> Iterator[tuple[int, str]]:
    """(line, string) for every string constant of the module that is exactly a stage or guard name."""
    tree = ast.parse((ROOT / module).read_text(encoding="utf-8"), filename=module)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in NAMES:
            yield node.lineno, node.value


def _found() -> dict[str, list[tuple[int, str]]]:
    return {module: sorted(_names_in(module)) for module in _modules() if module != REGISTRY}


def test_stage_and_guard_names_are_written_only_in_the_registry() -> None:
    spelled = [
        f"{module}:{line}: {value!r}"
        for module, found in _found().items()
        if module not in PENDING
        for line, value in found
        if (module, value) not in ALLOWED
    ]
    assert not spelled, (
        "stage or guard names written out; use the constants of guards.policy.registry (or iterate STAGES / GUARDS), "
        "or, where the string means something else, add (file, string) to ALLOWED with the reason:\n"
        + "\n".join(spelled)
    )


def test_allowed_and_pending_entries_are_still_needed() -> None:
    found = _found()
    stale = [f"ALLOWED {key}" for key in ALLOWED if key[1] not in {value for _, value in found.get(key[0], ())}]
    stale += [f"PENDING {module}" for module in sorted(PENDING) if not found.get(module)]
    assert not stale, "entries that no longer match anything (remove them):\n" + "\n".join(stale)


def test_the_scan_sees_a_name() -> None:
    source = 'from x import judge\njudge(stage="user_input", guard="llama_guard", tool="code_interpreter")\n'
    names = [n.value for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Constant) and n.value in NAMES]
    assert names == ["user_input", "llama_guard"]


def test_stages_and_refusals_have_one_field_per_declared_stage() -> None:
    policy = Policy()
    stages, refusals = type(policy.stages), type(policy.refusals)
    assert issubclass(stages, StagesBase) and issubclass(refusals, RefusalsBase)
    assert list(stages.model_fields) == list(STAGE_NAMES)
    assert set(refusals.model_fields) - set(RefusalsBase.model_fields) == set(STAGE_NAMES)
    for stage in STAGES:
        assert policy.refusals.for_stage(stage.name) == stage.refusal


def test_each_stage_has_one_section_per_declared_guard_with_its_default() -> None:
    policy = Policy()
    for stage in STAGE_NAMES:
        config = policy.stages.get(stage)
        assert isinstance(config, StageConfig)
        assert list(type(config).model_fields) == list(GUARD_NAMES), stage
        for guard in GUARDS:
            section = config.guard(guard.name, guard.stage_section)
            default = guard.on_by_default.get(stage)
            assert section.enabled == (default is not None), (stage, guard.name)
            if default is not None:
                assert section == default, (stage, guard.name)
