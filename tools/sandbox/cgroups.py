"""Whole-run limits: a fresh cgroup per run (memory without swap, process count, CPU bandwidth), removed afterwards.

RLIMIT_AS and RLIMIT_NPROC hold per process or per uid; a run that forks can still add its processes' memory up.
A cgroup bounds the run as a whole. Both layouts are supported, per controller (a host may mix them):
- cgroup v2 (unified): one directory per run under this process's own cgroup, with `memory.max`,
  `memory.swap.max = 0`, `memory.oom.group = 1` (an out-of-memory kill takes the whole run), `pids.max`, `cpu.max`.
  v2 forbids processes in a cgroup that hands controllers to children, so when ours holds processes we move this
  process into a leaf `assistant` child first, but only when it is alone there; otherwise we say what to do.
- cgroup v1: one directory per controller hierarchy (`memory`, `pids`, `cpu`), with `memory.limit_in_bytes`,
  `memory.memsw.limit_in_bytes` (no swap), `pids.max`, `cpu.cfs_quota_us`.
The run's first process joins them between fork and exec (its children inherit them).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import itertools
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

WANTED: tuple[str, ...] = ("memory", "pids", "cpu")
REQUIRED: tuple[str, ...] = ("memory", "pids")  # without these the run has no whole-run bound worth the name
CPU_CORES = 1  # CPU bandwidth of one run: at most one core's worth, however many processes it starts
CFS_PERIOD_US = 100_000
LEAF_NAME = "assistant"  # v2: where this process moves so that its own cgroup may delegate controllers
STALE_AFTER_S = 300  # a run cgroup this old whose creator is gone is a leftover of a killed assistant
_run_counter = itertools.count()


@dataclass(frozen=True)
class Hierarchy:
    version: Literal[1, 2]
    parent: Path  # runs' cgroups are made here
    controllers: tuple[str, ...]  # of WANTED, handled by this hierarchy


@dataclass(frozen=True)
class CgroupSpec:
    """Where this process can make run cgroups, and which wanted controllers it cannot use (with why)."""

    hierarchies: tuple[Hierarchy, ...]
    missing: dict[str, str] = field(default_factory=dict)  # controller -> reason

    @property
    def usable(self) -> bool:
        return not any(name in self.missing for name in REQUIRED)

    @property
    def version(self) -> str | None:
        versions = sorted({h.version for h in self.hierarchies})
        return "+".join(f"v{v}" for v in versions) or None

    def describe(self) -> str:
        have = [f"{c} (cgroup v{h.version})" for h in self.hierarchies for c in h.controllers]
        text = f"whole-run limits by cgroup: {', '.join(have)}" if have else "no whole-run cgroup limits"
        if self.missing:
            text += ("; NOT enforced: " + "; ".join(f"{c} ({why})" for c, why in self.missing.items())
                     + " (per-process rlimits still apply)")
        return text


def _parse_mountinfo(text: str) -> list[tuple[str, str, str, set[str]]]:
    """(fstype, mount root, mount point, super options) of each cgroup mount."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        mounts.append((tail[0], fields[3], fields[4], set(tail[2].split(","))))
    return mounts


def _own_dir(mount_root: str, mount_point: str, own_path: str) -> Path | None:
    """The directory of our own cgroup under a mount, or None when the mount does not show it."""
    root = mount_root.rstrip("/")
    if own_path != root and not own_path.startswith(root + "/"):
        return None
    return Path(mount_point) / own_path[len(root):].lstrip("/")


def _read(path: Path) -> str:
    return path.read_text()


def _write(path: Path, value: str) -> None:
    with open(path, "w") as out:
        out.write(value)


def _v2_parent(own: Path, controllers: list[str]) -> tuple[Path | None, str]:
    """Make `own` able to delegate `controllers` to children; the parent to use, or None and why not."""
    enabled = set(_read(own / "cgroup.subtree_control").split())
    todo = [c for c in controllers if c not in enabled]
    if not todo:
        return own, ""
    request = " ".join(f"+{c}" for c in todo)
    try:
        _write(own / "cgroup.subtree_control", request)
        return own, ""
    except OSError as exc:
        if exc.errno != errno.EBUSY:
            return None, f"cannot enable {request} in {own}/cgroup.subtree_control: {exc.strerror}"
    # EBUSY: our cgroup holds processes. Only when they are this process and its descendants may we move them
    # into a leaf (what a delegated service is expected to do); other processes are not ours to move.
    members = [int(pid) for pid in _read(own / "cgroup.procs").split()]
    if not all(_descends_from_us(pid) for pid in members):
        return None, (f"{own} holds other processes, so cgroup v2 cannot delegate controllers from it; start the "
                      f"assistant in a cgroup of its own (e.g. systemd-run [--user] --scope -p Delegate=yes ...)")
    try:
        leaf = own / LEAF_NAME
        leaf.mkdir(exist_ok=True)
        for pid in members:
            _write(leaf / "cgroup.procs", str(pid))
        _write(own / "cgroup.subtree_control", request)
    except OSError as exc:
        return None, f"cannot move into a leaf cgroup under {own}: {exc.strerror}"
    return own, ""


