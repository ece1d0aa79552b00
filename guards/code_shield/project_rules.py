"""The project's own semgrep rules: where they are, and which snippets could match them.

The rules (guards/code_shield/rules/<language>.yaml, shipped with the package) run in the same semgrep process as Code
Shield's (see guards/code_shield/adapter.py). Semgrep costs a process start per scan, so a snippet goes to it only if
it contains one of the words some rule needs (each rule's `metadata.prescan`): a rule cannot match code without them.
The words are read from the rules themselves, so the two cannot drift apart.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

RULES_DIR = Path(__file__).resolve().parent / "rules"
RULE_PREFIX = "ga-"  # every project rule id starts with it; Code Shield's never do


class ProjectRulesError(RuntimeError):
    """The project's rule file is missing or malformed (a packaging or editing mistake): scans must fail closed."""


def rules_file(language: str) -> Path | None:
    """The rule file for a Code Shield language, None when the project has no rules for it."""
    path = RULES_DIR / f"{language}.yaml"
    return path if path.is_file() else None


@functools.cache
def _prescan(path: Path) -> re.Pattern[str]:
    import yaml

    try:
        rules = yaml.safe_load(path.read_text(encoding="utf-8"))["rules"]
        words = {str(word) for rule in rules for word in rule["metadata"]["prescan"]}
        ids = [str(rule["id"]) for rule in rules]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise ProjectRulesError(f"cannot read the project's semgrep rules {path}: {exc}") from exc
    if not words or not all(rule_id.startswith(RULE_PREFIX) for rule_id in ids):
        raise ProjectRulesError(f"{path}: every rule needs an id starting with {RULE_PREFIX!r} and prescan words")
    return re.compile("|".join(re.escape(word) for word in sorted(words)))


def may_match(code: str, path: Path) -> bool:
    """Whether any rule of `path` could match `code` (false only when none of the rules' words occur)."""
    return _prescan(path).search(code) is not None


def is_project_rule(check_id: str | None) -> bool:
    return bool(check_id) and str(check_id).startswith(RULE_PREFIX)
