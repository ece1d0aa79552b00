"""Run one piece of Python in the sandbox: limits applied, output capped while reading, the process tree killed."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import dataclasses
import os
import re
import resource
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tools.sandbox import cgroups, seccomp
from tools.sandbox.cgroups import CgroupSpec, RunCgroup
from tools.sandbox.isolation import (
    HOST_ENV,
    NOBODY,
    SYSTEM_PYTHON,
    IsolationUnavailableError,
    Mechanism,
    bwrap_argv,
    choose_mechanism,
    drop_privileges_argv,
    rlimits_argv,
    sandbox_uid,
    unshare_argv,
)
from tools.sandbox.limits import LIMIT_NAMES, SandboxLimits

CHUNK = 65536
# Python's own last words when a limit refuses a request (the process then exits normally, not by a signal).
# A program can print these too; that only makes it misreport its own limits.
_STDERR_MARKERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("memory", re.compile(r"^MemoryError\b", re.M)),
    ("processes", re.compile(r"^(BlockingIOError: \[Errno 11\]|RuntimeError: can't start new thread)", re.M)),
    ("file_size", re.compile(r"^OSError: \[Errno (27|28)\]", re.M)),
)
_MARKER_OVERLAP = 64


@dataclass(frozen=True)
class SandboxResult:
    exit_code: int | None  # the program's exit status; None when it was killed by a limit or a signal
    stdout: str  # at most max_output_chars
    stderr: str  # at most max_output_chars
    limits_hit: tuple[str, ...]  # names from limits.LIMIT_NAMES, in that order
    mechanism: str  # "bwrap" | "unshare" | "rlimits"
    isolation_detail: str
    duration_ms: float
    signal: int | None = None  # the signal that ended the program, if any
    uid: int | None = None  # the unprivileged uid it ran as (None: the caller's own)
    cgroup: str | None = None  # the cgroup version(s) that bounded the whole run ("v1", "v2"); None: none did
    memory_peak_mb: float | None = None  # the most memory the whole run held at once (from its cgroup)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.limits_hit


class _CappedText:
    """Decodes a byte stream, keeping at most `cap` characters, and scans all of it for limit markers."""

    def __init__(self, cap: int, scan: bool) -> None:
        self.cap = cap
        self.scan = scan
        self.parts: list[str] = []
        self.chars = 0
        self.exceeded = False
        self.markers: set[str] = set()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail = ""

    def feed(self, data: bytes, final: bool = False) -> None:
        text = self._decoder.decode(data, final)
        if self.scan and text:
            window = self._tail + text
            for name, pattern in _STDERR_MARKERS:
                if pattern.search(window):
                    self.markers.add(name)
            self._tail = window[-_MARKER_OVERLAP:]
        room = self.cap - self.chars
        if len(text) > room:
            self.exceeded = True
            text = text[:room]
        if text:
            self.parts.append(text)
            self.chars += len(text)

    def text(self) -> str:
        return "".join(self.parts)


def _apply_rlimits(limits: SandboxLimits) -> None:
    """Runs in the child between fork and exec (only setrlimit calls)."""
    mib = 1024 * 1024
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_mb * mib, limits.memory_mb * mib))
    resource.setrlimit(resource.RLIMIT_NPROC, (limits.max_processes, limits.max_processes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.max_file_mb * mib, limits.max_file_mb * mib))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def _prepare_dirs(code: str, uid: int | None) -> tuple[Path, Path]:
    """A fresh host directory with main.py (read-only to the sandbox) and a work dir (used by the weaker modes)."""
    root = Path(tempfile.mkdtemp(prefix="sandbox-"))
    root.chmod(0o755)
    (root / "main.py").write_text(code, encoding="utf-8")
    (root / "main.py").chmod(0o644)
    work = root / "work"
    work.mkdir(mode=0o700)
    if uid is not None:
        os.chown(work, uid, uid)
    return root, work


def _kill_tree(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _live_pids(uid: int) -> list[int]:
    """Processes (zombies excluded) whose real uid is `uid`, from /proc."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)] and not fields.get("State", "").strip().startswith("Z"):
            pids.append(int(entry.name))
    return pids


