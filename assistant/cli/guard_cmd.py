"""`assistant guard check` (one stage's guards on a text) and `assistant guard prompt` (the exact Llama Guard prompt).

`guard check` prints `{"decision": "allow"|"warn"|"block", "verdicts": [...], "error": str|null}`. The pipeline's
finer decisions fold into those three: `log` is allowed (recorded only), `ask` is blocked (nobody can approve a
one-off check). Exit codes: 0 allowed or warned, 3 blocked by the policy, 4 guard error (blocked, failed closed),
2 bad input.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from assistant.cli import exit_codes
from assistant.home import default_audit_path
from assistant.models import guard_model_dirs
from guards.llama_guard.prompt import PromptCategory, as_turn, framing_for, prompt_categories, render_prompt
from guards.policy import PolicyError, load_policy
from guards.policy.registry import CODE, MODEL_OUTPUT, STAGE_NAMES
from guards.runtime.pipeline import GuardPipeline

_CONTRACT_DECISION = {"allow": "allow", "log": "allow", "warn": "warn", "ask": "block", "block": "block"}


@click.group("guard")
def guard() -> None:
    """Run the policy's guards on a text, or print the Llama Guard prompt."""


def _fail(message: str, code: int = exit_codes.BAD_INPUT) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _load_policy(path: Path) -> Any:

    try:
        return load_policy(path)
    except PolicyError as exc:
        for issue in exc.errors:
            click.echo(str(issue), err=True)
        sys.exit(exit_codes.BAD_INPUT)


def _read_text(value: str) -> str:
    """TEXT, `@FILE`, or `-` for standard input."""
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"cannot read {path}: {exc}")
    return value


def contract_result(result: Any) -> dict[str, Any]:
    """The StageResult as the CLI contract's JSON object."""
    errors = [f"{v.guard}: {v.error}" for v in result.verdicts if v.error]
    return {
        "decision": _CONTRACT_DECISION[result.decision],
        "verdicts": [v.to_dict() for v in result.verdicts],
        "error": "; ".join(errors) if errors else None,
    }


def exit_code_for(result: Any) -> int:
    if any(v.error for v in result.verdicts if v.decision == "block"):
        return exit_codes.GUARD_ERROR
    return exit_codes.REFUSED if _CONTRACT_DECISION[result.decision] == "block" else exit_codes.OK


@guard.command("check")
@click.option("--policy", "policy_path", type=click.Path(path_type=Path), required=True, help="The policy file.")
@click.option("--stage", type=click.Choice(STAGE_NAMES), required=True, help="Which stage's guards to run.")
@click.option("--role", type=click.Choice(["user", "agent"]), default=None,
              help="Whose text it is (default: agent for model_output, user otherwise).")
@click.option("--language", default=None, help="Language of the code (code stage; default python).")
@click.option("--image", "image_paths", multiple=True, type=click.Path(path_type=Path),
              help="An image judged with TEXT (repeatable); needs a guard on STAGE that sees images (Llama Guard 4).")
@click.argument("text")
def check(policy_path: Path, stage: str, role: str | None, language: str | None, image_paths: tuple[Path, ...],
          text: str) -> None:
    """Run STAGE's guards from the policy on TEXT (or @FILE, or - for stdin) and print the verdicts as JSON."""
    policy = _load_policy(policy_path)
    content = _read_text(text)
    if role is None:
        role = "agent" if stage == MODEL_OUTPUT else "user"
    if stage == CODE and language is None:
        language = "python"

    try:
        pipeline = GuardPipeline.from_policy(
            policy, model_dirs=guard_model_dirs(policy), policy_path=policy_path,
            default_audit_path=default_audit_path(),
        )
    except (ValueError, OSError) as exc:  # a tiny guard that cannot be built, an unusable audit path
        _fail(str(exc))
    images = _images_or_exit(policy, pipeline, stage, image_paths)
    pipeline_role = "assistant" if role == "agent" else "user"
    result = asyncio.run(pipeline.check(stage, content, role=pipeline_role, language=language, images=images))
    click.echo(json.dumps(contract_result(result), ensure_ascii=False))
    sys.exit(exit_code_for(result))


def _images_or_exit(policy: Any, pipeline: GuardPipeline, stage: str, paths: tuple[Path, ...]) -> tuple[Any, ...]:
    """The --image files, read under the policy's limits; exit 2 when none of STAGE's guards sees images (they
    would judge the text alone) or a file is not an acceptable image."""
    from assistant.images import ImageError, read_image_files

    if not paths:
        return ()
    if not policy.images.enabled:
        _fail("this policy does not accept images (images.enabled: false)")
    if not pipeline.image_guards(stage):
        guards = ", ".join(pipeline.enabled_guards(stage)) or "none"
        _fail(f"no guard of the {stage} stage sees images (its guards: {guards}); images need Llama Guard 4 "
              "judging in process (models.llama_guard.variant: \"4\")")
    try:
        return read_image_files(policy, paths)
    except ImageError as exc:
        _fail(str(exc))


@guard.command("prompt")
@click.option("--policy", "policy_path", type=click.Path(path_type=Path), required=True, help="The policy file.")
@click.argument("conversation_path", metavar="CONVERSATION.json", type=click.Path(path_type=Path))
def prompt(policy_path: Path, conversation_path: Path) -> None:
    """Print exactly the Llama Guard prompt for CONVERSATION.json ({"messages": [{"role", "content"}, ...]}); the
    role checked is that of the last message."""

    policy = _load_policy(policy_path)
    try:
        data = json.loads(conversation_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"cannot read {conversation_path}: {exc}")
    except json.JSONDecodeError as exc:
        _fail(f"{conversation_path}: invalid JSON: {exc}")
    messages = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(messages, list) or not messages:
        _fail(f'{conversation_path}: expected {{"messages": [{{"role": ..., "content": ...}}, ...]}} with messages')
    turns = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            _fail(f"{conversation_path}: messages[{index}]: needs a string 'content'")
        try:
            turns.append(as_turn(str(message.get("role")), message["content"]))
        except ValueError as exc:
            _fail(f"{conversation_path}: messages[{index}]: {exc}")
    config = policy.llama_guard
    custom = [PromptCategory(c.code, c.name, c.description) for c in config.custom]
    variant = policy.models.llama_guard.variant
    try:
        categories = prompt_categories(variant, enabled=config.categories, excluded=config.excluded, custom=custom)
        text = render_prompt(turns, categories, framing_for(variant))
    except ValueError as exc:
        _fail(f"{conversation_path}: {exc}")
    click.echo(text, nl=False)
