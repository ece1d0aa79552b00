"""Whole-run limits: each run in a fresh cgroup (memory without swap, pids, CPU bandwidth), removed afterwards.

This machine mounts cgroup v1 (memory, pids and cpu hierarchies), so the end-to-end tests here use v1; the v2 code
path is checked on a directory shaped like a delegated cgroup2 mount (path logic and the files written), since a
real unified hierarchy with these controllers is not available here.
"""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.tools.conftest import processes_of
from tools.code_interpreter import CodeInterpreter
from tools.sandbox import IsolationUnavailableError, SandboxLimits, cgroups, run_python
from tools.sandbox.cgroups import CFS_PERIOD_US, CgroupSpec, RunCgroup, discover, host_spec

pytestmark = pytest.mark.usefixtures("bwrap_ready")

MIB = 1024 * 1024
# The reproduction, scaled to 8 children so that a regression cannot take the shared machine's memory:
# each child writes 440 MB and then holds it. Per-process RLIMIT_AS (512 MB) allows every one of them.
FORKING_ALLOCATOR = """
import os, time
r, w = os.pipe()
for i in range({children}):
    if os.fork() == 0:
        block = b'x' * (440 * 1024 * 1024)
        os.write(w, b'.')
        time.sleep(60)
        os._exit(0)
os.close(w)
held, deadline = 0, time.time() + 10
while held < {children} and time.time() < deadline:
    held += len(os.read(r, 64))
print('children holding 440 MB:', held)
"""


def _run_dirs(spec: CgroupSpec) -> list[Path]:
    return [path for h in spec.hierarchies for path in h.parent.glob(f"sandbox-{os.getpid()}-*")]


@pytest.fixture(scope="module")
def spec() -> CgroupSpec:
    found = host_spec()
    if not found.usable:
        pytest.fail(f"no writable cgroup here: {found.describe()}")
    return found


async def test_forking_allocator_stays_under_the_memory_limit_as_a_whole(spec: CgroupSpec) -> None:
    limits = SandboxLimits(memory_mb=512, max_processes=40, wall_seconds=20.0, cpu_seconds=5, max_file_mb=1)
    result = await run_python(FORKING_ALLOCATOR.format(children=8), limits)
    assert result.cgroup == spec.version  # "v1" on the machines this was written on
    assert result.limits_hit == ("memory",), (result.stdout, result.stderr)
    assert result.exit_code is None and result.signal is not None  # the whole run was ended
    assert result.memory_peak_mb is not None and 440 < result.memory_peak_mb <= 512
    assert processes_of(result.uid) == []
    assert _run_dirs(spec) == []  # the run's cgroups were removed


async def test_each_run_gets_its_own_cgroup_with_the_limits_and_loses_it_after(spec: CgroupSpec) -> None:
    limits = SandboxLimits(memory_mb=300, max_processes=20, wall_seconds=10.0)
    task = asyncio.ensure_future(run_python("import time\ntime.sleep(1.5)\nprint('done')", limits))
    dirs: list[Path] = []
    for _ in range(200):
        await asyncio.sleep(0.02)
        dirs = _run_dirs(spec)
        if len(dirs) == len(spec.hierarchies) and all((d / "cgroup.procs").read_text().split() for d in dirs):
            break
    assert len(dirs) == len(spec.hierarchies), "the run's cgroups were not found while it ran"
    values = {f.name: f.read_text().split()[0] for d in dirs for f in d.iterdir()
              if f.name in ("memory.limit_in_bytes", "memory.max", "memory.memsw.limit_in_bytes", "pids.max",
                            "cpu.cfs_quota_us", "cpu.max")}
    assert values["pids.max"] == "20"
    assert values.get("memory.limit_in_bytes", values.get("memory.max")) == str(300 * MIB)
    if "memory.memsw.limit_in_bytes" in values:  # v1 with swap accounting: memory + swap capped at the same value
        assert values["memory.memsw.limit_in_bytes"] == str(300 * MIB)
    assert values.get("cpu.cfs_quota_us", values.get("cpu.max")) == str(CFS_PERIOD_US)
    # All of the run's processes (setpriv/bwrap and the sandboxed Python) are in every one of its cgroups.
    members = [set((d / "cgroup.procs").read_text().split()) for d in dirs]
    assert all(m == members[0] and m for m in members)
    result = await task
    assert result.ok and result.stdout == "done\n" and result.cgroup == spec.version
    assert _run_dirs(spec) == []