def _sweep_uid(uid: int | None, wait_s: float = 2.0) -> None:
    """Kill whatever still runs as the per-run uid and wait until it is gone.

    Catches what a program forked off and detached, and bwrap's own pid-1 while the kernel tears its namespace down.
    `kill -1` as that uid reaches exactly its processes (no pid-reuse race); only done for a uid that is ours alone.
    """
    if uid is None or uid == NOBODY:
        return
    deadline = time.monotonic() + wait_s
    killed = False
    while _live_pids(uid) and time.monotonic() < deadline:
        if not killed:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run([*drop_privileges_argv(uid), "kill", "-KILL", "-1"], env=HOST_ENV, timeout=5,
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            killed = True
        time.sleep(0.01)


def _ending_signal(returncode: int, mechanism: str) -> int | None:
    if returncode < 0:
        return -returncode
    # bwrap reports a child killed by signal N as exit status 128 + N.
    if mechanism == "bwrap" and 128 < returncode < 128 + 65:
        return returncode - 128
    return None


def _classify(*, sig: int | None, killed_by_us: str | None, markers: set[str], limits: SandboxLimits,
              elapsed_s: float) -> tuple[str, ...]:
    hit = set(markers)
    if killed_by_us:
        hit.add(killed_by_us)
    oom = "memory" in markers  # a cgroup out-of-memory kill is a SIGKILL too
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and not killed_by_us and not oom
                                 and elapsed_s >= limits.cpu_seconds):
        hit.add("cpu")
    if sig == signal.SIGXFSZ:
        hit.add("file_size")
    return tuple(name for name in LIMIT_NAMES if name in hit)


@dataclass(frozen=True)
class _Outcome:
    returncode: int
    killed_by_us: str | None  # "wall" | "output" | "memory" | "cancelled" | None
    elapsed_s: float
    oom_killed: bool = False  # the run's cgroup killed a process for exceeding the memory limit
    memory_peak_bytes: int | None = None


def _child_setup(limits: SandboxLimits, join_paths: list[bytes]) -> None:
    """Between fork and exec: the per-process limits, then into the run's cgroups (still as the caller's uid)."""
    _apply_rlimits(limits)
    cgroups.join(join_paths)


def _supervise(argv: list[str], cwd: str, limits: SandboxLimits, uid: int | None, stdout: _CappedText,
               stderr: _CappedText, cancelled: threading.Event, run_cgroup: RunCgroup | None,
               pass_fds: tuple[int, ...]) -> _Outcome:
    """Start the sandbox, read both pipes with caps until it ends or a limit/cancel strikes, then clean up.

    Plain threads and selectors on purpose: asyncio's subprocess `wait()` only returns once the pipes are closed,
    which a killed run whose output we stopped reading (or a detached grandchild) may never do.
    """
    started = time.monotonic()
    deadline = started + limits.wall_seconds
    join_paths = run_cgroup.join_paths() if run_cgroup else []
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=dict(HOST_ENV), cwd=cwd, start_new_session=True, pass_fds=pass_fds,
                                preexec_fn=lambda: _child_setup(limits, join_paths))
    except BaseException as exc:
        if run_cgroup:
            run_cgroup.remove()
        if isinstance(exc, subprocess.SubprocessError):  # the child could not join its cgroup: nothing ran
            raise IsolationUnavailableError(f"the sandbox could not start inside its cgroup: {exc}") from exc
        raise
    finally:
        for fd in pass_fds:
            os.close(fd)
    assert proc.stdout is not None and proc.stderr is not None
    sinks = {proc.stdout.fileno(): stdout, proc.stderr.fileno(): stderr}
    killed_by_us: str | None = None
    try:
        with selectors.DefaultSelector() as selector:
            for fd in sinks:
                os.set_blocking(fd, False)
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map():
                if cancelled.is_set():
                    killed_by_us = "cancelled"
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    killed_by_us = "wall"
                    break
                for key, _ in selector.select(timeout=min(remaining, 0.1)):
                    data = os.read(key.fd, CHUNK)
                    sink = sinks[key.fd]
                    if not data:
                        sink.feed(b"", final=True)
                        selector.unregister(key.fd)
                        continue
                    sink.feed(data)
                    if sink.exceeded:
                        killed_by_us = "output"
                if run_cgroup and not killed_by_us and run_cgroup.oom_killed():
                    killed_by_us = "memory"  # the kernel killed one process: end the whole run, as v2's oom.group
                if killed_by_us:
                    break
        if killed_by_us is None:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                killed_by_us = "wall"
    finally:
        if proc.poll() is None:
            _kill_tree(proc.pid)
        proc.wait()
        _sweep_uid(uid)
        proc.stdout.close()
        proc.stderr.close()
        oom, peak = False, None
        if run_cgroup:
            run_cgroup.kill_all()
            oom, peak = run_cgroup.oom_killed(), run_cgroup.memory_peak_bytes()
            run_cgroup.remove()
    return _Outcome(proc.returncode, killed_by_us, time.monotonic() - started, oom, peak)


