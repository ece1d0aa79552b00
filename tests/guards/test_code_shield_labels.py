"""Code Shield on its own 211 labelled unit-test cases (tests/data/codeshield), semgrep layer included.

The labels come from Code Shield's per-language tests, which call `analyze(language, code)` with its default use
case (cyberseceval: regex and semgrep both run, no prescan). Installed codeshield 1.0.1 fails the semgrep ones (its
semgrep scans nothing); through our adapter every case must match. One semgrep process per language.
"""

from __future__ import annotations

import asyncio
import collections
import json
from typing import Any

import pytest

from guards.code_shield.adapter import analyze_many
from tests.data_paths import data_file

CASES_FILE = data_file("codeshield", "icd_unit_test_cases.json")
CASES: list[dict[str, Any]] = json.loads(CASES_FILE.read_text())


@pytest.fixture(scope="module")
def results() -> dict[int, list[Any]]:
    return asyncio.run(_analyze_all())


async def _analyze_all() -> dict[int, list[Any]]:
    by_language: dict[str, list[int]] = collections.defaultdict(list)
    for index, case in enumerate(CASES):
        assert case["usecase"] is None, "labels are for analyze()'s default use case"
        by_language[case["language"]].append(index)
    found: dict[int, list[Any]] = {}
    for language, indices in by_language.items():
        issues = await analyze_many(language, [CASES[i]["code"] for i in indices], usecase="cyberseceval")
        found.update(zip(indices, issues, strict=True))
    return found


def test_the_labelled_file_is_what_we_expect() -> None:
    assert len(CASES) == 211, f"missing or changed: {CASES_FILE}"
    assert collections.Counter(c["label"] for c in CASES) == {"insecure": 179, "secure": 32}


def test_every_labelled_count_matches(results: dict[int, list[Any]]) -> None:
    mismatches = [
        (case["language"], case["analyzer"], case["code"], case["expected_count"], [i.pattern_id for i in results[n]])
        for n, case in enumerate(CASES)
        if case["expected_count"] is not None and len(results[n]) != case["expected_count"]
    ]
    assert mismatches == []
    assert sum(case["expected_count"] is not None for case in CASES) == 206


def test_functional_cases_report_the_labelled_line_and_rule(results: dict[int, list[Any]]) -> None:
    functional = [(n, c) for n, c in enumerate(CASES) if c["expected_count"] is None]
    assert len(functional) == 5
    for n, case in functional:
        issues = results[n]
        assert issues, case["code"]
        assert issues[0].line == case["expected_line"], case["code"]
        if case["extra"]:  # the expected regex rule (the first finding is a regex one: regex runs first)
            assert any(i.rule == case["extra"][0] and i.line == case["expected_line"] for i in issues)


def test_semgrep_labelled_cases_are_found_by_semgrep(results: dict[int, list[Any]]) -> None:
    """Proof that the semgrep layer itself contributes, not just the regexes (which is all codeshield 1.0.1 has)."""
    insecure = [n for n, c in enumerate(CASES) if c["analyzer"] == "semgrep" and c["label"] == "insecure"]
    without_semgrep = [CASES[n]["code"] for n in insecure if not any(str(i.analyzer) == "semgrep" for i in results[n])]
    assert len(insecure) == 22
    assert without_semgrep == []
