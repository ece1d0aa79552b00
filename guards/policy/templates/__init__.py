"""The example policies, shipped with the package: `assistant policy init --template NAME FILE` writes one.

Each template is `<NAME>.yaml` in this folder (package data, so a wheel carries them). A clone's
`examples/policies/<NAME>.yaml` are symlinks to these files: one copy, which tests/guards/test_policy_templates.py
keeps in step with the examples folder.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

SUFFIX = ".yaml"
OFFLINE_SMOKE = "offline-smoke"  # tiny local models, no downloads: what a machine without weights can run


class UnknownTemplateError(KeyError):
    """No template of that name; `names` lists the ones there are."""

    def __init__(self, name: str, names: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.names = names

    def __str__(self) -> str:
        return f"unknown template {self.name!r}; templates: {', '.join(self.names)}"


def _folder() -> Traversable:
    return resources.files(__name__)


def template_names() -> list[str]:
    """The templates' names (file stems), sorted."""
    return sorted(item.name.removesuffix(SUFFIX) for item in _folder().iterdir() if item.name.endswith(SUFFIX))


def _template(name: str) -> Traversable:
    names = template_names()
    if name not in names:
        raise UnknownTemplateError(name, names)
    return _folder().joinpath(name + SUFFIX)


def template_text(name: str) -> str:
    """The text of template NAME, comments included; UnknownTemplateError when there is none."""
    return _template(name).read_text(encoding="utf-8")


def template_path(name: str) -> Path:
    """Template NAME as a file on disk (the package is installed unzipped, as pip does); UnknownTemplateError."""
    return Path(str(_template(name)))
