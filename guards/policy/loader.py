"""Read a policy file: YAML with line numbers, every problem reported as `FILE:LINE: key.path: problem`.

PyYAML composes the node tree first (it keeps each key's line), then builds the data from that same tree; a
pydantic error's `loc` is walked down the tree to the line of the offending key.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from guards.policy.base import PATTERN_MEANINGS
from guards.policy.checks import Loc, consistency_problems, format_loc
from guards.policy.schema import DEFER_CONSISTENCY_CHECKS, Policy
from guards.policy.warnings import policy_warning_items
from guards.policy.yaml_errors import describe

_STR_TAG = "tag:yaml.org,2002:str"
_NOT_TEXT = "a key must be text (YAML reads unquoted yes/no/on/off as booleans and digits as numbers); quote it"


@dataclass(frozen=True)
class PolicyIssue:
    file: str
    line: int | None  # 1-based; None when the file could not be read at all
    key_path: str  # `llama_guard.custom[0].code`; empty for problems with the whole file
    problem: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.key_path}: {self.problem}" if self.key_path else f"{where}: {self.problem}"


class PolicyError(Exception):
    """The policy could not be loaded. `errors` lists every problem found; `unreadable` if the file itself failed."""

    def __init__(self, errors: list[PolicyIssue], *, unreadable: bool = False) -> None:
        self.errors = list(errors)
        self.unreadable = unreadable
        super().__init__("\n".join(str(issue) for issue in self.errors))

    @property
    def issues(self) -> list[PolicyIssue]:
        return self.errors


@dataclass(frozen=True)
class CheckedPolicy:
    policy: Policy
    warnings: list[PolicyIssue]  # valid-but-risky choices, pointed at their lines


def load_policy(path: str | Path) -> Policy:
    """Load and validate a policy file; raise PolicyError naming file, line and key of every problem."""
    return check_policy_file(path).policy


def check_policy_file(path: str | Path) -> CheckedPolicy:
    """Like load_policy, and also return the policy's warnings with their lines."""
    return check_policy_text(_read(path), file=str(path))


# A policy is a few kilobytes; parsing 50 MB of YAML took 51 s. Refuse anything larger before reading it all.
MAX_POLICY_BYTES = 1024 * 1024


def _too_large(size: int) -> str:
    return f"the policy file is {size:,} bytes, over the {MAX_POLICY_BYTES:,}-byte (1 MiB) limit; refusing to parse it"


def _read_capped(path: str | Path) -> bytes:
    """At most MAX_POLICY_BYTES + 1 bytes: the size check holds for pipes and growing files too."""
    with open(path, "rb") as file:
        data = file.read(MAX_POLICY_BYTES + 1)
        if len(data) > MAX_POLICY_BYTES:
            try:
                size = max(os.fstat(file.fileno()).st_size, len(data))
            except OSError:
                size = len(data)
            raise PolicyError([PolicyIssue(str(path), None, "", _too_large(size))], unreadable=True)
        return data


def parse_policy_text(text: str, *, file: str = "<policy>") -> Policy:
    """Validate policy YAML given as text; `file` is the name used in error messages."""
    return check_policy_text(text, file=file).policy


def check_policy_text(text: str, *, file: str = "<policy>") -> CheckedPolicy:
    size = len(text) if len(text) > MAX_POLICY_BYTES else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_POLICY_BYTES:
        raise PolicyError([PolicyIssue(file, None, "", _too_large(size))])
    root, data = _compose(text, file)
    issues = _structure_issues(root, file)
    if "version" not in data:
        issues.append(PolicyIssue(file, 1, "version", "missing; a policy file starts with `version: 1`"))
    if any(issue.problem == _NOT_TEXT for issue in issues):
        raise PolicyError(issues)  # the schema's messages about such keys would only confuse
    try:
        policy = Policy.model_validate(data, context={DEFER_CONSISTENCY_CHECKS: True})
    except ValidationError as exc:
        errors = exc.errors()
        # Locating an issue scans its mapping: cap them so a file of 20,000 bad keys is not quadratic.
        issues += [_issue_from_error(root, file, error) for error in errors[:MAX_ISSUES]]
        if len(errors) > MAX_ISSUES:
            last = max(issue.line or 1 for issue in issues)
            issues.append(PolicyIssue(file, last, "", f"... and {len(errors) - MAX_ISSUES} more problems"))
    else:
        issues += [_issue_at(root, file, loc, problem) for loc, problem in consistency_problems(policy)]
    if issues:
        raise PolicyError(sorted(issues, key=lambda issue: issue.line or 0))
    warnings = [_issue_at(root, file, item.loc, item.message) for item in policy_warning_items(policy)]
    return CheckedPolicy(policy, warnings)


