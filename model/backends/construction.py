"""One process-wide lock around building transformers models.

transformers 5.x builds a model under patches that are process-wide, not per thread (its `meta` device context is
per thread): while `from_pretrained` constructs a model it replaces `PreTrainedModel.tie_weights` with a no-op and
switches torch's default dtype, and `no_init_weights` (the tiny guards' builders) replaces torch's init functions.
A model loaded in another thread meanwhile is built under them: a tied checkpoint (Llama Guard 3 1B, Llama 3.2)
ships no `lm_head.weight`, tying is a no-op, the head stays on `meta` and the first `.to(device)` raises
`NotImplementedError: Cannot copy out of meta tensor`; any checkpoint can get some parameters in the other model's
dtype. So every model built in this process (`from_pretrained` or a constructor) goes through this lock; tokenizers
and device moves stay outside it, in parallel.

Torch-free at import: the CLI's `--help` imports model/.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# Re-entrant: a constructor that loads another model in the same thread must not deadlock.
_LOCK = threading.RLock()


@contextmanager
def constructing() -> Iterator[None]:
    """Hold the construction lock while building a model directly (`ModelClass(config)`)."""
    with _LOCK:
        yield


def from_pretrained(model_class: Any, source: str, **kwargs: Any) -> Any:
    """`model_class.from_pretrained(source, **kwargs)` with no other model built in this process meanwhile."""
    with _LOCK:
        return model_class.from_pretrained(source, **kwargs)
