"""Import direction: assistant -> tools -> guards -> model, never upward, not even inside a function.

Every module of the four packages is parsed (ast, so function-level imports and `importlib.import_module("...")`
with a literal name count too) and each import of a higher layer is reported with file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"model": 0, "guards": 1, "tools": 2, "assistant": 3}


def imported_names(tree: ast.AST, module: str) -> list[tuple[int, str]]:
    """(line, dotted name) for every import in the tree, relative ones resolved against `module`."""
    found: list[tuple[int, str]] = []
    package = module.split(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level]
                found.append((node.lineno, ".".join([*base, node.module] if node.module else base)))
            elif node.module:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and _is_import_module(node.func) and _literal_first_arg(node):
            found.append((node.lineno, node.args[0].value))  # type: ignore[attr-defined]
    return found


def _literal_first_arg(node: ast.Call) -> bool:
    return bool(node.args) and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)


def _is_import_module(func: ast.expr) -> bool:
    return (isinstance(func, ast.Name) and func.id == "import_module") or (
        isinstance(func, ast.Attribute) and func.attr == "import_module"
    )


def upward_imports() -> list[str]:
    problems = []
    for package, level in LAYERS.items():
        for path in sorted((REPO / package).rglob("*.py")):
            relative = path.relative_to(REPO)
            module = ".".join(relative.with_suffix("").parts)
            if module.endswith(".__init__"):
                module = module.removesuffix(".__init__") + ".__init__"  # relative imports resolve from the package
            for line, name in imported_names(ast.parse(path.read_text(encoding="utf-8")), module):
                target = LAYERS.get(name.split(".")[0])
                if target is not None and target > level:
                    problems.append(f"{relative}:{line}: {package} imports {name}")
    return problems


def test_no_module_imports_a_higher_layer() -> None:
    assert upward_imports() == []


def test_the_checker_sees_function_level_and_dynamic_imports() -> None:
    source = "def f():\n    from assistant.home import data_dir\n    import_module('tools.registry')\n"
    names = [name for _, name in imported_names(ast.parse(source), "model.x")]
    assert names == ["assistant.home", "tools.registry"]
    relative = "from ..assistant import home\nfrom . import sibling\n"
    resolved = [n for _, n in imported_names(ast.parse(relative), "guards.policy.loader")]
    assert resolved == ["guards.assistant", "guards.policy"]