def _read(path: str | Path) -> str:
    try:
        return _read_capped(path).decode("utf-8")
    except FileNotFoundError:
        problem = "no such file"
    except IsADirectoryError:
        problem = "is a directory, not a policy file"
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
    except OSError as exc:
        problem = f"cannot read: {exc.strerror or exc}"
    raise PolicyError([PolicyIssue(str(path), None, "", problem)], unreadable=True)


def _compose(text: str, file: str) -> tuple[MappingNode, Any]:
    try:
        loader = yaml.SafeLoader(text)  # checks every character first: a NUL or other control byte fails here
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        problem = f"invalid YAML: character U+{exc.character:04X} is not allowed"
        raise PolicyError([PolicyIssue(file, line, "", problem)]) from None
    try:
        root = loader.get_single_node()
        shape = _shape_problem(root) if root is not None else None
        if shape is not None:
            raise PolicyError([PolicyIssue(file, 1, "", shape)])
        data = loader.construct_document(root) if root is not None else None
    except RecursionError:  # PyYAML composes recursively: thousands of nested brackets
        problem = f"invalid YAML: nested too deeply (max {MAX_DEPTH} levels)"
        raise PolicyError([PolicyIssue(file, 1, "", problem)]) from None
    except yaml.MarkedYAMLError as exc:

        found = describe(text, exc)  # the line and column of the mistake, and what it probably is
        if found is None:
            detail = " ".join(part for part in (exc.context, exc.problem) if part)
            raise PolicyError([PolicyIssue(file, None, "", f"invalid YAML: {detail}")]) from None
        problem = f"invalid YAML at column {found.column}: {found.message.removeprefix('invalid YAML: ')}"
        raise PolicyError([PolicyIssue(file, found.line, "", problem)]) from None
    except yaml.YAMLError as exc:
        raise PolicyError([PolicyIssue(file, 1, "", f"invalid YAML: {exc}")]) from None
    finally:
        loader.dispose()
    if root is None:
        raise PolicyError([PolicyIssue(file, 1, "", "the file is empty; a policy needs at least `version: 1`")])
    if not isinstance(root, MappingNode) or not isinstance(data, dict):
        kind = "a list" if isinstance(root, SequenceNode) else "a single value"
        raise PolicyError(
            [
                PolicyIssue(
                    file, root.start_mark.line + 1, "", f"a policy must be a mapping of keys to values, not {kind}"
                )
            ]
        )
    return root, data


MAX_ISSUES = 200  # located issues reported per file
MAX_DEPTH = 64  # far deeper than any policy; bounds every recursive walk of the data below
MAX_VALUES = 100_000  # values after expanding aliases: a policy has a few hundred


def _shape_problem(root: Node) -> str | None:
    """Refuse YAML whose node graph would make later walks hang or recurse without end: a recursive alias
    (`&a [*a]`), nesting deeper than MAX_DEPTH (aliases expanded), or aliases that expand to more than MAX_VALUES
    values (a "billion laughs" file). Iterative, linear in the number of distinct nodes."""
    size: dict[int, int] = {}  # id(node) -> values in its expansion, once finished
    height: dict[int, int] = {}  # id(node) -> levels of its expansion
    on_path: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children = _children(node)
        if done:
            on_path.discard(id(node))
            size[id(node)] = 1 + sum(size[id(child)] for child in children)
            height[id(node)] = 1 + max((height[id(child)] for child in children), default=0)
            if size[id(node)] > MAX_VALUES:
                return f"the YAML expands to more than {MAX_VALUES} values through aliases (&anchor / *alias)"
            if height[id(node)] > MAX_DEPTH:
                return f"the YAML is nested too deeply (max {MAX_DEPTH} levels)"
            continue
        if id(node) in size:
            continue
        if len(on_path) >= MAX_DEPTH:
            return f"the YAML is nested too deeply (max {MAX_DEPTH} levels)"
        on_path.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in on_path:
                return "the YAML has a recursive alias (an *alias inside the value its &anchor names)"
            if id(child) not in size:
                stack.append((child, False))
    return None


