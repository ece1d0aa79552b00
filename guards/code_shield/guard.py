"""The Code Shield guard: scan code for insecure patterns, fail closed, and map the result to a decision.

- Code comes from a tool call (code_interpreter is Python) or from fenced blocks in model output (code_fences).
- The scan is Code Shield's (codeshield_adapter): regex layer, then semgrep where its prescan says so; with
  `project_rules` (the policy's per-stage switch, on for the `code` stage by default) the project's own semgrep rules
  (guards/code_shield/rules: shell calls, ctypes, unpickling, eval/exec and names built at run time) run in the same
  process.
- A canary runs before the first scan: known-insecure code that only each layer catches must produce a finding from
  that layer. If not, Code Shield is broken and every scan of this guard is a guard error.
- Any failure (missing package, semgrep crash, timeout, unscanned files) is a result with `error` set - never secure.
- Python code that Python would not read as UTF-8 (a `coding:` cookie, a foreign BOM: source_encoding) is refused
  before any scan: what runs would not be what was scanned. A refusal blocks whatever the policy's actions say.

Treatment is Code Shield's rule (`CodeShield.scan_code`): any finding of severity error -> block, any other finding
-> warn, none -> ignore. One difference, on purpose: codeshield compares semgrep's upper-case severities ("ERROR")
with its lower-case enum and so never blocks on a semgrep finding; here severities are normalised first, so its
Java semgrep rules of severity ERROR do recommend block. What a treatment leads to is the policy's `actions`
(`decide`); Python rules are all warnings, so only the policy can make Python findings stop code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from guards.code_shield.adapter import analyze_many
from guards.code_shield.fences import CodeBlock, extract_code_blocks, normalize_language
from guards.code_shield.source_encoding import python_source_encoding_problem
from guards.policy.guards_config import CodeShieldConfig
from guards.policy.registry import CODE, CODE_SHIELD
from guards.verdict import DECISIONS, Decision, Verdict

Treatment = Literal["block", "warn", "ignore"]
GUARD_NAME = CODE_SHIELD
DEFAULT_ACTIONS: Mapping[str, str] = {"block": "block", "warn": "warn", "ignore": "allow"}  # the policy's defaults
CODE_TOOLS: Mapping[str, str] = {"code_interpreter": "python"}  # tool name -> language of its `code` argument
# Code Shield scans these when the language is unknown (codeshield's get_supported_languages()).
UNKNOWN_LANGUAGE_SCAN = ("c", "cpp", "csharp", "java", "javascript", "php", "python", "rust")
# Canary: (code, analyzer that must find it, pattern id it must report). Python, as code_interpreter runs Python.
CANARIES: tuple[tuple[str, str, str], ...] = (
    ("import hashlib\ndigest = hashlib.md5(data).hexdigest()\n", "regex", "insecure-md5-hash-usage"),
    ("import pickle\nobj = pickle.loads(untrusted_bytes)\n", "semgrep", "unsafe-pickle-use"),
    ("import hashlib\nh = getattr(hashlib, 'md' + '5')\n", "semgrep", "ga-computed-name"),  # the project's rules
)
_SEVERITIES = {"error": "error", "warning": "warning", "advice": "advice", "info": "advice", "disabled": "disabled"}


@dataclass(frozen=True)
class Finding:
    """One Code Shield issue. `line` counts in the scanned text (for model output: the whole answer)."""

    analyzer: str
    pattern_id: str | None
    rule: str | None
    description: str
    severity: str
    cwe_id: str
    line: int | None
    language: str

    @property
    def treatment(self) -> Treatment:
        return "block" if self.severity == "error" else "warn"

    def to_dict(self) -> dict[str, Any]:
        return {
            "analyzer": self.analyzer,
            "pattern_id": self.pattern_id,
            "rule": self.rule,
            "description": self.description,
            "severity": self.severity,
            "cwe_id": self.cwe_id,
            "line": self.line,
            "language": self.language,
            "treatment": self.treatment,
        }


@dataclass(frozen=True)
class CodeShieldResult:
    """A scan's outcome. With `error` set the scan failed and `treatment` means nothing: it must block."""

    treatment: Treatment
    findings: tuple[Finding, ...] = ()
    languages: tuple[str, ...] = ()
    latency_ms: float = 0.0
    error: str | None = None
    refusal: str | None = None  # the code cannot be scanned faithfully (e.g. a non-UTF-8 source encoding): block

    def to_dict(self) -> dict[str, Any]:
        return {
            "treatment": self.treatment,
            "findings": [f.to_dict() for f in self.findings],
            "languages": list(self.languages),
            "latency_ms": self.latency_ms,
            "error": self.error,
            "refusal": self.refusal,
        }


