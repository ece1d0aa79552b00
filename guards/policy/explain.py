"""`assistant policy explain`: a policy in plain words - for each stage, what runs and what a hit or an error does."""

from __future__ import annotations

from collections.abc import Sequence

from guards.policy.guard_stages import PromptGuardStage
from guards.policy.guards_config import CodeShieldConfig, GuardSettings, LlamaGuardConfig, PromptGuardConfig
from guards.policy.registry import (
    CODE,
    CODE_SHIELD,
    GUARD_NAMES,
    LLAMA_GUARD,
    MODEL_OUTPUT,
    PROMPT_GUARD,
    STAGE_NAMES,
    TOOL_CALL,
    TOOL_RESULT,
    USER_INPUT,
    StageName,
    guard_label,
)
from guards.policy.schema import Policy

STAGE_MEANINGS: dict[StageName, str] = {
    USER_INPUT: "what the user types",
    MODEL_OUTPUT: "what the model answers",
    TOOL_CALL: "the arguments of a tool call the model proposes",
    TOOL_RESULT: "what a tool returns (third-party text)",
    CODE: "code that code_interpreter is about to run",
}
_ACTION_WORDS = {
    "block": "block and refuse",
    "warn": "continue, flagged as a warning",
    "log": "only record it in the audit log",
    "ask": "ask a person for approval",
    "allow": "let it through",
}
# A block on a tool's result does not end the turn: the agent withholds the result and the model reads a notice.
_TOOL_RESULT_BLOCK = "withhold the result (the model sees a notice instead of it) and the turn goes on"
_LLAMA_GUARD_ROLE: dict[StageName, str] = {USER_INPUT: "User", TOOL_RESULT: "User"}


def _action(stage: StageName, action: str) -> str:
    if stage == TOOL_RESULT and action == "block":
        return _TOOL_RESULT_BLOCK
    return _ACTION_WORDS[action]


def explain_policy(policy: Policy, *, warnings: Sequence[str] = ()) -> str:
    lines: list[str] = []
    models = policy.models
    categories = policy.enabled_categories()
    lines += [
        "Models",
        f"  main model:   {models.main.source} ({models.main.backend}, device {models.main.device})",
        f"  Llama Guard:  {models.llama_guard.source} (variant {models.llama_guard.variant}, "
        f"device {models.llama_guard.device})",
        f"  Prompt Guard: {models.prompt_guard.source} (device {models.prompt_guard.device})",
        "",
        f"Llama Guard categories ({len(categories)}): " + ", ".join(f"{c.code} {c.name}" for c in categories),
        "",
    ]
    for stage in STAGE_NAMES:
        lines += [f"{stage}: {STAGE_MEANINGS[stage]}", *_stage_lines(policy, stage), ""]
    lines += _tool_lines(policy)
    lines += ["", f"Audit log: {policy.audit.path or 'audit.jsonl in the data directory'}, texts stored as "
              f"{policy.audit.texts}"]
    if warnings:
        lines += ["", "Warnings:", *(f"  - {w}" for w in warnings)]
    return "\n".join(lines)


def _on_error(on_error: str, timeout_s: float) -> str:
    outcome = "block (fail closed)" if on_error == "block" else "ALLOW the text unchecked (fail open)"
    return f"if it fails or takes over {timeout_s:g} s: {outcome}"


def _stage_lines(policy: Policy, stage: StageName) -> list[str]:
    config = policy.stages.get(stage)
    refusal = policy.refusals.for_stage(stage)
    lines: list[str] = []
    if config.guard(LLAMA_GUARD).enabled:
        lg = policy.guard_settings(LLAMA_GUARD, LlamaGuardConfig)
        role = _LLAMA_GUARD_ROLE.get(stage, "Agent")
        lines.append(
            f"  - {guard_label(LLAMA_GUARD)} (as the {role} turn): unsafe when P(unsafe) >= {lg.threshold:g} -> "
            f"{_action(stage, lg.action)}"
        )
        for code, action in sorted(lg.category_actions.items()):
            lines.append(f"      {code}: {_action(stage, action)}")
        lines.append(f"      {_on_error(lg.on_error, lg.timeout_s)}")
    pg = config.guard(PROMPT_GUARD, PromptGuardStage)
    if pg.enabled:
        settings = policy.guard_settings(PROMPT_GUARD, PromptGuardConfig)
        lines.append(
            f"  - {guard_label(PROMPT_GUARD)} ({pg.score} score, {settings.window_tokens}-token windows every "
            f"{settings.stride_tokens} tokens): score >= {pg.threshold:g} -> {_action(stage, pg.action)}"
        )
        lines.append(f"      {_on_error(settings.on_error, settings.timeout_s)}")
    if config.guard(CODE_SHIELD).enabled:
        cs = policy.guard_settings(CODE_SHIELD, CodeShieldConfig)
        languages = ", ".join(cs.languages) if cs.languages is not None else "every language it knows"
        lines.append(f"  - {guard_label(CODE_SHIELD)} ({languages}):")
        for treatment in ("block", "warn", "ignore"):
            action = getattr(cs.actions, treatment)
            lines.append(f"      findings it recommends to {treatment}: {_action(stage, action)}")
        lines.append(f"      {_on_error(cs.on_error, cs.timeout_s)}")
    for guard in GUARD_NAMES:  # a guard without a description of its own above: its label and failure handling
        if guard not in (LLAMA_GUARD, PROMPT_GUARD, CODE_SHIELD) and config.guard(guard).enabled:
            own = policy.guard_settings(guard, GuardSettings)
            lines.append(f"  - {guard_label(guard)}: its verdict is the action")
            lines.append(f"      {_on_error(own.on_error, own.timeout_s)}")
    if not lines:
        return ["  - nothing checks this stage"]
    label = "notice the model sees instead of a withheld result" if stage == TOOL_RESULT else "refusal message"
    lines.append(f'  {label}: "{refusal}"')
    return lines


def _tool_lines(policy: Policy) -> list[str]:
    tools = policy.tools
    builtin = tools.builtin
    enabled = [name for name in ("code_interpreter", "brave_search", "wolfram_alpha") if getattr(builtin, name).enabled]
    lines = [
        "Tools",
        f"  built-in tools enabled: {', '.join(enabled) or 'none'}",
        f"  custom tools: {', '.join(tools.custom) or 'none'}",
        f"  allowed: {'every registered tool' if tools.allow is None else ', '.join(tools.allow) or 'none'}",
        f"  denied: {', '.join(tools.deny) or 'none'}",
        f"  always need approval: {', '.join(tools.approval_required) or 'none'}",
        f"  at most {tools.max_calls_per_turn} tool calls per turn, {policy.agent.max_steps} model steps",
        f"  side-effect tools after a tool result entered the context: {tools.untrusted_content}",
    ]
    for tool, rules in tools.arguments.items():
        for argument, rule in rules.items():
            constraint = f"matches {rule.pattern!r}" if rule.pattern is not None else "follows a JSON schema"
            lines.append(f"  {tool}.{argument} {constraint}")
    if builtin.code_interpreter.enabled:
        box = tools.sandbox
        lines.append(
            f"  sandbox: isolation {box.isolation}, {box.cpu_seconds} s CPU, {box.wall_seconds:g} s wall, "
            f"{box.memory_mb} MB memory, {box.max_processes} processes"
        )
    return lines
