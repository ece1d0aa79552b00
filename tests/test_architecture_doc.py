"""docs/ARCHITECTURE.md names real things: every backticked repository path exists, and every backticked module
(`guards.runtime.pipeline`), attribute (`guards.runtime.gate.judge`) or `module:function` / `path.py:Class.method`
reference resolves in the source.

Names are resolved by reading the source (ast), not by importing it, so the check is fast and imports no torch:
a module is `pkg/mod.py` or `pkg/mod/__init__.py`; an attribute is a name the module binds at top level (a def, a
class, an assignment, an import); `Class.method` is a name bound in that class's body. The README must link the doc.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ARCHITECTURE.md"
PACKAGES = ("assistant", "guards", "tools", "model")
TOP = (*PACKAGES, "docs", "tests", "bench", "examples")

SPAN = re.compile(r"`([^`\n]+)`")
REPO_PATH = re.compile(rf"(?:{'|'.join(TOP)})/[\w./*-]*(?::[A-Za-z_][\w.]*)?")
DOTTED = re.compile(rf"(?:{'|'.join(PACKAGES)})(?:\.[A-Za-z_]\w*)+(?::[A-Za-z_][\w.]*)?")


def references(text: str) -> list[tuple[int, str]]:
    """(line, name) for every backticked span that is a repository path or a dotted project name. Other spans
    (`judge("user_text")`, `Assistant.stream`, a YAML key) are prose, not checked."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for span in SPAN.findall(line):
            if REPO_PATH.fullmatch(span) or DOTTED.fullmatch(span):
                found.append((number, span))
    return found


@cache
def bound_names(path: Path) -> dict[str, ast.AST | None]:
    """The names a module binds at top level; classes map to their node (to look up their members)."""
    names: dict[str, ast.AST | None] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        for name, value in _bindings(node):
            names[name] = value
    return names


