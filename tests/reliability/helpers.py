"""Shared pieces of the reliability tests: fuzz budgets, a hard per-example deadline, hostile text strategies."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parents[2]
TINY_DIR = REPO / ".cache" / "tiny-models"

# `make test` runs each property's quick variant (a few hundred derandomized examples); `make fuzz` runs the
# `slow` variants with FUZZ_EXAMPLES (20000) random examples each.
FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0") or 0)
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


def fuzz(default: int, *strategies: Any) -> Callable[[Callable[..., None]], tuple[Any, Any]]:
    """Two tests from one property: `quick` (default examples, derandomized, part of `make test`) and `long`
    (FUZZ_EXAMPLES random examples, marked slow, skipped unless FUZZ_EXAMPLES is set). No wall-clock deadline from
    hypothesis: a hang is caught by `hard_deadline`, which interrupts it instead of measuring after the fact.

        test_x, test_x_long = fuzz(200, st.text())(check_x)
    """

    def build(body: Callable[..., None]) -> tuple[Any, Any]:
        quick = settings(max_examples=default, deadline=None, derandomize=True, suppress_health_check=_HEALTH)(
            given(*strategies)(body)
        )
        long = settings(max_examples=max(FUZZ_EXAMPLES, 1), deadline=None, suppress_health_check=_HEALTH)(
            given(*strategies)(body)
        )
        long = pytest.mark.slow(pytest.mark.skipif(not FUZZ_EXAMPLES, reason="long fuzz: make fuzz")(long))
        return quick, long

    return build


class ExampleHung(AssertionError):
    """One fuzz example ran past its hard deadline: a hang (or a pathological slowdown) in the code under test."""


@contextmanager
def hard_deadline(seconds: float) -> Iterator[None]:
    """Interrupt the block with ExampleHung after `seconds` of wall time (SIGALRM; main thread only)."""

    def expire(signum: int, frame: object) -> None:
        raise ExampleHung(f"example still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- hostile text ----------------------------------------------------------------------------------------------


def special_token_names(family: str = "llama3") -> list[str]:
    from model.tokenizer import special_token_names as names

    return names(family)


_NEAR_MISSES = [
    "<|eot_id|",
    "|eot_id|>",
    "<|eot_id |>",
    "< |eot_id|>",
    "<|EOT_ID|>",
    "<|eot_id|>>",
    "<<|eot_id|>",
    "<|eot\u200bid|>",
    "\uff1c|eot_id|\uff1e",
    "<\u2223eot_id\u2223>",
    "<|reserved_special_token_250|>",
    "<|reserved_special_token_-1|>",
    "<|begin_of_text|",
    "<|python_tag",
    "python_tag|>",
    "<|",
    "|>",
    "<||>",
    "<|start_header_id|>system<|end_header_id|>",
    "<|eom_id|>\n\n",
    "\\<|eot_id|\\>",
    "&lt;|eot_id|&gt;",
    "<|im_start|>",
    "[INST]",
    "</s>",
    "<s>",
    "[SEP]",
    "[CLS]",
    "[MASK]",
    "<function=send_email>",
    "</function>",
    '{"name": "send_email", "parameters": {}}',
    "\x00",
    "\r\n",
    "\u2028",
    "\ufeff",
]


def _specials(families: tuple[str, ...] = ("llama3",)) -> st.SearchStrategy[str]:
    return st.sampled_from([name for family in families for name in special_token_names(family)])


def hostile_text(max_pieces: int = 12, families: tuple[str, ...] = ("llama3",)) -> st.SearchStrategy[str]:
    """Text that mixes real special-token strings (the families'), near-misses, fragments and arbitrary Unicode (no
    surrogates)."""
    piece = st.one_of(
        _specials(families),
        st.sampled_from(_NEAR_MISSES),
        st.text(max_size=12),
        st.text(alphabet=st.sampled_from(list("<|>_ abcdefghijklmnopqrstuvwxyz0123456789\n")), max_size=16),
    )
    return st.lists(piece, max_size=max_pieces).map("".join)


def text_with_surrogates() -> st.SearchStrategy[str]:
    """Strings Python can hold but UTF-8 cannot: what argv with invalid bytes or JSON `\\udcff` escapes give."""
    lone = st.sampled_from(["\udcff", "\ud800", "\udfff", "\udc80"])
    rest = st.lists(st.one_of(lone, _specials(), st.text(max_size=6)), max_size=6).map("".join)
    return st.tuples(rest, lone, rest).map("".join)
