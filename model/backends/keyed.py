"""A scripted model that answers by what it is asked, not by call order: safe for concurrent requests.

`scripted-keyed:FILE.jsonl`: one `{"match": "REGEX", "completion": "..."}` per line (optional `"delay_s": 0.05`: a
pause before each delta, to hold a turn open in tests of timeouts, disconnects and crashes). Each call decodes the
prompt (with the tokenizer of the family whose `<|begin_of_text|>` id starts it: Llama 3's or Llama 4's), takes the
text of its last user or tool (`ipython`) message, and answers with the completion of the first line
whose regex matches it (`re.search`); `{0}`, `{1}`, ... in the completion are the match's groups (`{{`/`}}` for braces).
No line matching is a BackendError. The backend keeps no state between calls, so any number of concurrent
requests each get their own deterministic answer - what load tests of a server need.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from model.backends.base import BackendDefaults, BackendStats, GenerationParams, refuse_images
from model.backends.errors import BackendError
from model.backends.scripted import check_constraint, json_lines, split_deltas
from model.constraint import OutputConstraint
from model.tokenizer import get_tokenizer

_LAST_MESSAGE = re.compile(r"<\|start_header_id\|>(?:user|ipython)<\|end_header_id\|>\n\n(.*?)<\|eo[tm]_id\|>", re.S)
_LAST_MESSAGE4 = re.compile(r"<\|header_start\|>(?:user|ipython)<\|header_end\|>\n\n(.*?)<\|eo[tm]\|>", re.S)
FAMILIES = ("llama3", "llama4")


@dataclass(frozen=True)
class KeyedLine:
    line_number: int
    pattern: re.Pattern[str]
    completion: str
    delay_s: float = 0.0


def read_keyed_script(path: Path) -> list[KeyedLine]:
    """Parse the file; any malformed line is an error naming the file and the line."""
    lines: list[KeyedLine] = []
    for number, record in json_lines(path, "keyed scripted model file"):
        allowed = {"match", "completion", "delay_s"}
        if not isinstance(record, dict) or not {"match", "completion"} <= set(record) <= allowed:
            raise BackendError(f'{path}:{number}: expected {{"match": "REGEX", "completion": "...", "delay_s": 0}}')
        delay = record.get("delay_s", 0)
        if not isinstance(delay, (int, float)) or isinstance(delay, bool) or delay < 0:
            raise BackendError(f"{path}:{number}: delay_s must be a number >= 0")
        if not isinstance(record["match"], str) or not isinstance(record["completion"], str):
            raise BackendError(f"{path}:{number}: match and completion must be strings")
        try:
            pattern = re.compile(record["match"], re.S)
        except re.error as exc:
            raise BackendError(f"{path}:{number}: invalid regex: {exc}") from exc
        lines.append(KeyedLine(number, pattern, record["completion"], float(delay)))
    if not lines:
        raise BackendError(f"{path}: the keyed scripted model file has no lines")
    return lines


def last_message(prompt: str, family: str = "llama3") -> str:
    """The text of the prompt's last user or tool message ("" when there is none)."""
    found = (_LAST_MESSAGE4 if family == "llama4" else _LAST_MESSAGE).findall(prompt)
    return found[-1] if found else ""


def prompt_family(prompt_ids: list[int]) -> str:
    """The family whose `<|begin_of_text|>` id starts the prompt (Llama 3's when none does)."""
    first = prompt_ids[0] if prompt_ids else None
    return next((family for family in FAMILIES if get_tokenizer(family=family).bos_id == first), "llama3")


def answer_for(lines: list[KeyedLine], text: str, path: Path) -> tuple[str, float]:
    for line in lines:
        match = line.pattern.search(text)
        if match is not None:
            try:
                return line.completion.format(match.group(0), *match.groups(default="")), line.delay_s
            except (IndexError, KeyError, ValueError) as exc:
                raise BackendError(f"{path}:{line.line_number}: bad placeholder in completion: {exc}") from exc
    raise BackendError(f"{path}: no line matches the last message {text[:80]!r}")


class KeyedScriptedBackend(BackendDefaults):
    """Stateless: every `stream` call answers from the prompt's last user/tool message."""

    speculation_ok = True  # a discarded generation consumes nothing (unlike `scripted:`, whose lines it would use)

    def __init__(self, path: Path, *, context_window: int = 131_072, accepts_images: bool = False) -> None:
        self.path = Path(path)
        self.accepts_images = accepts_images  # as ScriptedBackend's: stands in for a model that takes images
        self.name = f"scripted-keyed:{self.path}"
        self.context_window = context_window
        self.stats = BackendStats()
        self._lines = read_keyed_script(self.path)

    async def stream(self, prompt_ids: list[int], params: GenerationParams) -> AsyncIterator[str]:
        if not self.accepts_images:
            refuse_images(self.name, params)
        family = prompt_family(prompt_ids)
        prompt = get_tokenizer(family=family).decode(prompt_ids)
        completion, delay = answer_for(self._lines, last_message(prompt, family), self.path)
        check_constraint(completion, params, str(self.path))
        self.stats.record(prompt=len(prompt_ids), cached=0, generated=0)
        for delta in split_deltas(completion):
            if delay:
                await asyncio.sleep(delay)
            yield delta

    def constraint_problem(self, constraint: OutputConstraint) -> str | None:
        return None  # each completion is checked against it (`check_constraint`)
