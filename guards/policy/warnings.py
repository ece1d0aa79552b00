"""Valid but risky choices in a policy: `assistant policy check` prints these and still exits 0."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from guards.policy.checks import Loc, format_loc
from guards.policy.guard_stages import PromptGuardStage
from guards.policy.guards_config import CodeShieldConfig, LlamaGuardConfig
from guards.policy.registry import (
    CODE,
    CODE_SHIELD,
    GUARD_NAMES,
    LLAMA_GUARD,
    MODEL_OUTPUT,
    PROMPT_GUARD,
    STAGE_NAMES,
    TOOL_RESULT,
    USER_INPUT,
    GuardName,
    StageName,
)
from guards.policy.schema import Policy

# A guard switched off on a stage where it matters: (stage, guard, warning).
_GUARD_OFF: tuple[tuple[StageName, GuardName, str], ...] = (
    (USER_INPUT, LLAMA_GUARD, "Llama Guard does not check user input"),
    (USER_INPUT, PROMPT_GUARD, "Prompt Guard does not check user input"),
    (MODEL_OUTPUT, LLAMA_GUARD, "Llama Guard does not check the model's output"),
    (TOOL_RESULT, PROMPT_GUARD, "tool results enter the context unchecked for prompt injection"),
)


@dataclass(frozen=True)
class PolicyWarning:
    loc: Loc  # the key the warning is about, for pointing at its line
    message: str

    @property
    def key_path(self) -> str:
        return format_loc(self.loc)

    def __str__(self) -> str:
        return f"{self.key_path}: {self.message}"


def policy_warnings(policy: Policy) -> list[str]:
    """Each warning as `key.path: message`."""
    return [str(item) for item in policy_warning_items(policy)]


def policy_warning_items(policy: Policy) -> list[PolicyWarning]:
    found: list[PolicyWarning] = []

    def warn(loc: Loc, message: str) -> None:
        found.append(PolicyWarning(loc, message))

    for guard in GUARD_NAMES:  # each guard's own section (`llama_guard:`, ...)
        if getattr(policy, guard).on_error == "allow":
            warn((guard, "on_error"), "fail-open: when this guard fails or times out, the text passes unchecked")

    stages = policy.stages
    for stage, guard, message in _GUARD_OFF:
        if not stages.get(stage).guard(guard).enabled:
            warn(("stages", stage, guard, "enabled"), message)
    code_shield = policy.guard_settings(CODE_SHIELD, CodeShieldConfig)
    llama_guard = policy.guard_settings(LLAMA_GUARD, LlamaGuardConfig)
    code_interpreter = policy.tools.builtin.code_interpreter.enabled
    code_scanned = stages.get(CODE).guard(CODE_SHIELD).enabled
    if code_interpreter and not code_scanned:
        warn(("stages", CODE, CODE_SHIELD, "enabled"), "code_interpreter runs model-written code unscanned")
    if code_interpreter and code_scanned and code_shield.actions.warn not in ("block", "ask"):
        warn(
            (CODE_SHIELD, "actions", "warn"),
            "every Python rule of Code Shield is of severity warning, so no finding stops code_interpreter code; "
            "set it to block (or ask)",
        )
    if code_shield.actions.block != "block":
        warn((CODE_SHIELD, "actions", "block"), "code Code Shield recommends blocking is not blocked")

    # Prompt Guard 2 has one malicious label, so `injection` and `jailbreak` read the same score there.
    pg_v1 = "prompt-guard-2" not in policy.models.prompt_guard.source.lower()
    for stage in STAGE_NAMES:
        pg = stages.get(stage).guard(PROMPT_GUARD, PromptGuardStage)
        if pg.enabled:
            _threshold_warnings(warn, ("stages", stage, PROMPT_GUARD, "threshold"), pg.threshold)
            if pg.action in ("log", "warn") and stage in (USER_INPUT, TOOL_RESULT):
                warn(("stages", stage, PROMPT_GUARD, "action"), f"a detected attack is only {pg.action}ged")
        if stage in (USER_INPUT, MODEL_OUTPUT) and pg.enabled and pg.score == "injection" and pg_v1:
            warn(
                ("stages", stage, PROMPT_GUARD, "score"),
                "Prompt Guard v1's injection label is meant for third-party text (tool results, documents), not for "
                "direct user dialogue or model output (its model card): it flags ordinary requests; use `jailbreak`"
                + (" for user input" if stage == USER_INPUT else ", or leave Prompt Guard off the model's output"),
            )
        if stage == TOOL_RESULT and pg.enabled and pg.score == "jailbreak":
            warn(
                ("stages", stage, PROMPT_GUARD, "score"),
                "tool results are third-party text: score `injection` also catches embedded instructions",
            )
    _threshold_warnings(warn, (LLAMA_GUARD, "threshold"), llama_guard.threshold)
    if llama_guard.action in ("log", "warn"):
        warn((LLAMA_GUARD, "action"), f"unsafe content is only {llama_guard.action}ged, never blocked")

    lg_model = policy.models.llama_guard
    if "1b" in lg_model.source.lower() and lg_model.variant == "8b":
        warn(("models", LLAMA_GUARD, "variant"), "the source looks like Llama Guard 3 1B but variant is 8b")
    if "8b" in lg_model.source.lower() and lg_model.variant == "1b":
        warn(("models", LLAMA_GUARD, "variant"), "the source looks like Llama Guard 3 8B but variant is 1b")
    # The variant picks the prompt format and tokenizer: a mismatch is a model reading a prompt it was not made for.
    generation = re.search(r"guard-?([34])(?!\d)", lg_model.source.lower())
    if generation and (generation.group(1) == "4") != (lg_model.variant == "4"):
        warn(("models", LLAMA_GUARD, "variant"),
             f"the source looks like Llama Guard {generation.group(1)} but variant is {lg_model.variant}")
    batching = llama_guard.batch_checks > 1 and "batch_checks" in llama_guard.model_fields_set  # set on purpose
    if batching and not lg_model.process:
        warn((LLAMA_GUARD, "batch_checks"), "has no effect: checks are batched only by a local Llama Guard in a "
             "process of its own (models.llama_guard.process: true)")
    elif batching and lg_model.variant == "4":
        warn((LLAMA_GUARD, "batch_checks"), "has no effect on Llama Guard 4, whose checks run one at a time (its "
             "attention reads each token's column, which padding would shift)")
    for code, action in llama_guard.category_actions.items():
        if code in llama_guard.excluded:
            warn(
                (LLAMA_GUARD, "category_actions", code), f"{code} is excluded, so its action ({action}) never applies"
            )

    tools = policy.tools
    if tools.untrusted_content == "allow":
        warn(
            ("tools", "untrusted_content"),
            "side-effect tools run without approval after a tool result (possibly injected text) entered the context",
        )
    if tools.sandbox.isolation == "best_effort":
        warn(("tools", "sandbox", "isolation"), "code may run without the bwrap sandbox (only resource limits apply)")
    for i, name in enumerate(tools.allow or ()):
        if name in tools.deny:
            warn(("tools", "allow", i), f"{name} is both allowed and denied; deny wins")
    if tools.builtin.brave_search.api_key is not None:
        warn(("tools", "builtin", "brave_search", "api_key"), "a secret in the policy file; prefer api_key_env")
    if tools.builtin.wolfram_alpha.app_id is not None:
        warn(("tools", "builtin", "wolfram_alpha", "app_id"), "a secret in the policy file; prefer app_id_env")
    if policy.audit.texts == "full":
        warn(("audit", "texts"), "the audit log stores every checked text in full (it may hold personal data)")
    return found


def _threshold_warnings(warn: Callable[[Loc, str], None], loc: Loc, threshold: float) -> None:
    if threshold >= 1.0:
        warn(loc, "a threshold of 1.0 never triggers: this guard can never flag anything")
    elif threshold <= 0.0:
        warn(loc, "a threshold of 0.0 flags every text")