async def test_cpu_bandwidth_is_one_core_for_the_whole_run(spec: CgroupSpec) -> None:
    # Two processes spin for one second of wall time: together they get at most about one CPU second.
    code = (
        "import os, time\n"
        "pid = os.fork()\n"
        "end = time.monotonic() + 1.0\n"
        "while time.monotonic() < end: pass\n"
        "if pid == 0: os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "t = os.times(); print(round(t.user + t.system + t.children_user + t.children_system, 2))\n"
    )
    result = await run_python(code, SandboxLimits(cpu_seconds=5, wall_seconds=10.0))
    assert result.ok, result.stderr
    assert float(result.stdout) <= 1.3


async def test_required_isolation_refuses_without_a_writable_cgroup(tmp_path: Path) -> None:
    (tmp_path / "mountinfo").write_text("")  # no cgroup hierarchy at all
    (tmp_path / "cgroup").write_text("0::/\n")
    nothing = discover(str(tmp_path / "mountinfo"), str(tmp_path / "cgroup"))
    assert not nothing.usable and set(nothing.missing) == {"memory", "pids", "cpu"}
    with pytest.raises(IsolationUnavailableError, match="no writable cgroup can limit the run as a whole"):
        await run_python("print(1)", SandboxLimits(), cgroups=nothing)
    refused = await CodeInterpreter(SandboxLimits(), cgroups=nothing).run({"code": "print(1)"})
    assert refused.refused and "isolation: best_effort" in (refused.error or "")
    # best_effort runs with the per-process rlimits and says what is not enforced.
    result = await run_python("print(1)", SandboxLimits(isolation="best_effort"), cgroups=nothing)
    assert result.ok and result.cgroup is None and result.memory_peak_mb is None
    assert "NOT enforced: memory" in result.isolation_detail and "pids" in result.isolation_detail


def test_a_real_cgroup2_directory_holds_a_process_until_cgroup_kill_and_is_removed() -> None:
    """v2's own mechanics on a real cgroup2 mount (here one without controllers): join, cgroup.kill, rmdir."""
    mounts = cgroups._parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    unified = next((m for m in mounts if m[0] == "cgroup2"), None)
    own_path = next((line.split(":", 2)[2] for line in Path("/proc/self/cgroup").read_text().splitlines()
                     if line.startswith("0::")), None)
    assert unified is not None and own_path is not None, "no cgroup2 mount here"
    own = cgroups._own_dir(unified[1], unified[2], own_path)
    assert own is not None and os.access(own, os.W_OK), f"cgroup2 directory {own} is not writable"
    run = RunCgroup.create(CgroupSpec((cgroups.Hierarchy(2, own, ()),)), memory_mb=64, max_processes=8)
    [(_, path)] = run.dirs
    paths = run.join_paths()
    sleeper = subprocess.Popen(["sleep", "30"], preexec_fn=lambda: cgroups.join(paths))
    try:
        assert run.pids() == [sleeper.pid]
        run.kill_all()
        assert sleeper.wait(timeout=5) == -signal.SIGKILL
    finally:
        sleeper.kill()
        sleeper.wait()
    run.remove()
    assert not path.exists() and run.dirs == []


def _fake_cgroup2(tmp_path: Path, controllers: str, delegated: str) -> tuple[str, str, Path]:
    mount = tmp_path / "cgroup2"
    own = mount / "system.slice" / "assistant.service"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text(controllers + "\n")
    (own / "cgroup.subtree_control").write_text(delegated + "\n")
    (tmp_path / "mountinfo").write_text(
        f"30 23 0:26 / {mount} rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n")
    (tmp_path / "cgroup").write_text("0::/system.slice/assistant.service\n")
    return str(tmp_path / "mountinfo"), str(tmp_path / "cgroup"), own


