"""The `code_interpreter` built-in tool: model-written Python, run in the sandbox, answered in Meta's format."""

from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tools.base import Tool, ToolOutput
from tools.response_format import fit_tool_response
from tools.sandbox import IsolationUnavailableError, SandboxLimits, run_python
from tools.sandbox.cgroups import CgroupSpec
from tools.sandbox.isolation import SYSTEM_PYTHON

_LIMIT_WORDS = {
    "cpu": "CPU time limit ({cpu_seconds} s)",
    "wall": "wall-clock limit ({wall_seconds:g} s)",
    "memory": "memory limit ({memory_mb} MB)",
    "processes": "process limit ({max_processes})",
    "file_size": "file size limit ({max_file_mb} MB)",
    "output": "output limit ({max_output_chars} characters)",
}


class CodeInterpreterArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(description="The Python code to run. Print what you want to see.")


def describe_limits(limits_hit: tuple[str, ...], limits: SandboxLimits) -> str:
    values = dataclasses.asdict(limits)
    return ", ".join(_LIMIT_WORDS[name].format(**values) for name in limits_hit)


class CodeInterpreter(Tool):
    """Runs Python with no network, no host files and hard resource limits (see tools/sandbox)."""

    name = "code_interpreter"
    description = "Run Python code in an isolated sandbox without network access and return its output."
    args_model = CodeInterpreterArgs
    builtin = True
    # Sandboxed: no network, nothing written outside a throw-away tmpfs, so it cannot act on the world.
    side_effects = False

    def __init__(self, limits: SandboxLimits | None = None, *, bwrap: str = "bwrap",
                 python: str = SYSTEM_PYTHON, cgroups: CgroupSpec | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self.bwrap = bwrap
        self.python = python
        self.cgroups = cgroups  # None: this machine's (tools.sandbox.cgroups.host_spec)

    async def call(self, arguments: dict[str, Any]) -> ToolOutput:
        try:
            result = await run_python(arguments["code"], self.limits, bwrap=self.bwrap, python=self.python,
                                      cgroups=self.cgroups)
        except IsolationUnavailableError as exc:
            return ToolOutput(ok=False, output=fit_tool_response(False, "", str(exc), self.limits.max_output_chars),
                              error=str(exc), refused=True)
        stderr = result.stderr
        error: str | None = None
        if result.limits_hit:
            error = f"stopped by the sandbox: {describe_limits(result.limits_hit, self.limits)}"
            stderr = f"{stderr.rstrip()}\n[sandbox] {error}".lstrip("\n")
        elif result.exit_code != 0:
            error = f"the code ended with exit status {result.exit_code}" if result.signal is None \
                else f"the code was ended by signal {result.signal}"
            if not stderr.strip():
                stderr = f"[sandbox] {error}"
        output = fit_tool_response(result.ok, result.stdout, stderr, self.limits.max_output_chars)
        return ToolOutput(ok=result.ok, output=output, error=error, limits_hit=result.limits_hit)
