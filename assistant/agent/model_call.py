"""The error a model call ends with when the backend fails in a way it did not report itself: it stops producing
text (past `models.main.timeout_s`), yields something that is not text, or cancels its own work. The turn then ends
as a `model_backend` error instead of hanging or escaping as an internal error (see answer_stream / speculation)."""

from __future__ import annotations


class ModelCallError(RuntimeError):
    """The model call failed in a way the backend did not report itself."""