def test_cgroup_v2_layout_writes_the_unified_files_and_reads_oom_kills(tmp_path: Path) -> None:
    mountinfo, self_cgroup, own = _fake_cgroup2(tmp_path, "cpuset cpu io memory pids", "cpu memory pids")
    spec = discover(mountinfo, self_cgroup)
    assert spec.version == "v2" and spec.usable and spec.missing == {}
    assert [(h.version, h.parent, h.controllers) for h in spec.hierarchies] == [(2, own, ("memory", "pids", "cpu"))]
    run = RunCgroup.create(spec, memory_mb=512, max_processes=32)
    [(_, path)] = run.dirs
    assert path.parent == own and path.name.startswith(f"sandbox-{os.getpid()}-")
    written = {f.name: f.read_text() for f in path.iterdir()}
    assert written == {"memory.max": str(512 * MIB), "memory.swap.max": "0", "memory.oom.group": "1",
                       "pids.max": "32", "cpu.max": f"{CFS_PERIOD_US} {CFS_PERIOD_US}"}
    assert run.join_paths() == [os.fsencode(path / "cgroup.procs")]
    assert not run.oom_killed() and run.memory_peak_bytes() is None
    (path / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 1\n")
    (path / "memory.peak").write_text(f"{511 * MIB}\n")
    assert run.oom_killed() and run.memory_peak_bytes() == 511 * MIB
    for f in path.iterdir():  # a real cgroupfs directory is removable with its files in it; a plain one is not
        f.unlink()
    run.remove()
    assert not path.exists() and run.dirs == []


@pytest.mark.parametrize("foreign", [False, True])
def test_cgroup_v2_moves_only_our_own_processes_into_a_leaf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           foreign: bool) -> None:
    """v2 forbids enabling controllers for children of a cgroup that holds processes (EBUSY, imitated here)."""
    mountinfo, self_cgroup, own = _fake_cgroup2(tmp_path, "cpu memory pids", "")
    (own / "cgroup.procs").write_text(f"{os.getpid()}\n" + ("1\n" if foreign else ""))
    real_write, refused = cgroups._write, []

    def write(path: Path, value: str) -> None:
        if path.name == "cgroup.subtree_control" and not refused:
            refused.append(value)
            raise OSError(errno.EBUSY, "Device or resource busy")
        real_write(path, value)

    monkeypatch.setattr(cgroups, "_write", write)
    spec = discover(mountinfo, self_cgroup)
    assert refused == ["+memory +pids +cpu"]
    if foreign:  # pid 1 is not ours to move: refuse, saying what to do
        assert not spec.usable and "Delegate=yes" in spec.missing["memory"]
        assert not (own / cgroups.LEAF_NAME).exists()
    else:
        assert spec.usable and spec.hierarchies[0].parent == own
        assert (own / cgroups.LEAF_NAME / "cgroup.procs").read_text() == str(os.getpid())
        assert (own / "cgroup.subtree_control").read_text() == "+memory +pids +cpu"


def test_cgroup_v2_names_what_the_parent_does_not_delegate(tmp_path: Path) -> None:
    mountinfo, self_cgroup, _ = _fake_cgroup2(tmp_path, "cpu memory", "cpu memory")
    spec = discover(mountinfo, self_cgroup)
    assert not spec.usable and list(spec.missing) == ["pids"]
    assert "does not delegate it" in spec.missing["pids"] and "NOT enforced: pids" in spec.describe()


def test_cgroup_v1_layout_with_co_mounted_controllers(tmp_path: Path) -> None:
    base = tmp_path / "fs"
    for name in ("memory/svc", "pids/svc", "cpu,cpuacct/svc"):
        (base / name).mkdir(parents=True)
    (tmp_path / "mountinfo").write_text("".join(
        f"{30 + i} 23 0:{40 + i} / {base / name} rw - cgroup cgroup rw,{name}\n"
        for i, name in enumerate(("memory", "pids", "cpu,cpuacct"))))
    (tmp_path / "cgroup").write_text("5:memory:/svc\n4:pids:/svc\n3:cpu,cpuacct:/svc\n0::/\n")
    spec = discover(str(tmp_path / "mountinfo"), str(tmp_path / "cgroup"))
    assert spec.version == "v1" and spec.usable
    assert [(h.parent, h.controllers) for h in spec.hierarchies] == [
        (base / "memory/svc", ("memory",)), (base / "pids/svc", ("pids",)), (base / "cpu,cpuacct/svc", ("cpu",))]
