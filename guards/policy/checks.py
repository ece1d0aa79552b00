"""Rules that span several keys of a policy (category codes against the Llama Guard variant, and the like).

They return (key path, problem) pairs rather than raising, so the loader can point each one at its line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from guards.policy.categories import categories_for_variant, code_number, last_code_number, variant_label
from guards.policy.guards_config import LlamaGuardConfig
from guards.policy.registry import LLAMA_GUARD, STAGE_NAMES

if TYPE_CHECKING:
    from guards.policy.schema import Policy

Loc = tuple[str | int, ...]


def consistency_problems(policy: Policy) -> list[tuple[Loc, str]]:
    return _category_problems(policy) + _prompt_format_problems(policy)


def _prompt_format_problems(policy: Policy) -> list[tuple[Loc, str]]:
    """Meta renders the Python-list format and Llama 4 only in its own (`meta`) dialect, Llama 4's tools only so."""
    agent, family = policy.agent, policy.models.main.family
    problems: list[tuple[Loc, str]] = []
    if family == "llama4" and agent.tool_format in ("json", "function_tag"):
        problem = f"{agent.tool_format}: the llama4 family offers tools in the pythonic format only"
        problems.append((("agent", "tool_format"), problem))
    if agent.dialect == "hf" and (family == "llama4" or agent.tool_format == "pythonic"):
        what = "the llama4 family" if family == "llama4" else "tool_format pythonic"
        problems.append((("agent", "dialect"), f"hf: {what} is Meta's rendering only (dialect meta)"))
    return problems


def _category_problems(policy: Policy) -> list[tuple[Loc, str]]:
    lg = policy.guard_settings(LLAMA_GUARD, LlamaGuardConfig)
    variant = policy.models.llama_guard.variant
    builtin = categories_for_variant(variant)
    last = last_code_number(variant)
    known_list = f"S1..S{last} for {variant_label(variant)}"
    problems: list[tuple[Loc, str]] = []

    custom_codes: set[str] = set()
    new_codes = {c.code for c in lg.custom if c.code not in builtin}
    # New codes continue the variant's numbering without gaps (in any order): S15, S16, ... for 8b.
    highest_allowed = last + len(new_codes)
    missing = [f"S{n}" for n in range(last + 1, highest_allowed + 1) if f"S{n}" not in new_codes]
    for i, custom in enumerate(lg.custom):
        loc: Loc = (LLAMA_GUARD, "custom", i, "code")
        if custom.code in custom_codes:
            problems.append((loc, f"{custom.code} is defined twice in custom"))
            continue
        custom_codes.add(custom.code)
        if custom.code in lg.excluded:
            problems.append((loc, f"{custom.code} is both excluded and customised; drop one of the two"))
        elif custom.code in builtin:
            if lg.categories is not None and custom.code not in lg.categories:
                problems.append((loc, f"{custom.code} is customised but not enabled in categories; add it there"))
        elif code_number(custom.code) > highest_allowed:
            problems.append(
                (
                    loc,
                    f"{custom.code} is not a built-in code ({known_list}) and leaves a gap: number new categories "
                    f"S{last + 1}, S{last + 2}, ... without gaps (missing {', '.join(missing)})",
                )
            )

    known = set(builtin) | custom_codes

    def unknown(code: str) -> str:
        hint = " (S14 exists only in the 8B model and Llama Guard 4)" if code == "S14" and variant == "1b" else ""
        return f"unknown category {code}{hint}; known: {known_list}, plus codes defined in custom"

    seen: set[str] = set()
    for i, code in enumerate(lg.categories or ()):
        if code not in known:
            problems.append(((LLAMA_GUARD, "categories", i), unknown(code)))
        elif code in seen:
            problems.append(((LLAMA_GUARD, "categories", i), f"{code} is listed twice"))
        seen.add(code)

    seen = set()
    for i, code in enumerate(lg.excluded):
        loc = (LLAMA_GUARD, "excluded", i)
        if code not in known:
            problems.append((loc, unknown(code)))
        elif code in seen:
            problems.append((loc, f"{code} is listed twice"))
        elif lg.categories is not None and code in lg.categories:
            problems.append((loc, f"{code} is both enabled in categories and excluded; drop one of the two"))
        seen.add(code)

    for code in lg.category_actions:
        if code not in known:
            problems.append(((LLAMA_GUARD, "category_actions", code), unknown(code)))

    if not problems and not policy.enabled_categories() and _llama_guard_runs(policy):
        problems.append(
            ((LLAMA_GUARD, "excluded"), "no category is left enabled, yet Llama Guard runs on some stage")
        )
    return problems


def _llama_guard_runs(policy: Policy) -> bool:
    return any(policy.stages.get(stage).guard(LLAMA_GUARD).enabled for stage in STAGE_NAMES)


def format_loc(loc: Loc) -> str:
    """('tools', 'deny', 0) -> 'tools.deny[0]'."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text
