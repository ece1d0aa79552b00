"""The Llama 3 tokenizer: tiktoken BPE with 128,000 ranks plus 256 special tokens (ids 128000..128255).

`encode` is for plain text only: special-token strings in the text (`<|eot_id|>`, ...) become ordinary tokens, never
ids >= 128000, so untrusted text can never forge control tokens. Prompt templates add control tokens by id
(`special_id`). Long inputs are cut the way Meta's tokenizer cuts them (400k-character chunks, runs of at most 25k
whitespace or non-whitespace characters), which avoids tiktoken's pathological cases and keeps the ids identical to
Meta's.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tiktoken

NUM_BASE_TOKENS = 128_000
NUM_SPECIAL_TOKENS = 256
VOCAB_SIZE = NUM_BASE_TOKENS + NUM_SPECIAL_TOKENS
STOP_TOKENS = ("<|end_of_text|>", "<|eom_id|>", "<|eot_id|>")

# Meta's pre-tokenizer split pattern (`pat_str` in llama_models/llama3/tokenizer.py).
PAT_STR = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

_NAMED_SPECIALS = (
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

# Same limits as Meta's tokenizer, so long texts split at the same places and give the same ids.
MAX_ENCODE_CHARS = 400_000
MAX_RUN_CHARS = 25_000
_RUN = re.compile(r"\s+|\S+")


class TokenizerError(RuntimeError):
    """The ranks file is missing or not a Llama 3 tokenizer."""


def special_token_names() -> list[str]:
    """The 256 special tokens in id order, named as in Meta's `Tokenizer`."""
    reserved = [f"<|reserved_special_token_{2 + i}|>" for i in range(NUM_SPECIAL_TOKENS - len(_NAMED_SPECIALS))]
    return [*_NAMED_SPECIALS, *reserved]


def default_tokenizer_model() -> Path:
    """The tiktoken ranks file shipped with the `llama-models` package."""
    import llama_models.llama3.tokenizer as meta_tokenizer

    return Path(meta_tokenizer.__file__).parent / "tokenizer.model"


def find_tokenizer_model(model_dir: Path | None) -> Path:
    """`tokenizer.model` of a local model directory (Meta layout or HF `original/`), else llama-models' copy."""
    if model_dir is not None:
        for candidate in (model_dir / "tokenizer.model", model_dir / "original" / "tokenizer.model"):
            if candidate.is_file():
                return candidate
    return default_tokenizer_model()


def load_ranks(path: Path) -> dict[bytes, int]:
    """Parse a tiktoken ranks file (`<base64 token> <rank>` per line) and check it is Llama 3's."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TokenizerError(f"cannot read tokenizer ranks {path}: {exc}") from exc
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except ValueError as exc:
            raise TokenizerError(f"{path}:{number}: not a tiktoken ranks line") from exc
    if sorted(ranks.values()) != list(range(NUM_BASE_TOKENS)):
        raise TokenizerError(f"{path}: expected the {NUM_BASE_TOKENS} Llama 3 ranks 0..{NUM_BASE_TOKENS - 1}")
    return ranks


def split_for_encoding(text: str) -> Iterator[str]:
    """Meta's cuts: 400k-character chunks, then no run of (non-)whitespace longer than 25k characters."""
    for start in range(0, len(text), MAX_ENCODE_CHARS):
        chunk = text[start : start + MAX_ENCODE_CHARS]
        if len(chunk) <= MAX_RUN_CHARS:
            yield chunk
            continue
        piece_start = 0
        for run in _RUN.finditer(chunk):
            for cut in range(run.start() + MAX_RUN_CHARS, run.end(), MAX_RUN_CHARS):
                yield chunk[piece_start:cut]
                piece_start = cut
        yield chunk[piece_start:]


class Llama3Tokenizer:
    def __init__(self, ranks_path: Path) -> None:
        import tiktoken

        names = special_token_names()
        self.ranks_path = ranks_path
        self.special_tokens: dict[str, int] = {name: NUM_BASE_TOKENS + i for i, name in enumerate(names)}
        self._model: tiktoken.Encoding = tiktoken.Encoding(
            name=f"llama3:{ranks_path}",
            pat_str=PAT_STR,
            mergeable_ranks=load_ranks(ranks_path),
            special_tokens=self.special_tokens,
        )
        self.vocab_size = VOCAB_SIZE
        self.stop_ids: tuple[int, ...] = tuple(self.special_tokens[name] for name in STOP_TOKENS)
        self.bos_id = self.special_tokens["<|begin_of_text|>"]
        self.eot_id = self.special_tokens["<|eot_id|>"]
        self.eom_id = self.special_tokens["<|eom_id|>"]
        self.python_tag_id = self.special_tokens["<|python_tag|>"]

    def encode(self, text: str) -> list[int]:
        """Plain text to ids; special-token strings are encoded as ordinary text."""
        ids: list[int] = []
        for piece in split_for_encoding(text):
            ids.extend(self._model.encode_ordinary(piece))
        return ids

    def special_id(self, name: str) -> int:
        try:
            return self.special_tokens[name]
        except KeyError:
            raise KeyError(f"not a Llama 3 special token: {name!r}") from None

    def decode(self, ids: Sequence[int]) -> str:
        """Ids to text; special ids come out as their strings, invalid UTF-8 as U+FFFD."""
        return self._model.decode(list(ids))

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        return self._model.decode_bytes(list(ids))

    def is_special(self, token_id: int) -> bool:
        return token_id >= NUM_BASE_TOKENS


@lru_cache(maxsize=4)
def _load(ranks_path: Path) -> Llama3Tokenizer:
    return Llama3Tokenizer(ranks_path)


def get_tokenizer(model_dir: Path | None = None) -> Llama3Tokenizer:
    """The tokenizer for a model directory (its own ranks when it has them), loaded once per ranks file."""
    return _load(find_tokenizer_model(Path(model_dir) if model_dir is not None else None).resolve())
