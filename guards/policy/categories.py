"""Llama Guard hazard categories (the MLCommons taxonomy), as named in Meta's Llama Guard 3 and 4 model cards.

One table for the whole project: the policy validates codes against it and the Llama Guard prompt is built from it.
S14 (Code Interpreter Abuse) exists in Llama Guard 3 8B and Llama Guard 4 (whose card marks it text-only); Llama
Guard 3 1B knows S1..S13. Variant `4` is Llama Guard 4 12B: the same codes and prompt names, Llama 4's tokenizer
and chat format (`family_for_variant`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

LlamaGuardVariant = Literal["8b", "1b", "4"]

LLAMA_GUARD_CATEGORIES: dict[str, str] = {
    "S1": "Violent Crimes",
    "S2": "Non-Violent Crimes",
    "S3": "Sex-Related Crimes",
    "S4": "Child Sexual Exploitation",
    "S5": "Defamation",
    "S6": "Specialized Advice",
    "S7": "Privacy",
    "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons",
    "S10": "Hate",
    "S11": "Suicide & Self-Harm",
    "S12": "Sexual Content",
    "S13": "Elections",
    "S14": "Code Interpreter Abuse",
}

# The last built-in code of each variant; custom categories with new codes are numbered after it.
_LAST_CODE: dict[str, int] = {"8b": 14, "1b": 13, "4": 14}
# The model family (tokenizer and chat format) each variant's prompt is written in.
_FAMILY: dict[str, str] = {"8b": "llama3", "1b": "llama3", "4": "llama4"}

CATEGORY_CODE_PATTERN = re.compile(r"^S[1-9][0-9]*$")


def categories_for_variant(variant: LlamaGuardVariant) -> dict[str, str]:
    """The built-in categories a Llama Guard variant was trained on, code -> name, in code order."""
    last = _LAST_CODE[variant]
    return {code: name for code, name in LLAMA_GUARD_CATEGORIES.items() if code_number(code) <= last}


def last_code_number(variant: LlamaGuardVariant) -> int:
    return _LAST_CODE[variant]


def family_for_variant(variant: str) -> str:
    """`llama3` for Llama Guard 3 (8b, 1b), `llama4` for Llama Guard 4 (4)."""
    try:
        return _FAMILY[variant]
    except KeyError:
        raise ValueError(f"unknown Llama Guard variant {variant!r} (expected one of {', '.join(_FAMILY)})") from None


def variant_label(variant: str) -> str:
    """How messages name a variant: `Llama Guard 3 8B`, `Llama Guard 3 1B`, `Llama Guard 4`."""
    return "Llama Guard 4" if variant == "4" else f"Llama Guard 3 {variant.upper()}"


def code_number(code: str) -> int:
    """`S12` -> 12. The code must match `S<positive integer>`."""
    if not CATEGORY_CODE_PATTERN.match(code):
        raise ValueError(f"not a category code: {code!r} (expected S1, S2, ...)")
    return int(code[1:])


# The category names exactly as Meta's Llama Guard 3 prompt spells them (the Hugging Face Llama-Guard-3-8B chat
# template and llama-stack's Llama Guard provider). They differ from the model card's names above (for example
# "Sex Crimes" here, "Sex-Related Crimes" there); the prompt must use these, the UI may use either.
LLAMA_GUARD_PROMPT_NAMES: dict[str, str] = {
    "S1": "Violent Crimes",
    "S2": "Non-Violent Crimes",
    "S3": "Sex Crimes",
    "S4": "Child Exploitation",
    "S5": "Defamation",
    "S6": "Specialized Advice",
    "S7": "Privacy",
    "S8": "Intellectual Property",
    "S9": "Indiscriminate Weapons",
    "S10": "Hate",
    "S11": "Self-Harm",
    "S12": "Sexual Content",
    "S13": "Elections",
    "S14": "Code Interpreter Abuse",
}


@dataclass(frozen=True)
class LlamaGuardCategory:
    """One category as it goes into the Llama Guard prompt. `description` is set for deployers' custom categories."""

    code: str
    name: str
    description: str | None = None
