"""Replays completions from a JSONL file: one `{"completion": "..."}` per line, one line per call, whatever the prompt.

For policy regression tests and demos without weights. Special-token strings in the file are control tokens: the file
stands in for the model's own output, so each is yielded as a `SpecialToken` (a token generated as its id).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.backends.base import BackendDefaults, BackendStats, GenerationParams, refuse_images
from model.backends.errors import BackendError
from model.completion import SpecialToken
from model.constraint import OutputConstraint, matches

# Special tokens stay whole; plain text is cut into small pieces so consumers see a real stream.
_SPECIAL = r"<\|[a-z0-9_]+\|>"
_SPECIAL_ONLY = re.compile(_SPECIAL)
_DELTA_PATTERN = re.compile(rf"{_SPECIAL}|\s*(?:(?!{_SPECIAL})\S){{1,4}}|\s+")


@dataclass(frozen=True)
class ScriptedLine:
    line_number: int
    completion: str


def json_lines(path: Path, what: str) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) for each non-blank line; unreadable files and bad JSON name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BackendError(f"{path}: cannot read {what}: {exc}") from exc
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            yield number, json.loads(raw)
        except json.JSONDecodeError as exc:
            raise BackendError(f"{path}:{number}: invalid JSON: {exc.msg}") from exc


def read_script(path: Path) -> list[ScriptedLine]:
    """Parse the file; any malformed line is an error naming the file and the line."""
    lines: list[ScriptedLine] = []
    for number, record in json_lines(path, "scripted model file"):
        if not isinstance(record, dict) or set(record) != {"completion"}:
            raise BackendError(f'{path}:{number}: expected an object with exactly one key, {{"completion": "..."}}')
        if not isinstance(record["completion"], str):
            raise BackendError(f"{path}:{number}: completion must be a string")
        lines.append(ScriptedLine(number, record["completion"]))
    return lines


def split_deltas(text: str) -> list[str]:
    """Cut a completion into small deltas that concatenate back to it exactly; special-token strings are
    `SpecialToken` deltas."""
    pieces = _DELTA_PATTERN.findall(text)
    if "".join(pieces) != text:  # cannot happen with this pattern; never lose a character if it ever does
        return [text]
    return [SpecialToken(piece) if _SPECIAL_ONLY.fullmatch(piece) else piece for piece in pieces]


def check_constraint(completion: str, params: GenerationParams, where: str) -> None:
    """A scripted model cannot mask tokens: under a constraint, its completion (up to its stop token) must already be
    one of the constraint's texts, else the call fails instead of answering outside it."""
    constraint = params.constraint
    if constraint is None:
        return
    text = re.split(_SPECIAL, completion, maxsplit=1)[0]
    if not matches(constraint, text):
        raise BackendError(f"{where}: the scripted completion {text[:80]!r} does not satisfy the request's "
                           f"{constraint.what}")


class ScriptedBackend(BackendDefaults):
    """Each `stream` call yields the next completion of the file in several deltas. No speculation: a discarded
    generation would use up a line of the script. `accepts_images` stands in for a model that takes images (tests of
    the image paths above the model); it reads no pixels. False: a call with images is refused."""

    def __init__(self, path: Path, *, context_window: int = 131_072, accepts_images: bool = False) -> None:
        self.path = Path(path)
        self.accepts_images = accepts_images
        self.name = f"scripted:{self.path}"
        self.context_window = context_window
        self.stats = BackendStats()
        self._lines = read_script(self.path)
        self._next = 0

    @property
    def remaining(self) -> int:
        return len(self._lines) - self._next

    async def stream(self, prompt_ids: list[int], params: GenerationParams) -> AsyncIterator[str]:
        if self._next >= len(self._lines):
            raise BackendError(
                f"{self.path}: scripted model ran out of completions after {len(self._lines)} call(s); "
                "add a line for every model call the scenario makes"
            )
        if not self.accepts_images:
            refuse_images(self.name, params)
        line = self._lines[self._next]
        self._next += 1
        check_constraint(line.completion, params, f"{self.path}:{line.line_number}")
        self.stats.record(prompt=len(prompt_ids), cached=0, generated=0)
        for delta in split_deltas(line.completion):
            yield delta

    def constraint_problem(self, constraint: OutputConstraint) -> str | None:
        return None  # each completion is checked against it (`check_constraint`)
