"""`assistant audit verify FILE...` and `assistant audit show FILE`.

verify: check the hash chain (strictly parsed records) and compare the log with its head file (`FILE.head`, or
`--head PATH` for a copy kept elsewhere). Exit 0: intact (a torn last line from a crash and a missing head file are
warnings), 1: tampered (the first bad record is named; a log shorter than its head names the missing records),
2: unreadable. Prints the number of records per kind.

show: the records as a readable table, optionally only one thread's or one kind's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from assistant.cli import exit_codes
from guards.audit.log import AuditLogUnreadable, verify_audit_log
from guards.audit.show import format_table, summarize

TAMPERED = 1  # not a shared exit code: `audit verify` alone uses 1 for "the check failed"


@click.group()
def audit() -> None:
    """Verify the hash-chained audit log, or show its records."""


@audit.command("verify")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--head", "head_file", type=click.Path(path_type=Path), default=None,
              help="Head file to compare with (default: FILE.head beside each log); one FILE only.")
@click.option("--no-head", is_flag=True, help="Check the chain only, not against a head file.")
@click.option("--json", "as_json", is_flag=True, help="Print each report as one JSON object (one line per FILE).")
def verify(files: tuple[Path, ...], head_file: Path | None, no_head: bool, as_json: bool) -> None:
    """Check every record of each FILE (e.g. one chain per replica): exit 0 all intact, 1 any tampered,
    2 any unreadable."""
    if head_file is not None and len(files) != 1:
        click.echo("error: --head compares one log with one head file; give one FILE", err=True)
        sys.exit(exit_codes.BAD_INPUT)
    claimed: dict[str, list[Path]] = {}  # replica id -> the files whose records carry it
    outcomes = [_verify_one(file, head_file, no_head, as_json, claimed) for file in files]
    for replica, where in claimed.items():
        if len(where) > 1 and not as_json:
            click.echo(f"warning: replica {replica} appears in more than one file ({', '.join(map(str, where))}): "
                       "each replica should keep one chain", err=True)
    if TAMPERED in outcomes:
        sys.exit(TAMPERED)
    sys.exit(exit_codes.BAD_INPUT if exit_codes.BAD_INPUT in outcomes else exit_codes.OK)


def _verify_one(file: Path, head_file: Path | None, no_head: bool, as_json: bool,
                claimed: dict[str, list[Path]] | None = None) -> int:

    try:
        report = verify_audit_log(file, head=False if no_head else (head_file or True))
    except AuditLogUnreadable as exc:
        click.echo(f"error: {exc}", err=True)
        return exit_codes.BAD_INPUT
    if as_json:
        click.echo(json.dumps(report.to_dict()))
    elif report.intact:
        click.echo(f"{file}: intact, {report.records} records, last hash {report.last_hash}")
    else:
        first = report.problems[0]
        click.echo(f"{file}: TAMPERED at line {first.line}: {first.message}", err=True)
        for problem in report.problems[1:10]:
            click.echo(f"  also line {problem.line}: {problem.message}", err=True)
        if len(report.problems) > 10:
            click.echo(f"  ... and {len(report.problems) - 10} more problems", err=True)
    for replica in report.replicas:
        if claimed is not None:
            claimed.setdefault(replica, []).append(file)
    if not as_json:
        if report.replicas:
            click.echo("replica " + ", ".join(report.replicas) + (" (mixed: records of several replicas in one chain)"
                                                                   if len(report.replicas) > 1 else ""))
        if report.kinds:
            click.echo("records per kind: " + ", ".join(f"{kind} {count}" for kind, count in report.kinds.items()))
        head = report.head
        if head is not None and head.status == "match":
            click.echo(f"head: matches ({Path(head.file).name}, seq {head.seq})")
        elif head is not None and head.status == "behind":
            click.echo(f"head: seq {head.seq}, the log goes on after it (a crash between writing a record and its "
                       "head; the records after it are chained but not anchored)")
        elif head is not None and head.status == "missing" and report.records:
            click.echo(f"warning: no head file {head.file}: records deleted from the end of the log cannot be "
                       "detected (logs written before head files existed have none)", err=True)
    if report.torn_tail_bytes:
        click.echo(
            f"warning: {file} ends with an incomplete line of {report.torn_tail_bytes} bytes (a write interrupted by "
            "a crash); it is not part of the chain and was not verified",
            err=True,
        )
    return exit_codes.OK if report.intact else TAMPERED


@audit.command("show")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--thread", "thread_id", default=None, help="Only records of this thread.")
@click.option("--kind", "kinds", multiple=True, help="Only records of this kind (repeatable): verdict, tool_run, ...")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the last N matching records.")
def show(file: Path, thread_id: str | None, kinds: tuple[str, ...], limit: int | None) -> None:
    """Print the records of FILE as a table (it does not verify them: use `audit verify`)."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        click.echo(f"error: cannot read audit log {file}: {exc.strerror or exc}", err=True)
        sys.exit(exit_codes.BAD_INPUT)
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        row = summarize(line, number)
        if thread_id is not None and row["thread"] != thread_id:
            continue
        if kinds and row["kind"] not in kinds:
            continue
        rows.append(row)
    if limit is not None:
        rows = rows[-limit:]
    if not rows:
        click.echo("no matching records", err=True)
        return
    click.echo(format_table(rows))