def _descends_from_us(pid: int) -> bool:
    """Whether `pid` is this process or one of its descendants (by the parent chain in /proc)."""
    me, seen = os.getpid(), 0
    while pid > 1 and seen < 64:
        if pid == me:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid, seen = int(stat.rpartition(")")[2].split()[1]), seen + 1
    return False


def discover(mountinfo: str = "/proc/self/mountinfo", self_cgroup: str = "/proc/self/cgroup") -> CgroupSpec:
    """Find, per wanted controller, a place where this process may create cgroups (nothing is created yet)."""
    try:
        mounts = _parse_mountinfo(Path(mountinfo).read_text())
        membership = [line.split(":", 2) for line in Path(self_cgroup).read_text().splitlines() if line.count(":") >= 2]
    except OSError as exc:
        return CgroupSpec((), {c: f"cannot read the cgroup layout: {exc}" for c in WANTED})
    missing: dict[str, str] = {}
    hierarchies: list[Hierarchy] = []
    v1_dirs: dict[Path, list[str]] = {}
    left: list[str] = []
    for controller in WANTED:
        mount = next((m for m in mounts if m[0] == "cgroup" and controller in m[3]), None)
        line = next((m for m in membership if controller in m[1].split(",")), None)
        if mount is None or line is None:
            left.append(controller)
            continue
        own = _own_dir(mount[1], mount[2], line[2])
        if own is None or not os.access(own, os.W_OK):
            missing[controller] = f"cgroup v1 {controller} hierarchy at {mount[2]} is not writable here"
            continue
        v1_dirs.setdefault(own, []).append(controller)
    hierarchies += [Hierarchy(1, path, tuple(names)) for path, names in v1_dirs.items()]
    if left:
        unified = next((m for m in mounts if m[0] == "cgroup2"), None)
        line = next((m for m in membership if m[0] == "0" and m[1] == ""), None)
        own = _own_dir(unified[1], unified[2], line[2]) if unified and line else None
        if own is None or unified is None:  # (own is None whenever unified is)
            missing.update({c: "no cgroup v1 or v2 hierarchy offers it" for c in left})
        else:
            try:
                available = set(_read(own / "cgroup.controllers").split())
            except OSError as exc:
                available, why = set(), f"cannot read {own}/cgroup.controllers: {exc.strerror}"
            else:
                why = f"the cgroup v2 hierarchy at {unified[2]} does not delegate it to {own}"
            missing.update({c: why for c in left if c not in available})
            usable = [c for c in left if c in available]
            if usable:
                if not os.access(own, os.W_OK):
                    missing.update({c: f"cgroup v2 {own} is not writable here" for c in usable})
                else:
                    try:
                        parent, why = _v2_parent(own, usable)
                    except OSError as exc:
                        parent, why = None, f"cannot read {own}: {exc.strerror}"
                    if parent is None:
                        missing.update({c: why for c in usable})
                    else:
                        hierarchies.append(Hierarchy(2, parent, tuple(usable)))
    return CgroupSpec(tuple(hierarchies), {c: missing[c] for c in WANTED if c in missing})


@functools.cache
def host_spec() -> CgroupSpec:
    """This machine's layout, checked by creating and removing one probe cgroup (cached per process)."""
    spec = discover()
    if not spec.hierarchies:
        return spec
    try:
        probe = RunCgroup.create(spec, memory_mb=64, max_processes=8)
    except OSError as exc:
        return CgroupSpec((), {c: f"cannot create a cgroup: {exc}" for c in WANTED})
    probe.remove()
    _remove_stale(spec)
    return spec


def _remove_stale(spec: CgroupSpec) -> None:
    """Remove empty run cgroups left by assistant processes that died mid-run (rmdir refuses populated ones)."""
    for hierarchy in spec.hierarchies:
        for path in hierarchy.parent.glob("sandbox-*-*-*"):
            pid = path.name.split("-")[1]
            with contextlib.suppress(OSError):
                if pid.isdigit() and not Path(f"/proc/{pid}").exists() \
                        and time.time() - path.stat().st_mtime > STALE_AFTER_S:
                    path.rmdir()


