"""Packaging metadata and the README's code: what a new user copies must work as written."""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_license_is_an_spdx_string_without_setuptools_warnings() -> None:
    from setuptools.config.pyprojecttoml import read_configuration

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = read_configuration(REPO / "pyproject.toml")
    assert config["project"]["license"] == "MIT"
    assert not [w for w in caught if "license" in str(w.message).lower()]
    assert (REPO / "LICENSE").read_text(encoding="utf-8").startswith("MIT License")


def test_readme_python_snippets_are_valid_python() -> None:
    snippets = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)
    assert snippets
    for snippet in snippets:
        ast.parse(snippet)  # no `async for` / `await` at module level
        assert "to_json()" not in snippet or "json.dumps" in snippet  # to_json() returns a dict


def test_scripted_model_format_is_documented() -> None:
    for doc in ("README.md", "docs/AGENT.md"):
        text = (REPO / doc).read_text(encoding="utf-8")
        assert '{"completion": ' in text, f"{doc} does not describe the scripted model file"
