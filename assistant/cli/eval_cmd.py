"""`assistant eval redteam CASES.jsonl --policy FILE [--json]`: labelled cases through the policy's real guards.

Prints block/allow figures per stage and per category, false refusals, guard errors and latency percentiles as a
table, or with `--json` one JSON object (`total`, `correct`, `blocked`, `allowed`, `guard_errors`, `stages`, ...).
Exit codes: 0 the evaluation ran (whatever its figures, unless `--fail-under RATE`: then 1 when the share of cases
decided as labelled is below RATE), 2 bad input (a bad case line - each one named - or an invalid policy). When the
policy's guards are tiny test models (`tiny:NAME`), a line says so: their rates say nothing about real guards.
Evaluation cases are attacks: they are not written to the policy's audit log unless `--audit` says so.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from assistant.cli import exit_codes
from assistant.home import default_audit_path
from assistant.models import TINY_PREFIX, guard_model_dirs
from guards.policy import Policy, PolicyError, load_policy
from guards.policy.registry import MODEL_GUARDS, STAGE_NAMES
from guards.runtime.pipeline import GuardPipeline
from guards.runtime.redteam import CaseFileError, format_table, load_cases, run_cases, summarize


@click.group("eval")
def eval_group() -> None:
    """Evaluate the policy's guards on labelled red-team cases."""


@eval_group.command("redteam")
@click.argument("cases_path", metavar="CASES.jsonl", type=click.Path(path_type=Path))
@click.option("--policy", "policy_path", type=click.Path(path_type=Path), required=True, help="The policy file.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of the table.")
@click.option("--stage", "stages", multiple=True,
              type=click.Choice(STAGE_NAMES),
              help="Only the cases of this stage (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N cases (after --stage).")
@click.option("--audit/--no-audit", default=False, show_default=True,
              help="Also write every verdict to the policy's audit log.")
@click.option("--fail-under", "fail_under", type=click.FloatRange(0.0, 1.0), default=None, metavar="RATE",
              help="Exit 1 when the share of cases decided as labelled (correct / total) is below RATE (0..1).")
def redteam(cases_path: Path, policy_path: Path, as_json: bool, stages: tuple[str, ...], limit: int | None,
            audit: bool, fail_under: float | None) -> None:
    """Run CASES.jsonl (one case per line: stage, text, expected block|allow, optional id, category, language)
    through the guards POLICY enables, and report how they did."""

    try:
        cases = load_cases(cases_path)
    except CaseFileError as exc:
        for problem in exc.problems[:50]:
            click.echo(f"error: {problem}", err=True)
        if len(exc.problems) > 50:
            click.echo(f"error: ... and {len(exc.problems) - 50} more bad lines", err=True)
        sys.exit(exit_codes.BAD_INPUT)
    try:
        policy = load_policy(policy_path)
    except PolicyError as exc:
        for issue in exc.errors:
            click.echo(str(issue), err=True)
        sys.exit(exit_codes.BAD_INPUT)
    if stages:
        cases = [(line, case) for line, case in cases if case.stage in stages]
    if limit is not None:
        cases = cases[:limit]
    try:
        pipeline = _pipeline(policy, policy_path, audit)
    except (ValueError, OSError) as exc:  # a tiny guard that cannot be built, an unusable audit path
        click.echo(f"error: {exc}", err=True)
        sys.exit(exit_codes.BAD_INPUT)
    outcomes = asyncio.run(run_cases(pipeline, cases))
    report = summarize(outcomes)
    report["cases_file"] = str(cases_path)
    report["policy"] = str(policy_path)
    report["correct_rate"] = round(report["correct"] / report["total"], 4) if report["total"] else 0.0
    report["tiny_models"] = tiny_guard_sources(policy)
    failed = fail_under is not None and report["correct_rate"] < fail_under
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False))
    else:
        _print_report(report, cases_path, policy_path)
    if report["tiny_models"]:
        note = ", ".join(report["tiny_models"])
        click.echo(f"note: the policy's guard models are tiny test models ({note}): these rates say nothing about "
                   "real guards", err=as_json)
    if failed:
        click.echo(f"failed: {report['correct_rate']:.2%} of the cases decided as labelled, below --fail-under "
                   f"{fail_under:.2%}", err=True)
        sys.exit(1)


def tiny_guard_sources(policy: Policy) -> list[str]:
    """The `tiny:NAME` sources of the guard models some stage of the policy uses."""

    used = sorted(
        name for name in MODEL_GUARDS if any(policy.stages.get(stage).guard(name).enabled for stage in STAGE_NAMES)
    )
    sources = [getattr(policy.models, name).source for name in used]
    return [source for source in sources if source.startswith(TINY_PREFIX)]


def _print_report(report: dict, cases_path: Path, policy_path: Path) -> None:

    click.echo(f"Red-team evaluation: {report['total']} cases from {cases_path}, policy {policy_path}\n")
    click.echo(format_table(report))
    for item in report["incorrect"][:20]:
        why = f"guard error: {item['guard_error']}" if item["guard_error"] else f"decision {item['decision']}"
        label = item["id"] if item["id"] is not None else f"line {item['line']}"
        click.echo(f"  incorrect: {label} ({item['stage']}, expected {item['expected']}): {why}")
    hidden = len(report["incorrect"]) - 20 + report["incorrect_not_listed"]
    if hidden > 0:
        click.echo(f"  ... and {hidden} more incorrect cases (--json lists the first 50)")


def _pipeline(policy, policy_path: Path, audit: bool):  # -> GuardPipeline

    return GuardPipeline.from_policy(
        policy, model_dirs=guard_model_dirs(policy), audit=True if audit else None, policy_path=policy_path,
        default_audit_path=default_audit_path(),
    )
