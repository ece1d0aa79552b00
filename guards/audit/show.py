"""Audit records as a readable table (`assistant audit show`): pure functions, one summary line per record."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

_SUMMARY_CHARS = 110
_SKIP = frozenset({"seq", "ts", "kind", "thread_id", "prev_hash", "hash", "text"})
# Fields a reader looks for first, in this order; the others follow by name.
_FIRST = {name: rank for rank, name in enumerate(("tool", "stage", "decision", "interface", "ok", "limits_hit",
                                                  "reason", "where", "error", "policy_hash"))}


def summarize(line: bytes, number: int) -> dict[str, Any]:
    """One row (seq, time, kind, thread, summary) for a log line; lines that are not records still get a row."""
    try:
        record = json.loads(line)
    except ValueError:
        record = None
    if not isinstance(record, dict):
        return {"seq": "?", "time": "", "kind": "(unparseable)", "thread": None,
                "summary": f"line {number} is not an audit record"}
    kind = record.get("kind")
    thread = record.get("thread_id")
    return {
        "seq": str(record.get("seq", "?")),
        "time": _time(record.get("ts")),
        "kind": kind if isinstance(kind, str) else "?",
        "thread": thread if isinstance(thread, str) else None,
        "summary": _clip(_summary(record)),
    }


def _time(ts: object) -> str:
    # `2026-12-01T00:10:00.123456+00:00` -> `2026-12-01 00:10:00` (the records are UTC)
    return ts[:19].replace("T", " ") if isinstance(ts, str) else ""


def _summary(record: Mapping[str, Any]) -> str:
    kind = record.get("kind")
    parts: list[str] = []
    if kind == "verdict" and isinstance(record.get("verdict"), Mapping):
        verdict = record["verdict"]
        parts.append(f"{verdict.get('stage')} {verdict.get('guard')}: {verdict.get('decision')}")
        if isinstance(verdict.get("score"), int | float) and not isinstance(verdict["score"], bool):
            parts.append(f"score {verdict['score']:.3g}")
        if verdict.get("categories"):
            parts.append(",".join(map(str, verdict["categories"])))
        if verdict.get("error"):
            parts.append(f"error: {verdict['error']}")
        elif verdict.get("reasons"):
            parts.append(str(verdict["reasons"][0]))
    else:
        rest = {k: v for k, v in record.items() if k not in _SKIP}
        rest = dict(sorted(rest.items(), key=lambda item: _FIRST.get(item[0], len(_FIRST))))  # stable: by name next
        parts.append(" ".join(f"{k}={_value(v)}" for k, v in rest.items()))
    text = record.get("text")
    if isinstance(text, Mapping):
        parts.append(_text(text))
    return "; ".join(p for p in parts if p)


def _value(value: object) -> str:
    if isinstance(value, str):
        return value if len(value) <= 40 else value[:37] + "..."
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _text(text: Mapping[str, Any]) -> str:
    storage = text.get("storage")
    if storage == "full":
        return f"text {json.dumps(str(text.get('text', '')), ensure_ascii=False)}"
    if storage == "hash":
        return f"text sha256 {str(text.get('sha256', ''))[:12]} ({text.get('chars')} chars)"
    return f"text redacted ({text.get('chars')} chars)"


def _clip(text: str) -> str:
    text = " ".join(text.split())  # one line per record, whatever the texts hold
    return text if len(text) <= _SUMMARY_CHARS else text[: _SUMMARY_CHARS - 3] + "..."


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    columns = ("seq", "time", "kind", "thread", "summary")
    cells = [[str(row.get(c) if row.get(c) is not None else "-") for c in columns] for row in rows]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]
    widths[-1] = len(columns[-1])  # the last column is not padded
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in cells]
    return "\n".join(lines)
