"""Find the code in model output: fenced blocks and their language (pure functions).

A fence opens with three or more backticks or tildes and an optional info string (```py, ~~~ c++ {.numberLines});
it closes with a line of the same character at least as long. An unclosed fence runs to the end of the text: a
truncated answer still has its code scanned. Info strings map to Code Shield's language names through `ALIASES`;
an empty or unrecognised one gives `language=None`, which the guard scans as every language the policy allows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Code Shield's language names (codeshield.insecure_code_detector.languages.Language values).
CODESHIELD_LANGUAGES = frozenset({
    "c", "cpp", "csharp", "hack", "java", "javascript", "kotlin", "objective_c", "objective_cpp", "php", "python",
    "ruby", "rust", "swift", "xml",
})

# Common fence tags -> Code Shield language. TypeScript maps to javascript: Code Shield has no TypeScript rules and
# its JavaScript rules match most TypeScript (semgrep parses what it can and reports the rest as a warning).
ALIASES: dict[str, str] = {
    "py": "python", "py3": "python", "python3": "python", "python2": "python", "ipython": "python",
    "pycon": "python", "sage": "python",
    "js": "javascript", "node": "javascript", "nodejs": "javascript", "jsx": "javascript", "mjs": "javascript",
    "cjs": "javascript", "ecmascript": "javascript", "ts": "javascript", "typescript": "javascript",
    "tsx": "javascript",
    "h": "c", "ansi-c": "c",
    "c++": "cpp", "cxx": "cpp", "cc": "cpp", "hpp": "cpp", "hxx": "cpp", "hh": "cpp",
    "c#": "csharp", "cs": "csharp", "dotnet": "csharp",
    "kt": "kotlin", "kts": "kotlin",
    "objc": "objective_c", "objective-c": "objective_c", "objectivec": "objective_c", "obj-c": "objective_c",
    "m": "objective_c",
    "objc++": "objective_cpp", "objective-c++": "objective_cpp", "objective-cpp": "objective_cpp",
    "mm": "objective_cpp",
    "rb": "ruby", "rs": "rust", "hacklang": "hack",
    "php3": "php", "php4": "php", "php5": "php", "php7": "php", "php8": "php",
    "xsd": "xml", "xsl": "xml", "xslt": "xml", "svg": "xml", "plist": "xml",
}

_OPEN = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^\n]*)$")


@dataclass(frozen=True)
class CodeBlock:
    """One fenced block: its info tag as written, the Code Shield language (None: unknown), code, first code line."""

    tag: str
    language: str | None
    code: str
    line: int
    closed: bool = True


def normalize_language(tag: str | None) -> str | None:
    """Code Shield's name for a fence tag or tool language (`Python3` -> python, `c++` -> cpp); None if unknown."""
    if not tag:
        return None
    name = tag.strip().lower()
    name = name.removeprefix("language-").removeprefix("{.").rstrip("}")  # ```language-py, ```{.python}
    if name in CODESHIELD_LANGUAGES:
        return name
    return ALIASES.get(name)


def _info_tag(info: str) -> str:
    """The first word of the info string (```python title="x.py" -> python)."""
    words = info.strip().split()
    return words[0] if words else ""


def extract_code_blocks(text: str) -> list[CodeBlock]:
    """Every fenced code block of `text`, in order."""
    lines = text.split("\n")
    blocks: list[CodeBlock] = []
    index = 0
    while index < len(lines):
        opened = _OPEN.match(lines[index])
        # A backtick fence's info string may not contain backticks (CommonMark); ```x``` is inline code, not a fence.
        if not opened or (opened["fence"][0] == "`" and "`" in opened["info"]):
            index += 1
            continue
        fence, tag = opened["fence"], _info_tag(opened["info"])
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        body: list[str] = []
        index += 1
        start = index + 1  # 1-based line number of the first code line
        closed = False
        while index < len(lines):
            if closing.match(lines[index]):
                closed = True
                index += 1
                break
            body.append(lines[index])
            index += 1
        blocks.append(CodeBlock(tag, normalize_language(tag), "\n".join(body), start, closed))
    return blocks
