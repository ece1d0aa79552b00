"""Thread-safe access to transformers' classes.

transformers resolves its public names lazily (`_LazyModule.__getattr__`), and that resolution is not safe when two
threads do it at once: loading Llama Guard and Prompt Guard side by side raised `ImportError: cannot import name
'AutoModelForCausalLM'` in one of them. Every loader that may run in a worker thread takes its classes from here.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

_LOCK = threading.Lock()


def transformers_names(*names: str) -> tuple[Any, ...]:
    """The named attributes of `transformers`, resolved under one process-wide lock."""
    with _LOCK:
        import transformers

        return tuple(getattr(transformers, name) for name in names)

@contextlib.contextmanager
def quiet_hf_progress() -> Iterator[None]:
    """Silence transformers' own progress bars and warnings (they would write over the TUI and into `assistant run
    --json`). Not restored afterwards: guard models load on other threads at the same time, and re-enabling the
    global switch would let their bars through; our own LoadEvents report progress instead."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    yield
