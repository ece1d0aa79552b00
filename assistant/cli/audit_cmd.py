"""`assistant audit verify FILE`: check the hash chain of an audit log.

Exit 0: intact (a torn last line from a crash is reported as a warning), 1: tampered (the first bad record is
named), 2: unreadable.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from assistant.cli import exit_codes

TAMPERED = 1  # not a shared exit code: `audit verify` alone uses 1 for "the check failed"


@click.group()
def audit() -> None:
    """Verify the hash-chained audit log."""


@audit.command("verify")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def verify(file: Path, as_json: bool) -> None:
    """Check every record of FILE: exit 0 intact, 1 tampered, 2 unreadable."""
    from guards.audit import AuditLogUnreadable, verify_audit_log

    try:
        report = verify_audit_log(file)
    except AuditLogUnreadable as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exit_codes.BAD_INPUT)
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
    if report.torn_tail_bytes:
        click.echo(
            f"warning: {file} ends with an incomplete line of {report.torn_tail_bytes} bytes (a write interrupted by "
            "a crash); it is not part of the chain and was not verified",
            err=True,
        )
    sys.exit(exit_codes.OK if report.intact else TAMPERED)
