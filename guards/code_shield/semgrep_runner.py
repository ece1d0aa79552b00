"""Run semgrep once over many files and refuse to believe a silent, empty answer.

Code Shield 1.0.1 runs semgrep with `--project-root /`. Current semgrep (measured with 1.185.0) then logs, at a level
`--quiet` hides, "The project root '/' does not contain the scanning root ...", drops every target, prints
`{"results": [], "paths": {"scanned": []}}` and exits 0 - indistinguishable from "no findings". So this runner checks
what semgrep says it scanned: every target must be listed in `paths.scanned`, otherwise the run is an error.
It passes the directory that holds the targets as the project root instead.

Target parse problems (snippets are rarely whole programs) come back as `warn`-level errors and are normal; any
`error`-level error is a failure, except rule parse errors of rules listed in `tolerated_rule_errors`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SemgrepError(RuntimeError):
    """Semgrep could not be run, crashed, timed out, or did not scan what it was given."""


@dataclass(frozen=True)
class SemgrepRun:
    """Raw semgrep results per target (as given on the command line), plus what was tolerated."""

    results: dict[str, list[dict[str, Any]]]
    skipped_rules: tuple[str, ...]
    semgrep_version: str
    elapsed_ms: float


async def run_semgrep(
    command: Sequence[str],
    config: Path | Sequence[Path],
    project_root: Path,
    targets: Sequence[Path],
    *,
    timeout_s: float,
    tolerated_rule_errors: Collection[str] = (),
) -> SemgrepRun:
    """One semgrep process for all `targets` under `project_root`, with every rule file of `config` (Code Shield's
    and the project's: one process start, one parse of each target). `command` ends with `--config`."""
    if not targets:
        raise ValueError("run_semgrep needs at least one target")
    configs = [config] if isinstance(config, Path) else list(config)
    if not configs:
        raise ValueError("run_semgrep needs at least one rule config")
    config_args = [str(configs[0])] + [arg for extra in configs[1:] for arg in ("--config", str(extra))]
    argv = [*command, *config_args, "--project-root", str(project_root), *map(str, targets)]
    started = time.perf_counter()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            cwd=project_root,  # semgrep prefixes rule ids with the config's path when it lies under the cwd
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.DEVNULL,
        )
    except OSError as exc:
        raise SemgrepError(f"cannot start semgrep ({argv[0]}): {exc}") from exc
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise SemgrepError(f"semgrep did not finish within {timeout_s:g} s") from None
    except asyncio.CancelledError:
        process.kill()
        await process.wait()
        raise
    elapsed_ms = (time.perf_counter() - started) * 1000
    output = parse_semgrep_output(stdout, stderr, process.returncode)
    skipped = check_semgrep_output(output, targets, tolerated_rule_errors)
    by_target: dict[str, list[dict[str, Any]]] = {str(t): [] for t in targets}
    for result in output.get("results", []):
        by_target.setdefault(str(result.get("path")), []).append(result)
    unexpected = set(by_target) - {str(t) for t in targets}
    if unexpected:
        raise SemgrepError(f"semgrep reported results for paths it was not given: {sorted(unexpected)}")
    return SemgrepRun(by_target, skipped, str(output.get("version", "?")), elapsed_ms)


def parse_semgrep_output(stdout: bytes, stderr: bytes, returncode: int | None) -> dict[str, Any]:
    """The JSON document semgrep printed; anything else (crash, signal, garbage) is a SemgrepError."""
    text = stdout.decode("utf-8", errors="replace").strip()
    try:
        output = json.loads(text) if text else None
    except json.JSONDecodeError:
        output = None
    if not isinstance(output, dict) or not isinstance(output.get("results"), list):
        detail = (stderr.decode("utf-8", errors="replace").strip() or text)[-500:]
        raise SemgrepError(f"semgrep exited with status {returncode} without a JSON report: {detail or '(no output)'}")
    # 0: ran; 1: findings with --error; 2: errors we inspect below. Anything else (signals, 3+) is a failure.
    if returncode not in (0, 1, 2):
        raise SemgrepError(f"semgrep exited with status {returncode}")
    return output


def check_semgrep_output(
    output: dict[str, Any], targets: Sequence[Path], tolerated_rule_errors: Collection[str] = ()
) -> tuple[str, ...]:
    """Raise unless every target was scanned and no unexpected error occurred; return the tolerated broken rules."""
    scanned = set(output.get("paths", {}).get("scanned", []))
    missing = [str(t) for t in targets if str(t) not in scanned]
    if missing:
        raise SemgrepError(
            f"semgrep did not scan {len(missing)} of {len(targets)} file(s) (e.g. {missing[0]}); "
            "its findings cannot be trusted"
        )
    skipped: list[str] = []
    for error in output.get("errors", []):
        if error.get("level") != "error":
            continue  # warn-level: the target did not fully parse; semgrep still matched what it could
        rule_id = error.get("rule_id")
        if error.get("type") == "Rule parse error" and rule_id in tolerated_rule_errors:
            skipped.append(str(rule_id))
            continue
        message = str(error.get("message", "")).strip().splitlines()
        raise SemgrepError(f"semgrep error ({error.get('type')}): {message[0] if message else 'no message'}")
    return tuple(sorted(set(skipped)))
