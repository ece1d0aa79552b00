"""The example policies ship with the package (guards/policy/templates/, what `assistant policy init --template`
writes); a clone's examples/policies/*.yaml are symlinks to them, so there is one copy and the two cannot drift."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from guards.policy.templates import UnknownTemplateError, template_names, template_path, template_text

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "policies"
TEMPLATES = REPO / "guards" / "policy" / "templates"


def test_every_example_is_a_link_to_the_template_of_its_name() -> None:
    examples = sorted(EXAMPLES.glob("*.yaml"))
    stems = sorted(path.stem for path in examples)
    assert stems == template_names() == sorted(p.stem for p in TEMPLATES.glob("*.yaml"))
    for path in examples:
        assert path.is_symlink(), f"{path} must be a symlink to {TEMPLATES / path.name} (edit the template)"
        assert os.readlink(path) == f"../../guards/policy/templates/{path.name}"  # relative: works in any clone
        assert path.resolve() == (TEMPLATES / path.name).resolve()


@pytest.mark.parametrize("name", template_names())
def test_template_text_and_path_are_the_shipped_file(name: str) -> None:
    assert template_text(name) == (TEMPLATES / f"{name}.yaml").read_text(encoding="utf-8")
    assert template_path(name).resolve() == (TEMPLATES / f"{name}.yaml").resolve()


def test_an_unknown_template_names_the_ones_there_are() -> None:
    with pytest.raises(UnknownTemplateError) as caught:
        template_text("nope")
    assert caught.value.names == template_names()
    assert str(caught.value) == f"unknown template 'nope'; templates: {', '.join(template_names())}"
    for bad in ("", "../starter", "offline-smoke.yaml", "__init__"):
        with pytest.raises(UnknownTemplateError):
            template_path(bad)
