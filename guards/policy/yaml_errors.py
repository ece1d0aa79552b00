"""Plain words for a YAML syntax error in a policy: the line and column of the mistake and what it probably is.

PyYAML reports where it noticed the problem, which is often the line after the mistake (a key without its colon
is only noticed at the next line) and in its own words ("mapping values are not allowed here"). This looks at the
text around that place and names the likely mistake: a tab, a missing colon, or indentation that does not line up.
Pure function of the text and the error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_KEY = re.compile(r"""^\s*(?:-\s+)?(?:"[^"]*"|'[^']*'|[^\s#'"][^#]*?)\s*:(?:\s|$)""")


@dataclass(frozen=True)
class YamlProblem:
    line: int  # 1-based
    column: int  # 1-based
    message: str


def describe(text: str, exc: Any) -> YamlProblem | None:
    """The mistake behind `exc` (a yaml.MarkedYAMLError), or None when it carries no position."""
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return None
    lines = text.splitlines()
    raw = " ".join(part for part in (exc.context, exc.problem) if part)
    line = min(mark.line, max(len(lines) - 1, 0))
    found = (
        _tab(lines, line)
        or _simple_key(lines, exc, raw)
        or _missing_colon(lines, line, raw)
        or _indentation(lines, line, raw)
        or _unclosed(exc, raw)
    )
    if found is not None:
        return YamlProblem(found.line, found.column, f"{found.message} (YAML said: {raw})")
    return YamlProblem(mark.line + 1, mark.column + 1, f"invalid YAML: {raw}")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _content(lines: list[str], index: int) -> bool:
    stripped = lines[index].strip()
    return bool(stripped) and not stripped.startswith("#")


def _tab(lines: list[str], line: int) -> YamlProblem | None:
    for index in (line, line - 1):
        if 0 <= index < len(lines):
            text = lines[index]
            leading = text[: len(text) - len(text.lstrip(" \t"))]
            if "\t" in leading:
                return YamlProblem(index + 1, leading.index("\t") + 1,
                                   "a tab in the indentation: YAML indents with spaces only")
    return None


def _previous(lines: list[str], line: int) -> int | None:
    index = line - 1
    while index >= 0 and not _content(lines, index):
        index -= 1
    return index if index >= 0 else None


def _simple_key(lines: list[str], exc: Any, raw: str) -> YamlProblem | None:
    """`could not find expected ':'`: the key that lost its colon starts where the context mark points."""
    mark = exc.context_mark
    if "could not find expected ':'" not in raw or mark is None or not 0 <= mark.line < len(lines):
        return None
    text = lines[mark.line].rstrip()
    return YamlProblem(mark.line + 1, len(text) + 1, _colon_message(text.strip()))


def _colon_message(body: str) -> str:
    return f"missing colon: `{body}` needs one (`key: value`, or `key:` before an indented block)"


def _unclosed(exc: Any, raw: str) -> YamlProblem | None:
    mark = exc.context_mark
    for opener, closer in (("{", "}"), ("[", "]")):
        if f"expected ',' or '{closer}'" in raw and mark is not None:
            return YamlProblem(mark.line + 1, mark.column + 1, f"unclosed `{opener}`: it needs its `{closer}`")
    return None


def _missing_colon(lines: list[str], line: int, raw: str) -> YamlProblem | None:
    if "mapping values are not allowed" not in raw:
        return None
    before = _previous(lines, line)
    for index in (before,):
        if index is None or not _content(lines, index):
            continue
        text = lines[index].rstrip()
        body = text.strip()
        if _KEY.match(text) or body.startswith(("-", "[", "{", "'", '"')):
            continue
        if index == before and _indent(lines[line]) <= _indent(text):
            continue  # a value line continuing a scalar, not a key that lost its colon
        return YamlProblem(index + 1, len(text) + 1, _colon_message(body))
    return None


def _indentation(lines: list[str], line: int, raw: str) -> YamlProblem | None:
    signals = ("mapping values are not allowed", "expected <block end>", "did not find expected key",
               "did not find expected '-'", "could not find expected ':'")
    if not any(signal in raw for signal in signals) or not (0 <= line < len(lines)) or not _content(lines, line):
        return None
    here = _indent(lines[line])
    before = _previous(lines, line)
    if before is None:
        return None
    # The nearest earlier key at or above this depth: the sibling (or parent) this line should line up with.
    index: int | None = before
    while index is not None and _indent(lines[index]) > here:
        index = _previous(lines, index)
    sibling = index if index is not None else before
    expected = _indent(lines[sibling])
    if "mapping values" in raw and here > _indent(lines[before]) and not lines[before].rstrip().endswith(":"):
        expected = _indent(lines[before])
        sibling = before
    if here == expected:
        return None
    if sibling != before and _indent(lines[before]) != expected:
        where = f"line {before + 1} above it {_indent(lines[before])}, line {sibling + 1} {expected}"
    else:
        where = f"line {sibling + 1} next to it {expected}"
    return YamlProblem(
        line + 1, here + 1,
        f"indentation: this line is indented {here} spaces, but {where}; keys of one mapping must line up (and a "
        "nested block goes under a `key:` that ends its line)",
    )
