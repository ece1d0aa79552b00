"""Logging for the command line and the server: the library logs through the standard `logging` module (one logger
per package - `assistant`, `tools`, `guards`, `model` - and `__name__` loggers below them), prints nothing unless an
application turns it on here, and internal errors are logged with their traceback.

    assistant run -v ...            # INFO and above on stderr
    assistant run -vv ...           # DEBUG
    assistant run --log-level warning ...
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

PACKAGES = ("assistant", "tools", "guards", "model")
LEVELS = ("debug", "info", "warning", "error")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_installed: list[tuple[logging.Logger, logging.Handler]] = []


def level_for(verbose: int, log_level: str | None) -> int | None:
    """`--log-level` wins; else -v is INFO and -vv DEBUG; None: logging stays off."""
    if log_level is not None:
        return getattr(logging, log_level.upper())
    if verbose <= 0:
        return None
    return logging.INFO if verbose == 1 else logging.DEBUG


def configure_logging(level: int | str, *, stream: TextIO | None = None) -> None:
    """Send the project's log records at `level` and above to `stream` (stderr: stdout may carry `--json` events).
    Calling it again replaces the earlier setup."""
    for logger, handler in _installed:
        logger.removeHandler(handler)
    _installed.clear()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    for name in PACKAGES:
        logger = logging.getLogger(name)
        logger.setLevel(level if isinstance(level, int) else level.upper())
        logger.addHandler(handler)
        _installed.append((logger, handler))


def reset_logging() -> None:
    """Undo `configure_logging` (back to silent)."""
    for logger, handler in _installed:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    _installed.clear()
