"""Constrained decoding for the local backend with xgrammar: an `OutputConstraint` becomes a token chooser that
masks, before each choice, every token the constraint does not allow at that point.

Why xgrammar (bench/structured_output.py measures it against lm-format-enforcer and outlines-core on the tiny
Llama 3.1 vocabulary): its mask costs tens of microseconds per token plus about a millisecond to apply over 128,256
logits on a CPU, a schema compiles in milliseconds, it handles any JSON Schema including recursive ones (outlines-core
builds a regular expression, so `json_object`'s any-depth JSON and recursive schemas need a depth limit), and
literal text and JSON compose as grammars (the `<function=name>` tool format).

The JSON is compact (no free whitespace: a weak model cannot pad forever), and once a choice is complete only the
model's stop tokens are allowed, so the completion ends there. The prompt is untouched; the mask applies to generated
tokens only.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from model.backends.decoding import TokenChooser
from model.backends.errors import BackendError
from model.constraint import JsonPiece, OutputConstraint

_CACHE_SIZE = 64  # compiled constraints kept per model
_SOURCE_PREFIX = re.compile(r"^\[[^]]*\] \S+: ")  # xgrammar's "[time] file.cc:line: " before its message


def _grammar(constraint: OutputConstraint) -> Any:
    import xgrammar as xgr

    def piece(part: str | JsonPiece) -> Any:
        if isinstance(part, JsonPiece):
            return xgr.Grammar.from_json_schema(part.schema_text, any_whitespace=False, strict_mode=True)
        return xgr.Grammar.from_ebnf("root ::= " + json.dumps(part))  # an EBNF string literal escapes like JSON

    choices = [xgr.Grammar.concat(*map(piece, choice)) if len(choice) > 1 else piece(choice[0])
               for choice in constraint.choices]
    return xgr.Grammar.union(*choices) if len(choices) > 1 else choices[0]


@functools.lru_cache(maxsize=_CACHE_SIZE)  # asked on every request; a client repeats its schema
def grammar_problem(constraint: OutputConstraint) -> str | None:
    """Why xgrammar cannot build the constraint's grammar (a `$ref` to nothing, a regex feature it lacks), or None:
    checked when the request arrives, so a client gets a 400 naming the field instead of a failed turn. Building the
    grammar needs no tokenizer and takes milliseconds; the compiled form is made (and cached) when decoding."""
    try:
        _grammar(constraint)
    except (RuntimeError, ValueError) as exc:
        lines = str(exc).strip().splitlines()
        detail = _SOURCE_PREFIX.sub("", lines[0]) if lines else type(exc).__name__
        return f"its grammar cannot be built: {detail}"
    return None


class GrammarCompiler:
    """One model's compiled constraints: the tokenizer's table (about a second for Llama 3's vocabulary, once per
    model) and each constraint's grammar (kept for the next request with the same schema)."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: Iterable[int]) -> None:
        self._tokenizer = tokenizer
        self._vocab_size = vocab_size
        self._stop_ids = sorted(stop_ids)  # the only tokens allowed after a complete choice
        self._compiler: Any = None
        self._compiled: OrderedDict[OutputConstraint, Any] = OrderedDict()
        self._lock = threading.Lock()

    def compile(self, constraint: OutputConstraint) -> Any:
        import xgrammar as xgr

        with self._lock:
            if self._compiler is None:
                info = xgr.TokenizerInfo.from_huggingface(self._tokenizer, vocab_size=self._vocab_size,
                                                          stop_token_ids=self._stop_ids)
                self._compiler = xgr.GrammarCompiler(info, max_threads=2)
            compiled = self._compiled.get(constraint)
            if compiled is None:
                try:
                    compiled = self._compiler.compile_grammar(_grammar(constraint))
                except (RuntimeError, ValueError) as exc:
                    raise BackendError(f"cannot build the {constraint.what} grammar: {exc}") from exc
                self._compiled[constraint] = compiled
                while len(self._compiled) > _CACHE_SIZE:
                    self._compiled.popitem(last=False)
            self._compiled.move_to_end(constraint)
            return compiled

    def chooser(self, constraint: OutputConstraint, choose: TokenChooser) -> TokenChooser:
        """`choose` (greedy or sampling) over the logits with every token the constraint forbids masked out."""
        import torch
        import xgrammar as xgr

        matcher = xgr.GrammarMatcher(self.compile(constraint))
        bitmask = xgr.allocate_token_bitmask(1, self._vocab_size)

        def constrained(logits: Any) -> int:
            matcher.fill_next_token_bitmask(bitmask)
            masked = logits.detach().to("cpu", torch.float32).reshape(1, -1).clone()
            xgr.apply_token_bitmask_inplace(masked, bitmask)
            token = choose(masked[0])
            if not matcher.accept_token(token):  # only an all-masked row could get here
                raise BackendError(f"the {constraint.what} grammar allows no next token")
            return token

        return constrained


__all__ = ["GrammarCompiler", "grammar_problem"]