def _make_cgroup(mechanism: Mechanism, limits: SandboxLimits) -> tuple[RunCgroup | None, Mechanism]:
    if mechanism.cgroups is None:
        return None, mechanism
    try:
        made = RunCgroup.create(mechanism.cgroups, memory_mb=limits.memory_mb, max_processes=limits.max_processes)
    except OSError as exc:
        if limits.isolation == "required":
            raise IsolationUnavailableError(f"the policy requires sandbox isolation but the run's cgroup could not "
                                            f"be made: {exc}") from exc
        # best_effort: the per-process rlimits still hold; say that the whole-run ones do not.
        detail = f"{mechanism.detail}; this run's cgroup could not be made ({exc}): whole-run limits NOT enforced"
        return None, dataclasses.replace(mechanism, detail=detail, cgroups=None)
    return made, mechanism


async def run_python(code: str, limits: SandboxLimits, *, bwrap: str = "bwrap", python: str = SYSTEM_PYTHON,
                     cgroups: CgroupSpec | None = None) -> SandboxResult:
    """Run `code` with the system Python inside the strongest sandbox available.

    Raises IsolationUnavailableError (nothing is run) when the policy requires isolation this machine cannot give.
    Cancelling the awaiting task kills the run. `cgroups` overrides where run cgroups are made (tests).
    """
    mechanism: Mechanism = await asyncio.to_thread(choose_mechanism, limits.isolation, bwrap=bwrap, python=python,
                                                   cgroups=cgroups)
    run_cgroup, mechanism = _make_cgroup(mechanism, limits)
    uid = sandbox_uid()
    try:
        root, work = _prepare_dirs(code, uid)
    except BaseException:
        if run_cgroup:
            run_cgroup.remove()
        raise
    # The supervisor closes this descriptor once the child has its copy.
    seccomp_fd = seccomp.filter_fd() if mechanism.seccomp else None
    pass_fds = () if seccomp_fd is None else (seccomp_fd,)
    if mechanism.name == "bwrap":
        argv, cwd = bwrap_argv(bwrap, python, root, limits, uid, seccomp_fd), "/"
    elif mechanism.name == "unshare":
        argv, cwd = unshare_argv(python, root, uid), str(work)
    else:
        argv, cwd = rlimits_argv(python, root, uid), str(work)
    stdout, stderr = _CappedText(limits.max_output_chars, scan=False), _CappedText(limits.max_output_chars, scan=True)
    cancelled = threading.Event()
    job = asyncio.ensure_future(asyncio.to_thread(_supervise, argv, cwd, limits, uid, stdout, stderr, cancelled,
                                                  run_cgroup, pass_fds))
    try:
        outcome = await asyncio.shield(job)
    except asyncio.CancelledError:
        cancelled.set()  # the supervisor kills the run within ~0.1 s
        with contextlib.suppress(Exception):
            await asyncio.wait_for(job, timeout=10)
        raise
    finally:
        # Remove the run's folder once the supervisor is done with it (later, if a cancelled run is slow to die).
        if job.done():
            shutil.rmtree(root, ignore_errors=True)
        else:
            job.add_done_callback(lambda _: shutil.rmtree(root, ignore_errors=True))
    killed = outcome.killed_by_us if outcome.killed_by_us != "cancelled" else None
    if killed is None and (stdout.exceeded or stderr.exceeded):
        killed = "output"  # it ended on its own, but what it printed was cut
    sig = _ending_signal(outcome.returncode, mechanism.name)
    markers = stderr.markers | ({"memory"} if outcome.oom_killed else set())
    limits_hit = _classify(sig=None if killed else sig, killed_by_us=killed, markers=markers, limits=limits,
                           elapsed_s=outcome.elapsed_s)
    peak = outcome.memory_peak_bytes
    return SandboxResult(
        exit_code=None if sig is not None else outcome.returncode,
        stdout=stdout.text(),
        stderr=stderr.text(),
        limits_hit=limits_hit,
        mechanism=mechanism.name,
        isolation_detail=mechanism.detail,
        duration_ms=outcome.elapsed_s * 1000,
        signal=sig,
        uid=uid,
        cgroup=run_cgroup.version if run_cgroup else None,
        memory_peak_mb=None if peak is None else round(peak / (1024 * 1024), 1),
    )