def _children(node: Node) -> list[Node]:
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, SequenceNode):
        return list(node.value)
    return []


def _structure_issues(root: MappingNode, file: str) -> list[PolicyIssue]:
    """Duplicate keys (PyYAML silently keeps the last) and keys that YAML did not read as text (`yes:`, `1:`)."""
    issues: list[PolicyIssue] = []

    def walk(node: Node, path: Loc) -> None:
        if isinstance(node, MappingNode):
            first_seen: dict[str, int] = {}
            for key, value in node.value:
                line = key.start_mark.line + 1
                name = key.value if isinstance(key, ScalarNode) else "?"
                if not isinstance(key, ScalarNode) or key.tag != _STR_TAG:
                    issues.append(PolicyIssue(file, line, format_loc((*path, name)), _NOT_TEXT))
                    continue
                if name in first_seen:
                    issues.append(
                        PolicyIssue(
                            file, line, format_loc((*path, name)), f"duplicate key (first at line {first_seen[name]})"
                        )
                    )
                first_seen.setdefault(name, line)
                walk(value, (*path, name))
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    walk(root, ())
    return issues


def _locate(root: MappingNode, loc: Loc) -> tuple[int, Loc]:
    """The line of the deepest key of `loc` written in the file, and the loc without pydantic's internal parts."""
    node: Node | None = root
    line = root.start_mark.line + 1
    path: list[str | int] = []
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(node, MappingNode):
            match = next(
                (pair for pair in node.value if isinstance(pair[0], ScalarNode) and pair[0].value == str(part)), None
            )
            path.append(part)
            if match is None:
                node = None
            else:
                line, node = match[0].start_mark.line + 1, match[1]
        elif isinstance(node, SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
            path.append(part)
        elif node is None and (isinstance(part, int) or part.isidentifier()):
            path.append(part)  # below a key that is not in the file (a missing one)
        # anything else is pydantic's own label (a union member, a validator), not a key the user wrote
    return line, tuple(path)


def _issue_at(root: MappingNode, file: str, loc: Loc, problem: str) -> PolicyIssue:
    line, path = _locate(root, loc)
    return PolicyIssue(file, line, format_loc(path), problem)


def _issue_from_error(root: MappingNode, file: str, error: Any) -> PolicyIssue:
    loc: Loc = tuple(error["loc"])
    kind, message, value = error["type"], error["msg"], error.get("input")
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        message = "unknown key" + (f"; did you mean `{close[0]}`?" if close else "")
        if allowed:
            message += f" (allowed here: {', '.join(allowed)})"
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "string_pattern_mismatch" and error.get("ctx", {}).get("pattern") in PATTERN_MEANINGS:
        message = f"expected {PATTERN_MEANINGS[error['ctx']['pattern']]} (got {value!r})"
    elif kind == "value_error":
        message = message.removeprefix("Value error, ")
    elif isinstance(value, str | int | float | bool) or value is None:
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        message = f"{message} (got {shown})"
    return _issue_at(root, file, loc, message)


def _allowed_keys(loc: Loc) -> list[str]:
    """The field names of the model found at `loc` (walking the schema's types), for 'did you mean'."""
    annotation: Any = Policy
    for part in loc:
        model = _model_in(annotation)
        if model is not None and isinstance(part, str) and part in model.model_fields:
            annotation = model.model_fields[part].annotation
            continue
        args = [arg for arg in typing.get_args(_strip(annotation)) if arg is not type(None)]
        if isinstance(part, int) and args:  # tuple[X, ...]
            annotation = args[0]
        elif isinstance(part, str) and len(args) == 2:  # dict[K, V]
            annotation = args[1]
        else:
            return []
    model = _model_in(annotation)
    return [field.alias or name for name, field in model.model_fields.items()] if model else []


def _strip(annotation: Any) -> Any:
    """Optional[X] -> X, Annotated[X, ...] -> X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _model_in(annotation: Any) -> type[BaseModel] | None:
    annotation = _strip(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