def treatment_of(findings: Sequence[Finding]) -> Treatment:
    if any(f.treatment == "block" for f in findings):
        return "block"
    return "warn" if findings else "ignore"


def decide(result: CodeShieldResult, actions: Mapping[str, str] | Any, on_error: str = "block") -> Decision:
    """The policy's action for a result: `actions[treatment]`, or `on_error` (block unless written) for failures.

    `actions` is a mapping or the policy's `code_shield.actions` model (attributes block / warn / ignore).
    """
    if result.refusal is not None:
        return "block"  # not a finding the policy weighs: the scan would not be of the code that runs
    if result.error is not None:
        return "allow" if on_error == "allow" else "block"
    action = actions.get(result.treatment) if isinstance(actions, Mapping) else getattr(actions, result.treatment, None)
    if action not in DECISIONS:
        return "block"  # a missing or unknown action must not let code through
    return action


def to_verdict(
    result: CodeShieldResult, *, stage: str, actions: Mapping[str, str] | Any, on_error: str = "block"
) -> Verdict:
    reasons = tuple(
        f"{f.language}:{f.line}: {f.pattern_id or f.rule} ({f.severity}, {f.cwe_id}): {f.description.strip()}"
        for f in result.findings
    )
    if result.refusal is not None and not result.findings:
        reasons = (result.refusal,)
    return Verdict(
        stage=stage,
        guard=GUARD_NAME,
        decision=decide(result, actions, on_error),
        score=None,
        categories=tuple(sorted({f.cwe_id for f in result.findings if f.cwe_id})),
        reasons=reasons,
        latency_ms=result.latency_ms,
        error=result.error,
    )


def _finding(issue: Any, language: str, line_offset: int) -> Finding:
    severity = _SEVERITIES.get(str(getattr(issue.severity, "value", issue.severity)).lower())
    if severity is None:
        raise ValueError(f"Code Shield reported an unknown severity {issue.severity!r}")
    return Finding(
        analyzer=str(getattr(issue.analyzer, "value", issue.analyzer)),
        pattern_id=issue.pattern_id,
        rule=issue.rule,
        description=str(issue.description or ""),
        severity=severity,
        cwe_id=str(issue.cwe_id or ""),
        line=None if issue.line is None else issue.line + line_offset,
        language=language,
    )


