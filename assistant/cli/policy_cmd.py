"""`assistant policy`: check, show, explain and create policy files.

Loading a policy is cheap by design: nothing here imports torch, transformers, semgrep or codeshield.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

import click

from assistant.cli import exit_codes
from guards.policy import CheckedPolicy, Policy, PolicyError, check_policy_file
from guards.policy.explain import explain_policy
from guards.policy.templates import UnknownTemplateError, template_names, template_text


def starter_policy_text() -> str:
    """The commented starter policy that `policy init` writes."""
    return resources.files("guards.policy").joinpath("starter.yaml").read_text(encoding="utf-8")


def _load_or_exit(file: Path) -> CheckedPolicy:
    try:
        return check_policy_file(file)
    except PolicyError as exc:
        for issue in exc.errors:
            click.echo(str(issue), err=True)
        sys.exit(exit_codes.BAD_INPUT if exc.unreadable else exit_codes.POLICY_INVALID)


def _echo_warnings(checked: CheckedPolicy) -> None:
    for issue in checked.warnings:
        click.echo(f"{issue.file}:{issue.line}: {issue.key_path}: warning: {issue.problem}", err=True)


@click.group()
def policy() -> None:
    """Check, show, explain and create policy files."""


@policy.command()
@click.argument("file", type=click.Path(path_type=Path))
def check(file: Path) -> None:
    """Validate FILE: exit 0 if valid (warnings on stderr), 1 if invalid, 2 if unreadable."""
    checked = _load_or_exit(file)
    _echo_warnings(checked)
    count = len(checked.warnings)
    click.echo(f"{file}: valid" + (f" ({count} warning{'s' if count != 1 else ''})" if count else ""))


@policy.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
def show(file: Path, as_json: bool) -> None:
    """Print the effective policy of FILE, with every default filled in."""
    checked = _load_or_exit(file)
    _echo_warnings(checked)
    click.echo(dump_policy(checked.policy, as_json=as_json), nl=False)


def dump_policy(policy: Policy, *, as_json: bool = False) -> str:
    data = policy.model_dump(mode="json", by_alias=True)
    if as_json:
        return json.dumps(data, indent=2) + "\n"
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)


@policy.command()
def schema() -> None:
    """Print the policy's JSON Schema (for editors)."""
    document = {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Guarded assistant policy"}
    document.update(Policy.model_json_schema(by_alias=True))
    click.echo(json.dumps(document, indent=2))


@policy.command()
@click.argument("file", type=click.Path(path_type=Path), required=False)
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@click.option(
    "--template",
    metavar="NAME",
    is_flag=False,
    flag_value="",
    default=None,
    help="Write the example policy NAME (default, strict, coding-assistant, offline-smoke, ...) instead of the "
    "starter; --template alone lists them.",
)
def init(file: Path | None, force: bool, template: str | None) -> None:
    """Write the commented starter policy (or an example policy, --template NAME) to FILE, or to stdout."""
    if template == "":
        if file is not None:
            click.echo(f"error: --template needs a NAME: `--template NAME {file}`; the templates:", err=True)
            _list_templates(err=True)
            sys.exit(exit_codes.BAD_INPUT)
        _list_templates()
        return
    text = starter_policy_text() if template is None else _template_or_exit(template)
    if file is None:
        click.echo(text, nl=False)
        return
    if file.exists() and not force:
        click.echo(f"{file}: already exists; use --force to overwrite it", err=True)
        sys.exit(exit_codes.BAD_INPUT)
    try:
        file.write_text(text, encoding="utf-8")
    except OSError as exc:
        click.echo(f"{file}: cannot write: {exc.strerror or exc}", err=True)
        sys.exit(exit_codes.BAD_INPUT)
    click.echo(f"wrote {file}; check it with `assistant policy check {file}`", err=True)


def _template_or_exit(name: str) -> str:
    try:
        return template_text(name)
    except UnknownTemplateError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exit_codes.BAD_INPUT)


def _list_templates(*, err: bool = False) -> None:
    """One line per template: its name and the policy's own `description`."""
    import yaml

    names = template_names()
    width = max(map(len, names), default=0)
    for name in names:
        data = yaml.safe_load(template_text(name))
        description = data.get("description", "") if isinstance(data, dict) else ""
        click.echo(f"{name:<{width}}  {description}".rstrip(), err=err)


@policy.command()
@click.argument("file", type=click.Path(path_type=Path))
def explain(file: Path) -> None:
    """Say in words what FILE makes the assistant do at each stage."""
    checked = _load_or_exit(file)
    click.echo(explain_policy(checked.policy, warnings=[f"{w.key_path}: {w.problem}" for w in checked.warnings]))
