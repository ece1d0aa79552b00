"""The sandbox's limits: one frozen value, filled from the policy's `tools.sandbox` section."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from guards.policy.tools_config import SandboxConfig

Isolation = Literal["required", "best_effort"]

# What `limits_hit` may name.
LIMIT_NAMES: tuple[str, ...] = ("cpu", "wall", "memory", "processes", "file_size", "output")


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one sandboxed run. Defaults equal the policy's defaults (docs/POLICY_SPEC.md)."""

    isolation: Isolation = "required"
    cpu_seconds: int = 5  # RLIMIT_CPU per process (SIGXCPU, then SIGKILL one second later); the run: one core
    wall_seconds: float = 10.0  # wall clock for the whole run; the process tree is killed after it
    memory_mb: int = 512  # the whole run (its cgroup, without swap) and RLIMIT_AS per process
    max_processes: int = 32  # the run's cgroup pids.max and RLIMIT_NPROC of its uid (bwrap's helpers included)
    max_file_mb: int = 16  # RLIMIT_FSIZE, and the size of each private tmpfs (/work, /tmp)
    max_output_chars: int = 10000  # per stream while reading; the run is killed when exceeded

    def __post_init__(self) -> None:
        if self.isolation not in ("required", "best_effort"):
            raise ValueError(f"isolation must be 'required' or 'best_effort', not {self.isolation!r}")
        for name in ("cpu_seconds", "memory_mb", "max_processes", "max_file_mb", "max_output_chars"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        if not self.wall_seconds > 0:
            raise ValueError(f"wall_seconds must be positive, not {self.wall_seconds!r}")

    @classmethod
    def from_policy(cls, sandbox: SandboxConfig | Mapping[str, Any]) -> SandboxLimits:
        """Build from the policy's `tools.sandbox` section (or a plain mapping of some of its fields)."""
        values = sandbox if isinstance(sandbox, Mapping) else sandbox.model_dump()
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})
