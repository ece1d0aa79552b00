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


# --- no import circles; the policy a leaf ----------------------------------------------------------------------------


def module_graph() -> dict[str, set[str]]:
    """Project module -> the project modules it imports (anywhere in the file, functions included; imports under
    `if TYPE_CHECKING:` are annotations only and never run, so they are left out)."""
    modules: dict[str, Path] = {}
    for package in LAYERS:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        _drop_type_checking_blocks(tree)
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    parent = package[: len(package) - node.level + 1]
                    base = ".".join([*parent, *([node.module] if node.module else [])])
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            targets.update(_owning_module(name, modules) for name in names)
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def _drop_type_checking_blocks(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            node.body = [  # type: ignore[attr-defined]  # every node with a list body has a settable one
                child for child in body
                if not (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
            ]


def _owning_module(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return circles


def test_no_import_circles() -> None:
    assert import_circles(module_graph()) == []


def test_the_policy_is_a_leaf() -> None:
    """The policy subpackage (schema and loader) imports nothing else of the project: every layer reads its typed
    sections, and no section depends on code that runs checks."""
    graph = module_graph()
    outside = {
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module.startswith("guards.policy")
        for target in targets
        if not target.startswith("guards.policy")
    }
    assert outside == set()


def test_a_circle_is_found() -> None:
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
