"""The Llama tokenizers: tiktoken BPE. Llama 3: 128,000 ranks plus 256 special tokens (ids 128000..128255); Llama 4:
200,000 ranks plus 2,048 special tokens (ids 200000..202047). `model.tokenizer_specs` describes each family.

`encode` is for plain text only: special-token strings in the text (`<|eot_id|>`, `<|eot|>`, ...) become ordinary
tokens, never special ids, so untrusted text can never forge control tokens. Prompt templates add control tokens by id
(`special_id`). Long inputs are cut the way Meta's tokenizer cuts them (400k-character chunks, runs of at most 25k
whitespace or non-whitespace characters), which avoids tiktoken's pathological cases and keeps the ids identical to
Meta's.
"""

from __future__ import annotations

import base64
import importlib
import re
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from model.tokenizer_specs import LLAMA3, TokenizerSpec, spec_for

if TYPE_CHECKING:
    import tiktoken

NUM_BASE_TOKENS = LLAMA3.num_base_tokens
NUM_SPECIAL_TOKENS = len(LLAMA3.special_names)
VOCAB_SIZE = LLAMA3.vocab_size
STOP_TOKENS = LLAMA3.stop_tokens

# Meta's pre-tokenizer split pattern (`pat_str` in llama_models/llama3/tokenizer.py).
PAT_STR = LLAMA3.pat_str

# Same limits as Meta's tokenizer, so long texts split at the same places and give the same ids.
MAX_ENCODE_CHARS = 400_000
MAX_RUN_CHARS = 25_000
_RUN = re.compile(r"\s+|\S+")


class TokenizerError(RuntimeError):
    """The ranks file is missing or not the family's tokenizer."""


def special_token_names(family: str = "llama3") -> list[str]:
    """The family's special tokens in id order (Llama 3: 256, Llama 4: 2048), named as in Meta's `Tokenizer`."""
    return list(spec_for(family).special_names)


def default_tokenizer_model(family: str = "llama3") -> Path:
    """The family's tiktoken ranks file shipped with the `llama-models` package (a dependency, read in place)."""
    meta_tokenizer = importlib.import_module(spec_for(family).meta_module)
    return Path(str(meta_tokenizer.__file__)).parent / "tokenizer.model"


def find_tokenizer_model(model_dir: Path | None, family: str = "llama3") -> Path:
    """`tokenizer.model` of a local model directory (Meta layout or HF `original/`), else llama-models' copy."""
    if model_dir is not None:
        for candidate in (model_dir / "tokenizer.model", model_dir / "original" / "tokenizer.model"):
            if candidate.is_file():
                return candidate
    return default_tokenizer_model(family)


def load_ranks(path: Path, spec: TokenizerSpec = LLAMA3) -> dict[bytes, int]:
    """Parse a tiktoken ranks file (`<base64 token> <rank>` per line) and check it is the family's."""
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
    count = spec.num_base_tokens
    if sorted(ranks.values()) != list(range(count)):
        label = spec.family.replace("llama", "Llama ")
        raise TokenizerError(f"{path}: expected the {count} {label} ranks 0..{count - 1}")
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
    """A Llama family's tokenizer (the name is historical: `spec` picks Llama 3 or Llama 4, `family` says which)."""

    def __init__(self, ranks_path: Path, spec: TokenizerSpec = LLAMA3) -> None:
        import tiktoken

        self.spec = spec
        self.family = spec.family
        self.num_base_tokens = spec.num_base_tokens
        self.ranks_path = ranks_path
        self.special_tokens: dict[str, int] = {
            name: spec.num_base_tokens + i for i, name in enumerate(spec.special_names)
        }
        self._model: tiktoken.Encoding = tiktoken.Encoding(
            name=f"{spec.family}:{ranks_path}",
            pat_str=spec.pat_str,
            mergeable_ranks=load_ranks(ranks_path, spec),
            special_tokens=self.special_tokens,
        )
        self.vocab_size = spec.vocab_size
        self.stop_ids: tuple[int, ...] = tuple(self.special_tokens[name] for name in spec.stop_tokens)
        self.bos_id = self.special_tokens["<|begin_of_text|>"]
        self.eot_id = self.special_tokens[spec.eot]
        self.eom_id = self.special_tokens[spec.eom]
        self.python_tag_id = self.special_tokens[spec.python_tag]

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
            raise KeyError(f"not a {self.family.replace('llama', 'Llama ')} special token: {name!r}") from None

    def decode(self, ids: Sequence[int]) -> str:
        """Ids to text; special ids come out as their strings, invalid UTF-8 as U+FFFD."""
        return self._model.decode(list(ids))

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        return self._model.decode_bytes(list(ids))

    def is_special(self, token_id: int) -> bool:
        return token_id >= self.num_base_tokens


LlamaTokenizer = Llama3Tokenizer  # the family-neutral name


@lru_cache(maxsize=4)
def _load(ranks_path: Path, family: str) -> Llama3Tokenizer:
    return Llama3Tokenizer(ranks_path, spec_for(family))


def get_tokenizer(model_dir: Path | None = None, family: str = "llama3") -> Llama3Tokenizer:
    """The family's tokenizer for a model directory (its own ranks when it has them), loaded once per ranks file."""
    spec_for(family)  # an unknown family is an error before any file is read
    path = find_tokenizer_model(Path(model_dir) if model_dir is not None else None, family)
    return _load(path.resolve(), family)
