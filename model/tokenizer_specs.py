"""What makes each Llama family's tiktoken tokenizer: its split pattern, base vocabulary size, special tokens in id
order and the tokens a prompt or a completion needs by role. One `TokenizerSpec` per family (`SPECS`).

Both lists follow Meta's `Tokenizer` classes exactly (llama_models/llama3/tokenizer.py, llama_models/llama4/
tokenizer.py); `tests/model/test_tokenizer*.py` compare them id for id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

Family = Literal["llama3", "llama4"]
FAMILIES: tuple[str, ...] = get_args(Family)


@dataclass(frozen=True)
class TokenizerSpec:
    family: Family
    pat_str: str
    num_base_tokens: int
    special_names: tuple[str, ...]  # in id order, from num_base_tokens on
    stop_tokens: tuple[str, ...]  # end_of_text, end of message, end of turn
    eot: str
    eom: str
    python_tag: str  # what opens a tool call / code
    meta_module: str  # the llama-models module whose folder holds the family's `tokenizer.model`

    @property
    def vocab_size(self) -> int:
        return self.num_base_tokens + len(self.special_names)


# ---- Llama 3 (llama_models/llama3/tokenizer.py) -------------------------------------------------------------------

LLAMA3_PAT_STR = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_LLAMA3_NAMED = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
    "<|image|>",
)
_LLAMA3_SPECIALS = (
    *_LLAMA3_NAMED,
    *(f"<|reserved_special_token_{2 + i}|>" for i in range(256 - len(_LLAMA3_NAMED))),
)
LLAMA3 = TokenizerSpec(
    family="llama3",
    pat_str=LLAMA3_PAT_STR,
    num_base_tokens=128_000,
    special_names=_LLAMA3_SPECIALS,
    stop_tokens=("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"),
    eot="<|eot_id|>",
    eom="<|eom_id|>",
    python_tag="<|python_tag|>",
    meta_module="llama_models.llama3.tokenizer",
)


# ---- Llama 4 (llama_models/llama4/tokenizer.py) -------------------------------------------------------------------

LLAMA4_PAT_STR = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def _reserved(name: str, count: int, start: int) -> tuple[str, ...]:
    return tuple(f"<|{name}_reserved_special_token_{i}|>" for i in range(start, start + count))


_LLAMA4_TEXT = (
    "<|header_start|>",
    "<|header_end|>",
    "<|eom|>",
    "<|eot|>",
    "<|step|>",
    *_reserved("text_post_train", 6, 0),
    "<|python_start|>",
    "<|python_end|>",
    "<|finetune_right_pad|>",
    *_reserved("text_post_train", 61, 8),
)
_LLAMA4_VISION = (
    "<|image_start|>",
    "<|image_end|>",
    *_reserved("vision", 2, 0),
    "<|tile_x_separator|>",
    "<|tile_y_separator|>",
    *_reserved("vision", 4, 2),
    "<|image|>",
    *_reserved("vision", 1, 6),
    "<|patch|>",
    *_reserved("vision", 1041, 7),
)
_LLAMA4_REASONING = (
    *_reserved("reasoning", 8, 0),
    "<|reasoning_thinking_start|>",
    "<|reasoning_thinking_end|>",
)
_LLAMA4_NAMED = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    *_LLAMA4_TEXT,
    *_LLAMA4_VISION,
    *_LLAMA4_REASONING,
)
_LLAMA4_SPECIALS = (
    *_LLAMA4_NAMED,
    *(f"<|reserved_special_token_{i}|>" for i in range(2048 - len(_LLAMA4_NAMED))),
)
LLAMA4 = TokenizerSpec(
    family="llama4",
    pat_str=LLAMA4_PAT_STR,
    num_base_tokens=200_000,
    special_names=_LLAMA4_SPECIALS,
    stop_tokens=("<|end_of_text|>", "<|eom|>", "<|eot|>"),
    eot="<|eot|>",
    eom="<|eom|>",
    python_tag="<|python_start|>",
    meta_module="llama_models.llama4.tokenizer",
)

SPECS: dict[str, TokenizerSpec] = {spec.family: spec for spec in (LLAMA3, LLAMA4)}


def spec_for(family: str) -> TokenizerSpec:
    try:
        return SPECS[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r} (expected one of {', '.join(FAMILIES)})") from None
