"""An explicit adapter over `codeshield` 1.0.1's insecure code detector, with its semgrep layer working.

What is Code Shield's and used as is: its rules (regex YAML and the generated semgrep configs), its regex analyzer
(`_regex_analyze`), its semgrep prescan (`_is_semgrep_scan_recommended`), its semgrep command (`oss.SEMGREP_COMMAND`),
its JSON-to-`Issue` parser and its filter of findings outside the generated code. What is ours: the orchestration of
`insecure_code_detector.analyze` (regex first; in the CODESHIELD use case a regex hit returns early, otherwise the
prescan decides whether semgrep runs), with two changes:
- semgrep gets the temporary directory holding the code as `--project-root`, not `/` (with `/` it scans nothing);
- many snippets of one language go to ONE semgrep process, and its report is checked (see semgrep_runner);
- optionally the project's own rules (guards/code_shield/rules, see project_rules) run in that same process, on
  every snippet that could match them, whatever Code Shield's fast mode decided (a regex hit does not skip them);
- Python, the language code runs in, is scanned by a warm semgrep server (semgrep_server) with Code Shield's and the
  project's rules loaded once; a server that fails in any way is replaced by the one-process scan above.

The private functions are checked to exist and the package version to be the one verified here, so an upgrade fails
loudly (guard error) instead of silently changing behaviour.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from guards.code_shield import semgrep_server
from guards.code_shield.project_rules import is_project_rule, may_match, rules_file
from guards.code_shield.semgrep_runner import SemgrepError, run_semgrep

VERIFIED_CODESHIELD_VERSIONS = ("1.0.1",)
WARM_LANGUAGES = frozenset({"python"})  # the language code runs in; others start a semgrep process per scan
WARM_ENV = "GUARDS_WARM_SEMGREP"  # "0" turns the warm server off (every scan starts a semgrep process)
# Checked once per warm server: a Code Shield semgrep rule and a project rule must both report.
WARM_CANARY = ("import pickle\nobj = pickle.loads(untrusted_bytes)\nimport hashlib\nh = getattr(hashlib, 'md' + '5')\n",
               ("unsafe-pickle-use", "ga-computed-name"))
LOG = logging.getLogger(__name__)
# Rules of Code Shield's generated configs that this semgrep cannot parse ("Invalid pattern for Java"), so it skips
# them and reports a rule parse error. The rest of the config still runs; any other rule parse error is a failure.
KNOWN_UNPARSEABLE_RULES: dict[str, frozenset[str]] = {"java": frozenset({"ssrf_insecure_patterns"})}
_REQUIRED = ("_regex_analyze", "_is_semgrep_scan_recommended", "_parse_semgrep_issues",
             "_filter_issues_in_generated_code", "CodeContext", "LANGUAGE_ANALYZER_MAP")


class CodeShieldUnavailable(RuntimeError):
    """codeshield (or semgrep) is missing, of an unverified version, or its internals changed."""


@dataclass(frozen=True)
class _ICD:
    """The pieces of codeshield this adapter uses, imported once."""

    icd: ModuleType
    oss: ModuleType
    Language: Any
    UseCase: Any
    Analyzer: Any
    version: str


_loaded: _ICD | None = None


def load_codeshield() -> _ICD:
    """Import codeshield lazily (it is heavy and creates semgrep's `osemgrep` link on import) and check it."""
    global _loaded
    if _loaded is not None:
        return _loaded
    try:
        version = importlib.metadata.version("codeshield")
    except importlib.metadata.PackageNotFoundError as exc:
        raise CodeShieldUnavailable("the codeshield package is not installed (pip install codeshield)") from exc
    if version not in VERIFIED_CODESHIELD_VERSIONS:
        raise CodeShieldUnavailable(
            f"codeshield {version} is installed but this adapter was verified with "
            f"{', '.join(VERIFIED_CODESHIELD_VERSIONS)} only; check guards/code_shield/adapter.py against it"
        )
    try:
        from codeshield.insecure_code_detector import insecure_code_detector as icd
        from codeshield.insecure_code_detector import oss
        from codeshield.insecure_code_detector.analyzers import Analyzer
        from codeshield.insecure_code_detector.languages import Language
        from codeshield.insecure_code_detector.usecases import UseCase
    except Exception as exc:  # its import runs semgrep discovery and may raise anything
        raise CodeShieldUnavailable(f"cannot import codeshield's insecure code detector: {exc}") from exc
    missing = [name for name in _REQUIRED if not hasattr(icd, name)]
    if missing:
        raise CodeShieldUnavailable(f"codeshield's insecure_code_detector lacks {missing}; the adapter needs updating")
    _loaded = _ICD(icd, oss, Language, UseCase, Analyzer, version)
    return _loaded


def semgrep_config(cs: _ICD, language: Any, usecase: Any) -> Path:
    """The rule config codeshield itself would pass for this language and use case."""
    generated = cs.oss.SEMGREP_RULE_REPO_PATH / "_generated_" / f"{language.value}_{usecase.value}.json"
    return generated if generated.exists() else cs.oss.SEMGREP_RULE_REPO_PATH / language.value


async def analyze_many(
    language: str,
    codes: Sequence[str],
    *,
    usecase: str = "codeshield",
    timeout_s: float = 60.0,
    semgrep_command: Sequence[str] | None = None,
    project_rules: bool = False,
) -> list[list[Any]]:
    """Code Shield's `analyze(language, code, usecase=...)` for each code, with at most one semgrep process.

    Returns codeshield `Issue` objects per code, regex findings first. Raises CodeShieldUnavailable or SemgrepError;
    it never turns a failure into "no findings". `semgrep_command` (ending in `--config`) replaces codeshield's.
    `project_rules`: also run the project's rules for this language (ids `ga-...`) in the same process.
    """
    cs = load_codeshield()
    lang = cs.Language(language)
    case = cs.UseCase(usecase)
    analyzers = cs.icd.LANGUAGE_ANALYZER_MAP.get(lang, [])
    ours = rules_file(language) if project_rules else None
    results: list[list[Any]] = [[] for _ in codes]
    codeshield_semgrep: set[int] = set()
    our_semgrep: set[int] = {i for i, code in enumerate(codes) if ours is not None and may_match(code, ours)}
    for index, code in enumerate(codes):
        context = cs.icd.CodeContext(lang, None, None, Path(), False)
        if cs.oss.ENABLE_REGEX_ANALYZER and cs.Analyzer.REGEX in analyzers:
            results[index] += cs.icd._regex_analyze(code, context, case)
        if case == cs.UseCase.CODESHIELD and results[index]:
            continue  # Code Shield's fast mode: any regex finding is enough
        if not (cs.oss.ENABLE_SEMGREP and cs.Analyzer.SEMGREP in analyzers):
            continue
        if case == cs.UseCase.CODESHIELD and not cs.icd._is_semgrep_scan_recommended(code, context, case):
            continue
        codeshield_semgrep.add(index)
    scanned = sorted(codeshield_semgrep | our_semgrep)
    if scanned:
        targets = [codes[i] for i in scanned]
        found = None
        if semgrep_command is None and language in WARM_LANGUAGES and os.environ.get(WARM_ENV, "1") != "0":
            found = await _semgrep_warm(cs, lang, semgrep_config(cs, lang, case), targets, timeout_s)
        if found is None:
            command = list(semgrep_command) if semgrep_command is not None else list(cs.oss.SEMGREP_COMMAND)
            configs = [semgrep_config(cs, lang, case)] if codeshield_semgrep else []
            configs += [ours] if our_semgrep and ours is not None else []
            found = await _semgrep_many(cs, command, lang, configs, targets, timeout_s)
        for index, issues in zip(scanned, found, strict=True):
            # Code Shield's own findings only where Code Shield itself would have run semgrep (its exact behaviour).
            theirs = [i for i in issues if not _is_ours(i) and index in codeshield_semgrep]
            results[index] += theirs
            mine = [i for i in issues if _is_ours(i) and ours is not None]
            results[index] += [i for i in mine if not _already_found(i, results[index])]
    return results


async def _semgrep_warm(cs: _ICD, language: Any, config: Path, codes: list[str], timeout_s: float) -> list | None:
    """The warm server's issues per code (its rules: Code Shield's and the project's); None if it failed."""
    ours = rules_file(language.value)
    configs = [config, *([ours] if ours is not None else [])]
    extension = cs.icd.languages.get_file_extension(language)
    binary = str(cs.oss.SEMGREP_COMMAND[0])

    def verify(server: semgrep_server.SemgrepServer) -> None:
        # The marker proves a file was scanned, not that Code Shield's rules loaded: check them once at start.
        code, wanted = WARM_CANARY
        found = {r["check_id"] for r in server.scan([code], extension, timeout_s)[0]}
        missing = {w for w in wanted if w not in found and (ours is not None or not w.startswith("ga-"))}
        if missing:
            raise SemgrepError(f"the semgrep server's canary scan missed {sorted(missing)}")

    def work() -> list[list[dict[str, Any]]]:
        server = semgrep_server.server_for(binary, configs, language.value, verify=verify)
        try:
            return server.scan(codes, extension, timeout_s)
        except BaseException:
            semgrep_server.discard(server)
            raise

    try:
        raw = await asyncio.to_thread(work)
    except (SemgrepError, OSError, ValueError) as exc:
        LOG.warning("warm semgrep failed (%s); scanning with a fresh semgrep process", exc)
        return None
    return [_issues(cs, results, code) for results, code in zip(raw, codes, strict=True)]


def _is_ours(issue: Any) -> bool:
    return is_project_rule(issue.pattern_id)


def _already_found(ours: Any, codeshield: list[Any]) -> bool:
    """A project warning on a line Code Shield already flagged: it would change neither treatment nor line."""
    severity = str(getattr(ours.severity, "value", ours.severity)).lower()
    return severity != "error" and any(i.line == ours.line and not _is_ours(i) for i in codeshield)


async def _semgrep_many(
    cs: _ICD, command: list[str], language: Any, configs: list[Path], codes: list[str], timeout_s: float
) -> list[list[Any]]:
    extension = cs.icd.languages.get_file_extension(language)
    with tempfile.TemporaryDirectory(prefix="codeshield-") as tmp:
        root = Path(tmp).resolve()
        targets = [root / f"snippet_{i}{extension}" for i in range(len(codes))]
        # Writing files is blocking I/O but tiny; a thread keeps the event loop free for big batches.
        await asyncio.to_thread(_write_all, targets, codes)
        run = await run_semgrep(
            command,
            configs,
            root,
            targets,
            timeout_s=timeout_s,
            tolerated_rule_errors=KNOWN_UNPARSEABLE_RULES.get(language.value, frozenset()),
        )
    return [_issues(cs, run.results[str(target)], code) for target, code in zip(targets, codes, strict=True)]


def _issues(cs: _ICD, raw: list[dict[str, Any]], code: str) -> list[Any]:
    """Code Shield's `Issue`s from semgrep's JSON results for one code, through Code Shield's own parser."""
    issues = cs.icd._parse_semgrep_issues(json.dumps({"results": raw}))
    if len(issues) != len(raw):
        raise SemgrepError(f"codeshield parsed {len(issues)} of {len(raw)} semgrep results")
    for issue in issues:
        issue.path = None  # the temporary file is gone; its name means nothing to a reader
    return cs.icd._filter_issues_in_generated_code(issues, code, None)


def _write_all(targets: list[Path], codes: list[str]) -> None:
    for target, code in zip(targets, codes, strict=True):
        target.write_text(code, encoding="utf-8")