def _bindings(node: ast.stmt) -> list[tuple[str, ast.AST | None]]:
    if isinstance(node, ast.ClassDef):
        return [(node.name, node)]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return [(node.name, None)]
    if isinstance(node, ast.Assign):
        return [(t.id, None) for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
        return [(node.target.id, None)]
    if isinstance(node, ast.Import | ast.ImportFrom):
        return [((alias.asname or alias.name).split(".")[0], None) for alias in node.names]
    if isinstance(node, ast.If | ast.Try):  # `if TYPE_CHECKING: ... else: ...`, `try: import x`
        inner = [*node.body, *node.orelse, *getattr(node, "finalbody", [])]
        for handler in getattr(node, "handlers", []):
            inner.extend(handler.body)
        return [binding for child in inner for binding in _bindings(child)]
    return []


def module_file(dotted: str) -> Path | None:
    base = ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def attribute_problem(path: Path, attribute: str) -> str | None:
    """None when `attribute` (`name` or `Class.member`) is bound in the module at `path`, else what is missing."""
    first, _, rest = attribute.partition(".")
    names = bound_names(path)
    if first not in names:
        return f"{path.relative_to(ROOT)} binds no {first!r}"
    if not rest:
        return None
    node = names[first]
    if not isinstance(node, ast.ClassDef):
        return f"{first!r} in {path.relative_to(ROOT)} is not a class, so it has no {rest!r}"
    members = {name for child in node.body for name, _ in _bindings(child)}
    if rest.split(".")[0] not in members:
        return f"class {first} in {path.relative_to(ROOT)} has no {rest!r}"
    return None


def problem(name: str) -> str | None:
    """None when the reference resolves; else why not."""
    target, _, attribute = name.partition(":")
    if "/" in target:
        matches = sorted(ROOT.glob(target.rstrip("/"))) if "*" in target else [ROOT / target.rstrip("/")]
        if not matches or not all(m.exists() for m in matches):
            return f"no such path {target}"
        if target.endswith("/") and not all(m.is_dir() for m in matches):
            return f"{target} is not a folder"
        if attribute:
            return attribute_problem(matches[0], attribute)
        return None
    parts = target.split(".")
    # the longest prefix that is a module; the rest (and anything after `:`) are attributes in it
    for cut in range(len(parts), 0, -1):
        path = module_file(".".join(parts[:cut]))
        if path is not None:
            rest = ".".join(parts[cut:])
            if attribute:
                if rest:
                    return f"{'.'.join(parts[:cut])} is a module, but {rest!r} is written before ':'"
                return attribute_problem(path, attribute)
            return attribute_problem(path, rest) if rest else None
    return f"no module {parts[0]}... named {target}"


def test_every_name_in_the_architecture_doc_exists() -> None:
    found = references(DOC.read_text(encoding="utf-8"))
    assert len(found) >= 40, "the doc names fewer modules than expected: did the extraction break?"
    problems = [f"docs/ARCHITECTURE.md:{line}: `{name}`: {why}" for line, name in found if (why := problem(name))]
    assert problems == []


def tree_paths(text: str) -> list[str]:
    """The paths of the package tree (the code block under "## Packages"): two spaces of indent per folder level,
    one name (or a comma-separated few) per line, then its description."""
    block = re.search(r"## Packages\n+```\n(.*?)```", text, re.S)
    assert block is not None, "docs/ARCHITECTURE.md has no package tree under '## Packages'"
    paths: list[str] = []
    folders: list[str] = []
    for line in block.group(1).splitlines():
        match = re.match(r"( *)(\S.*?)(?: {2,}.*)?$", line)
        if match is None:
            continue
        depth = len(match.group(1)) // 2
        del folders[depth:]
        for name in match.group(2).split(", "):
            paths.append("".join(folders) + name)
        if match.group(2).endswith("/"):
            folders.append(match.group(2))
    return paths


def test_every_path_in_the_package_tree_exists() -> None:
    paths = tree_paths(DOC.read_text(encoding="utf-8"))
    assert "guards/runtime/gate.py" in paths and "assistant/agent/turn.py" in paths
    assert [path for path in paths if not (ROOT / path).exists()] == []


def test_the_package_tree_lists_every_subpackage() -> None:
    """A new subpackage (`guards/<name>/`, `assistant/<name>/`) gets its line in the tree."""
    listed = set(tree_paths(DOC.read_text(encoding="utf-8")))
    packages = {f"{init.parent.relative_to(ROOT)}/" for top in PACKAGES for init in (ROOT / top).glob("*/__init__.py")}
    assert sorted(packages - listed) == []


def test_the_readme_links_the_architecture_doc() -> None:
    assert "](docs/ARCHITECTURE.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "name, resolves",
    [
        ("guards.runtime.pipeline", True),
        ("guards.runtime.gate.judge", True),
        ("guards.runtime.gate:PATHS", True),
        ("guards/runtime/gate.py", True),
        ("guards/runtime/", True),
        ("assistant.api:Assistant.stream", True),
        ("assistant/cli/*_cmd.py", True),
        ("guards.policy.registry.GUARDS", True),
        ("guards.policy.Policy", True),  # re-exported by the package
        ("guards.runtime.nothing", False),
        ("guards.runtime.gate:nothing", False),
        ("assistant.api:Assistant.nothing", False),
        ("assistant.api:build_tools.x", False),  # a function has no members to check
        ("guards/nothing.py", False),
        ("guards/verdict.py/", False),
    ],
)
def test_the_checker_tells_real_names_from_missing_ones(name: str, resolves: bool) -> None:
    assert references(f"see `{name}` here") == [(1, name)]
    assert (problem(name) is None) == resolves, problem(name)


def test_prose_spans_are_not_names() -> None:
    assert references('`judge("user_text")`, `Assistant.stream`, `stages: {}`, `tiny:NAME`, `guards/<name>/`') == []