@dataclass
class RunCgroup:
    """One run's cgroups (one directory per hierarchy); join in the child, read results and remove afterwards."""

    spec: CgroupSpec
    dirs: list[tuple[Hierarchy, Path]]

    @classmethod
    def create(cls, spec: CgroupSpec, *, memory_mb: int, max_processes: int) -> RunCgroup:
        name = f"sandbox-{os.getpid()}-{next(_run_counter)}-{os.urandom(3).hex()}"
        made = cls(spec, [])
        try:
            for hierarchy in spec.hierarchies:
                path = hierarchy.parent / name
                path.mkdir(mode=0o755)
                made.dirs.append((hierarchy, path))
                _configure(hierarchy, path, memory_mb * 1024 * 1024, max_processes)
        except OSError:
            made.remove()
            raise
        return made

    @property
    def version(self) -> str | None:
        return self.spec.version

    def join_paths(self) -> list[bytes]:
        """The `cgroup.procs` files the run's first process writes its pid to (precomputed: used after fork)."""
        return [os.fsencode(path / "cgroup.procs") for _, path in self.dirs]

    def _memory_dir(self) -> tuple[Hierarchy, Path] | None:
        return next(((h, p) for h, p in self.dirs if "memory" in h.controllers), None)

    def oom_killed(self) -> bool:
        """Whether the kernel killed a process of this run for exceeding the memory limit."""
        found = self._memory_dir()
        if found is None:
            return False
        hierarchy, path = found
        stats_file = "memory.events" if hierarchy.version == 2 else "memory.oom_control"
        try:
            stats = dict(line.split() for line in _read(path / stats_file).splitlines() if len(line.split()) == 2)
        except OSError:
            return False
        return int(stats.get("oom_kill", "0")) > 0

    def memory_peak_bytes(self) -> int | None:
        found = self._memory_dir()
        if found is None:
            return None
        hierarchy, path = found
        try:
            return int(_read(path / ("memory.peak" if hierarchy.version == 2 else "memory.max_usage_in_bytes")))
        except (OSError, ValueError):
            return None  # memory.peak needs Linux 5.19

    def pids(self) -> list[int]:
        found: set[int] = set()
        for _, path in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(pid) for pid in _read(path / "cgroup.procs").split())
        return sorted(found)

    def kill_all(self, wait_s: float = 2.0) -> None:
        """Kill every process still in the run's cgroups and wait until they are empty."""
        deadline = time.monotonic() + wait_s
        for hierarchy, path in self.dirs:
            if hierarchy.version == 2:
                with contextlib.suppress(OSError):
                    _write(path / "cgroup.kill", "1")  # Linux 5.14+: atomic, no pid reuse race
        while (pids := self.pids()) and time.monotonic() < deadline:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def remove(self) -> None:
        """Remove the run's cgroups (retrying briefly while the kernel finishes reaping its last processes)."""
        for _, path in reversed(self.dirs):
            for _attempt in range(100):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        break
                    time.sleep(0.01)
        self.dirs = [(h, p) for h, p in self.dirs if p.exists()]


def _configure(hierarchy: Hierarchy, path: Path, memory_bytes: int, max_processes: int) -> None:
    """Write the run's limits; optional knobs (swap, group kill) are skipped where the kernel lacks them."""
    optional: list[tuple[str, str]] = []
    required: list[tuple[str, str]] = []
    if "memory" in hierarchy.controllers:
        if hierarchy.version == 2:
            required.append(("memory.max", str(memory_bytes)))
            optional += [("memory.swap.max", "0"), ("memory.oom.group", "1")]
        else:
            required.append(("memory.limit_in_bytes", str(memory_bytes)))
            optional += [("memory.memsw.limit_in_bytes", str(memory_bytes)), ("memory.swappiness", "0")]
    if "pids" in hierarchy.controllers:
        required.append(("pids.max", str(max_processes)))
    if "cpu" in hierarchy.controllers:
        quota = CPU_CORES * CFS_PERIOD_US
        if hierarchy.version == 2:
            required.append(("cpu.max", f"{quota} {CFS_PERIOD_US}"))
        else:
            required += [("cpu.cfs_period_us", str(CFS_PERIOD_US)), ("cpu.cfs_quota_us", str(quota))]
    for name, value in required:
        _write(path / name, value)
    for name, value in optional:
        with contextlib.suppress(OSError):
            _write(path / name, value)


def join(paths: list[bytes]) -> None:
    """Runs in the child between fork and exec: move this process into the run's cgroups."""
    pid = str(os.getpid()).encode()
    for path in paths:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, pid)
        finally:
            os.close(fd)