@dataclass
class CodeShieldGuard:
    """Code Shield with a canary. `languages`: the policy's list (None = all Code Shield knows)."""

    languages: Collection[str] | None = None
    timeout_s: float = 60.0
    usecase: str = "codeshield"
    semgrep_command: tuple[str, ...] | None = None  # None: codeshield's own (tests inject broken ones)
    actions: Mapping[str, str] | Any = field(default_factory=lambda: dict(DEFAULT_ACTIONS))
    on_error: str = "block"
    name: ClassVar[str] = GUARD_NAME
    _canary_error: str | None = field(default=None, init=False, repr=False)
    _canary_done: bool = field(default=False, init=False, repr=False)

    @classmethod
    def from_policy(cls, config: CodeShieldConfig) -> CodeShieldGuard:
        """From the policy's `code_shield` section (guards.policy CodeShieldConfig)."""
        return cls(
            languages=config.languages,
            timeout_s=float(config.timeout_s),
            actions=config.actions,
            on_error=config.on_error,
        )

    async def start(self) -> str | None:
        """Run the canary once (again only via `recheck`); return its error, None when Code Shield works."""
        if not self._canary_done:
            self._canary_error = await self._run_canary()
            self._canary_done = True
        return self._canary_error

    async def recheck(self) -> str | None:
        self._canary_done = False
        return await self.start()

    async def _run_canary(self) -> str | None:
        try:
            codes = [code for code, _, _ in CANARIES]
            found = await asyncio.wait_for(
                analyze_many(
                    "python",
                    codes,
                    usecase=self.usecase,
                    timeout_s=self.timeout_s,
                    semgrep_command=self.semgrep_command,
                    project_rules=True,
                ),
                self.timeout_s,
            )
        except Exception as exc:
            return f"Code Shield canary failed to run: {self._describe(exc)}"
        for (_, analyzer, pattern_id), issues in zip(CANARIES, found, strict=True):
            if not any(str(i.analyzer) == analyzer and i.pattern_id == pattern_id for i in issues):
                return (
                    f"Code Shield canary: its {analyzer} layer did not report {pattern_id} on known-insecure code, "
                    "so Code Shield is not working; every scan is blocked"
                )
        return None

    def scan_languages(self, language: str | None) -> tuple[str, ...]:
        """Languages to scan code of this (possibly unknown) language with, per the policy's list."""
        allowed = None if self.languages is None else set(self.languages)
        if language is None:
            return tuple(lang for lang in UNKNOWN_LANGUAGE_SCAN if allowed is None or lang in allowed)
        return (language,) if allowed is None or language in allowed else ()

    async def scan_code(self, code: str, language: str | None, *, project_rules: bool = False) -> CodeShieldResult:
        """Scan one piece of code; `language` as a tool or fence names it (None or unknown: see scan_languages)."""
        block = CodeBlock(language or "", normalize_language(language), code, 1)
        return await self._scan([block], project_rules=project_rules)

    async def scan_text(self, text: str, *, project_rules: bool = False) -> CodeShieldResult:
        """Scan every fenced code block of model output; text without fences has nothing to scan."""
        return await self._scan(extract_code_blocks(text), project_rules=project_rules)

    async def scan_tool_call(
        self, name: str, arguments: Mapping[str, Any], *, project_rules: bool = True
    ) -> CodeShieldResult | None:
        """Scan the code a code tool would run; None for tools that run no code."""
        language = CODE_TOOLS.get(name)
        if language is None:
            return None
        code = arguments.get("code")
        if not isinstance(code, str):
            return CodeShieldResult("ignore", error=f"{name} call has no string `code` argument to scan")
        return await self.scan_code(code, language, project_rules=project_rules)

    async def check(self, item: Any) -> Verdict:
        """The pipeline's GuardRunner call: `item.language` None means fenced blocks in `item.text`. The project's
        rules run on the `code` stage (code about to run), as the policy's default does."""
        rules = item.stage == CODE
        if item.language is None:
            result = await self.scan_text(item.text, project_rules=rules)
        else:
            result = await self.scan_code(item.text, item.language, project_rules=rules)
        return to_verdict(result, stage=item.stage, actions=self.actions, on_error=self.on_error)

    async def _scan(self, blocks: Sequence[CodeBlock], *, project_rules: bool = False) -> CodeShieldResult:
        started = time.perf_counter()
        languages: tuple[str, ...] = ()
        refused = _encoding_refusal(blocks)
        if refused is not None:
            return CodeShieldResult("block", (refused,), ("python",), _ms(started), refusal=refused.description)
        try:
            canary_error = await self.start()
            if canary_error is not None:
                raise RuntimeError(canary_error)
            groups: dict[str, list[CodeBlock]] = {}
            for block in blocks:
                for language in self.scan_languages(block.language):
                    groups.setdefault(language, []).append(block)
            languages = tuple(groups)
            findings = await asyncio.wait_for(self._scan_groups(groups, project_rules), self.timeout_s)
        except Exception as exc:
            return CodeShieldResult("ignore", (), languages, _ms(started), self._describe(exc))
        return CodeShieldResult(treatment_of(findings), tuple(findings), languages, _ms(started))

    def _describe(self, exc: Exception) -> str:
        if isinstance(exc, TimeoutError):
            return f"Code Shield did not finish within {self.timeout_s:g} s"
        return str(exc) if isinstance(exc, RuntimeError) and str(exc) else f"{type(exc).__name__}: {exc}"

    async def _scan_groups(self, groups: Mapping[str, list[CodeBlock]], project_rules: bool) -> list[Finding]:
        async def one(language: str, blocks: list[CodeBlock]) -> list[Finding]:
            found = await analyze_many(
                language,
                [b.code for b in blocks],
                usecase=self.usecase,
                timeout_s=self.timeout_s,
                semgrep_command=self.semgrep_command,
                project_rules=project_rules,
            )
            return [_finding(i, language, b.line - 1) for b, issues in zip(blocks, found, strict=True) for i in issues]

        per_language = await asyncio.gather(*(one(lang, blocks) for lang, blocks in groups.items()))
        return [finding for findings in per_language for finding in findings]


def _encoding_refusal(blocks: Sequence[CodeBlock]) -> Finding | None:
    """The first Python (or unknown-language) block whose source encoding is not UTF-8, as a blocking finding."""
    for block in blocks:
        if block.language not in (None, "python"):
            continue
        problem = python_source_encoding_problem(block.code)
        if problem is not None:
            return Finding("source_encoding", "non-utf8-source-encoding", None, problem, "error", "CWE-172",
                           block.line, "python")
    return None


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
