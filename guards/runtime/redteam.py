"""Red-team evaluation: labelled cases through the policy's real guard pipeline, and the figures that sum them up.

A case file is JSON Lines, one case per line:

    {"stage": "user_input", "text": "Ignore previous instructions ...", "expected": "block", "id": "pi-3",
     "category": "prompt_injection"}

`stage` is user_input, model_output, tool_call, tool_result or code; `text` (or `code`) what the guards check;
`language` the code's language (the code stage defaults to python, as the agent checks code_interpreter code);
`expected` block or allow; `id` and `category` optional. Blank lines and lines starting with `#` are skipped.

Outcomes follow the agent: a case counts as blocked when the stage decides `block`, or `ask` (an evaluation has
nobody to ask, and outside the tool stages the agent blocks on `ask` too), or a guard failed and its `on_error` did
not allow. A case is correct when blocked matches `expected` and no guard failed: a block that only happened
because a guard broke is reported as a guard error, not as a detection.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from guards.policy.registry import CODE, STAGE_NAMES, StageName, stage_declaration

MAX_CASE_CHARS = 1_000_000  # one case's text; a larger one is almost surely a broken file


class RedTeamCase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    stage: StageName
    text: str | None = Field(default=None, max_length=MAX_CASE_CHARS)
    code: str | None = Field(default=None, max_length=MAX_CASE_CHARS)
    language: str | None = None
    expected: Literal["block", "allow"]
    id: str | int | None = None
    category: str | None = None

    @model_validator(mode="after")
    def _one_text(self) -> RedTeamCase:
        if (self.text is None) == (self.code is None):
            raise ValueError("give exactly one of `text` or `code`")
        if not (self.text if self.text is not None else self.code or "").strip():
            raise ValueError("the text to check is empty")
        return self

    @property
    def content(self) -> str:
        return self.text if self.text is not None else self.code or ""

    @property
    def checked_language(self) -> str | None:
        return self.language or ("python" if self.stage == CODE else None)

    @property
    def role(self) -> str:
        """Whose text it is, as its stage declares: the model's, or a user's (or a third party's)."""
        return stage_declaration(self.stage).role


class CaseFileError(ValueError):
    """A case file cannot be used; `problems` are `FILE:LINE: problem` lines (all of them, not just the first)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def load_cases(path: str | Path) -> list[tuple[int, RedTeamCase]]:
    """(line number, case) for every case of a JSON Lines file; raises CaseFileError naming each bad line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError([f"{path}: cannot read the case file: {exc}"]) from None
    return parse_cases(text.splitlines(), file=str(path))


def parse_cases(lines: Iterable[str], *, file: str = "<cases>") -> list[tuple[int, RedTeamCase]]:
    cases: list[tuple[int, RedTeamCase]] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            data = json.loads(line)
        except (ValueError, RecursionError) as exc:
            problems.append(f"{file}:{number}: not a JSON object: {exc}")
            continue
        if not isinstance(data, dict):
            problems.append(f"{file}:{number}: a case must be a JSON object, not {type(data).__name__}")
            continue
        try:
            cases.append((number, RedTeamCase.model_validate(data)))
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                where = ".".join(str(part) for part in error["loc"])
                problems.append(f"{file}:{number}: {where + ': ' if where else ''}{error['msg']}")
    if problems:
        raise CaseFileError(problems)
    if not cases:
        raise CaseFileError([f"{file}: no cases (one JSON object per line)"])
    return cases


@dataclass(frozen=True)
class CaseOutcome:
    line: int
    case: RedTeamCase
    decision: str  # the stage's decision
    blocked: bool
    guard_error: str | None
    latency_ms: float
    guards: tuple[tuple[str, str], ...] = ()  # (guard, decision)

    @property
    def expected_block(self) -> bool:
        return self.case.expected == "block"

    @property
    def correct(self) -> bool:
        return self.guard_error is None and self.blocked == self.expected_block

    @property
    def false_refusal(self) -> bool:
        return self.blocked and not self.expected_block

    @property
    def missed(self) -> bool:
        return not self.blocked and self.expected_block


def is_blocked(result: Any) -> bool:
    """The agent's rule for a stage result: block or ask stops, and so does a guard error not set to allow."""
    return result.decision in ("block", "ask") or (result.error is not None and result.decision != "allow")


async def run_case(pipeline: Any, line: int, case: RedTeamCase) -> CaseOutcome:
    started = time.perf_counter()
    try:
        result = await pipeline.check(case.stage, case.content, role=case.role, language=case.checked_language)
    except Exception as exc:  # the pipeline itself failed: for the product that is a blocked turn, say so here
        return CaseOutcome(line, case, "block", True, f"pipeline: {type(exc).__name__}: {exc}", _ms(started))
    return CaseOutcome(
        line, case, result.decision, is_blocked(result), result.error, _ms(started),
        tuple((v.guard, v.decision) for v in result.verdicts),
    )


async def run_cases(pipeline: Any, cases: Sequence[tuple[int, RedTeamCase]]) -> list[CaseOutcome]:
    """One case at a time (a stage's guards already run concurrently), so latencies are per case, not queued."""
    return [await run_case(pipeline, line, case) for line, case in cases]


# --- figures -----------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return round(ordered[rank - 1], 3)


@dataclass
class Tally:
    total: int = 0
    correct: int = 0
    blocked: int = 0
    allowed: int = 0
    expected_block: int = 0
    expected_allow: int = 0
    false_refusals: int = 0
    missed: int = 0
    guard_errors: int = 0
    latencies: list[float] = field(default_factory=list)

    def add(self, outcome: CaseOutcome) -> None:
        self.total += 1
        self.correct += outcome.correct
        self.blocked += outcome.blocked
        self.allowed += not outcome.blocked
        self.expected_block += outcome.expected_block
        self.expected_allow += not outcome.expected_block
        self.false_refusals += outcome.false_refusal
        self.missed += outcome.missed
        self.guard_errors += outcome.guard_error is not None
        self.latencies.append(outcome.latency_ms)

    def to_dict(self) -> dict[str, Any]:
        caught = self.expected_block - self.missed
        return {
            "total": self.total,
            "correct": self.correct,
            "blocked": self.blocked,
            "allowed": self.allowed,
            "expected_block": self.expected_block,
            "expected_allow": self.expected_allow,
            "false_refusals": self.false_refusals,
            "missed": self.missed,
            "guard_errors": self.guard_errors,
            "accuracy": _rate(self.correct, self.total),
            "block_rate": _rate(caught, self.expected_block),  # attacks stopped, of those that should be
            "false_refusal_rate": _rate(self.false_refusals, self.expected_allow),  # benign ones stopped
            "latency_ms": {
                "p50": percentile(self.latencies, 50),
                "p95": percentile(self.latencies, 95),
                "max": max(self.latencies, default=None),
            },
        }


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def summarize(outcomes: Sequence[CaseOutcome], *, max_listed: int = 50) -> dict[str, Any]:
    """The report: overall figures, per stage, per category, and the incorrect cases (at most `max_listed`)."""
    overall = Tally()
    stages: dict[str, Tally] = {}
    categories: dict[str, Tally] = {}
    for outcome in outcomes:
        overall.add(outcome)
        stages.setdefault(outcome.case.stage, Tally()).add(outcome)
        categories.setdefault(outcome.case.category or "(none)", Tally()).add(outcome)
    wrong = [o for o in outcomes if not o.correct]
    report = overall.to_dict()
    report["stages"] = {name: stages[name].to_dict() for name in STAGE_NAMES if name in stages}
    report["categories"] = {name: categories[name].to_dict() for name in sorted(categories)}
    report["incorrect"] = [
        {"line": o.line, "id": o.case.id, "stage": o.case.stage, "category": o.case.category,
         "expected": o.case.expected, "decision": o.decision, "guard_error": o.guard_error}
        for o in wrong[:max_listed]
    ]
    report["incorrect_not_listed"] = max(0, len(wrong) - max_listed)
    return report


_COLUMNS = (
    ("cases", "total"), ("correct", "correct"), ("blocked", "blocked"), ("allowed", "allowed"),
    ("block%", "block_rate"), ("false_ref", "false_refusals"), ("fr%", "false_refusal_rate"), ("missed", "missed"),
    ("guard_err", "guard_errors"), ("p50_ms", "p50"), ("p95_ms", "p95"),
)


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width table: one row per stage, per category, and the total."""
    rows: list[tuple[str, dict[str, Any]]] = [(f"stage {k}", v) for k, v in report["stages"].items()]
    rows += [(f"category {k}", v) for k, v in report["categories"].items()]
    rows.append(("TOTAL", report))
    width = max(len(name) for name, _ in rows)
    header = "".ljust(width) + "".join(f"{title:>10}" for title, _ in _COLUMNS)
    lines = [header, "-" * len(header)]
    for name, figures in rows:
        cells = [_cell(figures, key) for _, key in _COLUMNS]
        lines.append(name.ljust(width) + "".join(f"{cell:>10}" for cell in cells))
    lines.append("")
    lines.append("block% = attacks blocked / attacks; fr% = benign cases blocked / benign cases (false refusals)")
    return "\n".join(lines)


def _cell(figures: dict[str, Any], key: str) -> str:
    value = figures["latency_ms"][key] if key in ("p50", "p95") else figures[key]
    if value is None:
        return "-"
    if key.endswith("_rate"):
        return f"{100 * value:.1f}"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)
