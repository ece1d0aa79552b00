"""Turning failures into what the user reads: what went wrong and how to fix it, never a traceback."""

from __future__ import annotations

import logging
from pathlib import Path

from assistant.home import data_dir

_FIXES = {
    "model_backend": (
        "The model backend failed. If the policy uses `backend: openai`, check that the server at `base_url` is "
        "running and reachable; for local models, check the model path or hub id in `models.main` "
        "(`assistant policy show`). Then send the message again."
    ),
    "guard": "A safety check failed, so the message was blocked (the policy fails closed). See the audit log.",
    "bad_input": "The input was rejected as invalid; rephrase it and send it again.",
    "tool": "A tool failed; the model was told. Check the tool's settings under `tools:` in the policy.",
    "images": (
        "Nothing was sent. Send the message without images, or use a policy whose user_input guards see images "
        "(Llama Guard 4) and whose main model takes them (docs/TUI.md, Attach)."
    ),
    "internal": "This is a bug in the assistant. The details are in the log file; please report it.",
}


def describe_error(kind: str, message: str) -> str:
    fix = _FIXES.get(kind, _FIXES["internal"])
    return f"Error ({kind}): {message}\n{fix}"


def log_path() -> Path:

    return data_dir() / "chat.log"


def log_exception(where: str, exc: BaseException) -> Path:
    """Write the traceback to the chat log (not the screen) and return the log's path."""
    path = log_path()
    logger = logging.getLogger("assistant.tui")
    if not any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path for h in logger.handlers):
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.error("%s failed", where, exc_info=exc)
    return path


def unexpected(where: str, exc: BaseException) -> str:
    path = log_exception(where, exc)
    return f"Error ({type(exc).__name__}): {exc}\nThis is a bug in the assistant; the traceback is in {path}."
