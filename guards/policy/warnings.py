"""Valid but risky choices in a policy: `assistant policy check` prints these and still exits 0."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from guards.policy.base import STAGE_NAMES
from guards.policy.checks import Loc, format_loc
from guards.policy.schema import Policy


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

    for guard in ("llama_guard", "prompt_guard", "code_shield"):
        if getattr(policy, guard).on_error == "allow":
            warn((guard, "on_error"), "fail-open: when this guard fails or times out, the text passes unchecked")

    stages = policy.stages
    if not stages.user_input.llama_guard.enabled:
        warn(("stages", "user_input", "llama_guard", "enabled"), "Llama Guard does not check user input")
    if not stages.user_input.prompt_guard.enabled:
        warn(("stages", "user_input", "prompt_guard", "enabled"), "Prompt Guard does not check user input")
    if not stages.model_output.llama_guard.enabled:
        warn(("stages", "model_output", "llama_guard", "enabled"), "Llama Guard does not check the model's output")
    if not stages.tool_result.prompt_guard.enabled:
        warn(
            ("stages", "tool_result", "prompt_guard", "enabled"),
            "tool results enter the context unchecked for prompt injection",
        )
    code_interpreter = policy.tools.builtin.code_interpreter.enabled
    if code_interpreter and not stages.code.code_shield.enabled:
        warn(("stages", "code", "code_shield", "enabled"), "code_interpreter runs model-written code unscanned")
    if code_interpreter and stages.code.code_shield.enabled and policy.code_shield.actions.warn not in ("block", "ask"):
        warn(
            ("code_shield", "actions", "warn"),
            "every Python rule of Code Shield is of severity warning, so no finding stops code_interpreter code; "
            "set it to block (or ask)",
        )
    if policy.code_shield.actions.block != "block":
        warn(("code_shield", "actions", "block"), "code Code Shield recommends blocking is not blocked")

    # Prompt Guard 2 has one malicious label, so `injection` and `jailbreak` read the same score there.
    pg_v1 = "prompt-guard-2" not in policy.models.prompt_guard.source.lower()
    for stage in STAGE_NAMES:
        pg = stages.get(stage).prompt_guard
        if pg.enabled:
            _threshold_warnings(warn, ("stages", stage, "prompt_guard", "threshold"), pg.threshold)
            if pg.action in ("log", "warn") and stage in ("user_input", "tool_result"):
                warn(("stages", stage, "prompt_guard", "action"), f"a detected attack is only {pg.action}ged")
        if stage in ("user_input", "model_output") and pg.enabled and pg.score == "injection" and pg_v1:
            warn(
                ("stages", stage, "prompt_guard", "score"),
                "Prompt Guard v1's injection label is meant for third-party text (tool results, documents), not for "
                "direct user dialogue or model output (its model card): it flags ordinary requests; use `jailbreak`"
                + (" for user input" if stage == "user_input" else ", or leave Prompt Guard off the model's output"),
            )
        if stage == "tool_result" and pg.enabled and pg.score == "jailbreak":
            warn(
                ("stages", stage, "prompt_guard", "score"),
                "tool results are third-party text: score `injection` also catches embedded instructions",
            )
    _threshold_warnings(warn, ("llama_guard", "threshold"), policy.llama_guard.threshold)
    if policy.llama_guard.action in ("log", "warn"):
        warn(("llama_guard", "action"), f"unsafe content is only {policy.llama_guard.action}ged, never blocked")

    lg_model = policy.models.llama_guard
    if "1b" in lg_model.source.lower() and lg_model.variant == "8b":
        warn(("models", "llama_guard", "variant"), "the source looks like Llama Guard 3 1B but variant is 8b")
    if "8b" in lg_model.source.lower() and lg_model.variant == "1b":
        warn(("models", "llama_guard", "variant"), "the source looks like Llama Guard 3 8B but variant is 1b")
    for code, action in policy.llama_guard.category_actions.items():
        if code in policy.llama_guard.excluded:
            warn(
                ("llama_guard", "category_actions", code), f"{code} is excluded, so its action ({action}) never applies"
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
