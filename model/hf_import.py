"""Thread-safe access to transformers' classes.

transformers resolves its public names lazily (`_LazyModule.__getattr__`), and that resolution is not safe when two
threads do it at once: loading Llama Guard and Prompt Guard side by side raised `ImportError: cannot import name
'AutoModelForCausalLM'` in one of them. Every loader that may run in a worker thread takes its classes from here.
"""

from __future__ import annotations

import threading
from typing import Any

_LOCK = threading.Lock()


def transformers_names(*names: str) -> tuple[Any, ...]:
    """The named attributes of `transformers`, resolved under one process-wide lock."""
    with _LOCK:
        import transformers

        return tuple(getattr(transformers, name) for name in names)
