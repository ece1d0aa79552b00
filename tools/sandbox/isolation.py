"""Which isolation this machine can give, and the command lines that apply it.

Mechanisms, strongest first:
- `bwrap`: bubblewrap with every namespace unshared (its own network namespace: loopback only), a read-only view of
  /usr (without /usr/local) and the few /etc files Python needs, no /sys, kernel-revealing /proc files masked,
  private tmpfs mounts for /work and /tmp, a new session, a cleared environment, a seccomp filter (seccomp.py).
  As root we first drop to an unprivileged uid with `setpriv` so that RLIMIT_NPROC holds (root ignores
  it) and bwrap runs in an unprivileged user namespace.
- `unshare` (best_effort only, needs root): new network, pid, ipc, uts and mount namespaces, then the same uid drop.
  The file system stays the host's, protected by permissions only.
- `rlimits` (best_effort only): resource limits, a scrubbed environment and (as root) the uid drop; no namespaces.
Every mechanism also runs inside a per-run cgroup where one can be made (cgroups.py); `required` insists on it.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tools.sandbox import seccomp
from tools.sandbox.cgroups import CgroupSpec, host_spec
from tools.sandbox.limits import Isolation, SandboxLimits

MechanismName = Literal["bwrap", "unshare", "rlimits"]

SYSTEM_PYTHON = "/usr/bin/python3"  # a Python under /root is unreadable once the uid is dropped
NOBODY = 65534
# Each run as root gets its own uid from this range (when the user namespace maps it), so that RLIMIT_NPROC counts only
# that run's processes and a clean-up `kill -1` as that uid cannot touch anything else.
UID_BASE, UID_SPAN = 200_000, 50_000
# The only environment bwrap/unshare/setpriv themselves see (bwrap's own environ is readable inside as /proc/1/environ).
HOST_ENV: dict[str, str] = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
SANDBOX_ENV: dict[str, str] = {"PATH": "/usr/bin:/bin", "HOME": "/work", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
# Files under /etc that Python may use; nothing else of /etc (no passwd, no shadow, no ssl keys) is visible.
ETC_FILES: tuple[str, ...] = ("/etc/ld.so.cache", "/etc/localtime")
TOP_LEVEL_LINKS: tuple[str, ...] = ("/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32")
# Host software outside the distribution (and what it may hold: tokens, site configs): replaced by an empty directory.
HIDDEN_DIRS: tuple[str, ...] = ("/usr/local",)
# /proc files that reveal kernel addresses, keys or other processes' timing: read as empty (as Docker masks them).
MASKED_PROC_FILES: tuple[str, ...] = ("/proc/kallsyms", "/proc/keys", "/proc/key-users", "/proc/kcore",
                                      "/proc/timer_list", "/proc/sched_debug", "/proc/latency_stats",
                                      "/proc/sysrq-trigger", "/proc/modules")
CODE_DIR_INSIDE = "/sandbox"
WORK_DIR_INSIDE = "/work"


class IsolationUnavailableError(RuntimeError):
    """The policy requires isolation this machine cannot give; the code was not run."""


@dataclass(frozen=True)
class Mechanism:
    name: MechanismName
    detail: str  # what it isolates, in words, for reports and errors
    seccomp: bool = False  # whether bwrap loads the seccomp filter
    cgroups: CgroupSpec | None = None  # where each run's cgroup is made; None: no whole-run limits


_uid_counter = itertools.count()


def is_root() -> bool:
    return os.geteuid() == 0


@functools.cache
def _uid_range_mapped() -> bool:
    """Whether our user namespace maps the per-run uid range (true on a normal host; containers may map less)."""
    try:
        lines = Path("/proc/self/uid_map").read_text().split("\n")
    except OSError:
        return False
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            inside, _, count = (int(p) for p in parts)
            if inside <= UID_BASE and inside + count >= UID_BASE + UID_SPAN:
                return True
    return False


def sandbox_uid() -> int | None:
    """The uid the next run drops to: None when not root (we cannot change uid), else a fresh per-run uid."""
    if not is_root():
        return None
    if not _uid_range_mapped():
        return NOBODY
    return UID_BASE + (os.getpid() * 97 + next(_uid_counter)) % UID_SPAN


def drop_privileges_argv(uid: int | None) -> list[str]:
    if uid is None:
        return []
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


@functools.cache
def _bwrap_help(bwrap: str) -> str:
    try:
        done = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10, env=HOST_ENV)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout + done.stderr


def _root_fs_args() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for top in TOP_LEVEL_LINKS:
        path = Path(top)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), top]
        elif path.is_dir():
            args += ["--ro-bind", top, top]
    for etc_file in ETC_FILES:
        if Path(etc_file).exists():
            args += ["--ro-bind", etc_file, etc_file]
    return args


def _masking_args(sized: list[str]) -> list[str]:
    args: list[str] = []
    for hidden in HIDDEN_DIRS:
        if Path(hidden).is_dir():
            args += [*sized, "--tmpfs", hidden, "--remount-ro", hidden]
    for proc_file in MASKED_PROC_FILES:
        if Path(proc_file).exists():  # the sandbox's /proc is the same kernel's: the same files exist there
            args += ["--dev-bind", "/dev/null", proc_file]
    return args


def bwrap_argv(bwrap: str, python: str, code_dir: Path, limits: SandboxLimits, uid: int | None,
               seccomp_fd: int | None = None) -> list[str]:
    """The full command line for one bwrap-sandboxed run of `code_dir/main.py` (no /sys is mounted at all)."""
    help_text = _bwrap_help(bwrap)
    tmpfs_bytes = str(limits.max_file_mb * 4 * 1024 * 1024)
    sized = ["--size", tmpfs_bytes] if "--size" in help_text else []
    argv = [*drop_privileges_argv(uid), bwrap, "--unshare-all", "--unshare-user"]
    if "--disable-userns" in help_text:
        argv.append("--disable-userns")  # no nested user namespaces from inside
    argv += ["--die-with-parent", "--new-session", "--clearenv", "--hostname", "sandbox"]
    for key, value in SANDBOX_ENV.items():
        argv += ["--setenv", key, value]
    argv += _root_fs_args()
    argv += ["--proc", "/proc", "--dev", "/dev", *sized, "--tmpfs", "/dev/shm"]
    argv += _masking_args(sized)
    argv += [*sized, "--tmpfs", "/tmp", *sized, "--tmpfs", WORK_DIR_INSIDE]
    argv += ["--ro-bind", str(code_dir), CODE_DIR_INSIDE, "--chdir", WORK_DIR_INSIDE]
    # bwrap builds / and /dev as tmpfs mounts of unbounded size: make both read-only once everything is in place.
    argv += ["--remount-ro", "/dev", "--remount-ro", "/"]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    argv += ["--", python, "-I", "-B", "-X", "utf8", f"{CODE_DIR_INSIDE}/main.py"]
    return argv


def unshare_argv(python: str, code_dir: Path, uid: int | None) -> list[str]:
    return ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--ipc", "--uts", "--mount",
            "--propagation", "private", "--", *drop_privileges_argv(uid), python, "-I", "-B", "-X", "utf8",
            str(code_dir / "main.py")]


def rlimits_argv(python: str, code_dir: Path, uid: int | None) -> list[str]:
    return [*drop_privileges_argv(uid), python, "-I", "-B", "-X", "utf8", str(code_dir / "main.py")]


def _probe(argv: Sequence[str], cwd: str | None = None, pass_fds: Sequence[int] = ()) -> str | None:
    """Run a probe command; None when it printed `ok`, else why it failed."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=15, env=HOST_ENV, cwd=cwd,
                              stdin=subprocess.DEVNULL, pass_fds=tuple(pass_fds))
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{argv[0]}: {exc}"
    if done.returncode == 0 and done.stdout.strip() == "ok":
        return None
    message = (done.stderr or done.stdout).strip().splitlines()
    return message[-1] if message else f"exit status {done.returncode}"


@functools.cache
def seccomp_problem() -> str | None:
    """None when the seccomp filter can be built here, else why not (cached per process)."""
    try:
        os.close(seccomp.filter_fd())
    except (seccomp.SeccompUnavailableError, OSError) as exc:
        return str(exc)
    return None


@functools.cache
def probe_bwrap(bwrap: str, python: str) -> str | None:
    """None when bwrap can sandbox Python here, else the reason it cannot (cached per process)."""
    if shutil.which(bwrap) is None:
        return f"bubblewrap ({bwrap}) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    if is_root() and shutil.which("setpriv") is None:
        return "setpriv (util-linux) is missing, so the sandbox cannot drop root before bwrap"
    if not os.access(python, os.X_OK):
        return f"{python} is missing; the sandbox runs the system Python"
    seccomp_fd = seccomp.filter_fd() if seccomp_problem() is None else None
    fds = () if seccomp_fd is None else (seccomp_fd,)
    try:
        with _probe_code_dir() as code_dir:
            reason = _probe(bwrap_argv(bwrap, python, code_dir, SandboxLimits(), sandbox_uid(), seccomp_fd),
                            pass_fds=fds)
    finally:
        if seccomp_fd is not None:
            os.close(seccomp_fd)
    if reason is not None and ("uid map" in reason or "namespace" in reason or "Operation not permitted" in reason):
        reason += " (unprivileged user namespaces look disabled: sysctl kernel.unprivileged_userns_clone=1)"
    return reason


@contextlib.contextmanager
def _probe_code_dir() -> Iterator[Path]:
    """A world-readable directory holding a main.py that prints `ok`, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="sandbox-probe-"))
    try:
        path.chmod(0o755)
        (path / "main.py").write_text("print('ok')\n")
        (path / "main.py").chmod(0o644)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@functools.cache
def probe_unshare(python: str) -> str | None:
    if not is_root():
        return "unshare without bwrap needs root here"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    with _probe_code_dir() as code_dir:
        return _probe(unshare_argv(python, code_dir, sandbox_uid()), cwd="/")


def choose_mechanism(isolation: Isolation, *, bwrap: str = "bwrap", python: str = SYSTEM_PYTHON,
                     cgroups: CgroupSpec | None = None) -> Mechanism:
    """The strongest mechanism available; raises IsolationUnavailableError when `required` cannot be met.

    `required` needs bwrap, the seccomp filter and a cgroup with the memory and pids controllers; `best_effort`
    takes what there is and says in the detail what is not enforced.
    """
    spec = host_spec() if cgroups is None else cgroups
    whole_run = spec.describe()
    run_cgroups = spec if spec.hierarchies else None
    bwrap_problem = probe_bwrap(bwrap, python)
    if isolation == "required":
        missing = [] if bwrap_problem is None else [f"bwrap cannot run here: {bwrap_problem}. Install bubblewrap"]
        if (seccomp_why := seccomp_problem()) is not None:
            missing.append(seccomp_why)
        if not spec.usable:
            missing.append(f"no writable cgroup can limit the run as a whole ({whole_run}); run as root or in a "
                           f"delegated cgroup")
        if missing:
            raise IsolationUnavailableError(
                f"the policy requires sandbox isolation (tools.sandbox.isolation: required) but {'; '.join(missing)}"
                f". Fix that, or set isolation: best_effort to accept weaker isolation.")
    if bwrap_problem is None:
        who = "an unprivileged per-run uid (setpriv)" if is_root() else f"uid {os.getuid()}"
        filtered = seccomp_problem() is None
        syscalls = "seccomp filter" if filtered else f"NO seccomp filter ({seccomp_problem()})"
        return Mechanism("bwrap", f"bubblewrap: no network, private /work and /tmp, read-only /usr, as {who}, "
                                  f"{syscalls}; {whole_run}", seccomp=filtered, cgroups=run_cgroups)
    if probe_unshare(python) is None:
        return Mechanism("unshare", f"unshare namespaces (no network), host file system by permissions only; "
                                    f"bwrap unavailable: {bwrap_problem}; {whole_run}", cgroups=run_cgroups)
    return Mechanism("rlimits", f"resource limits and a scrubbed environment only, NO network or file-system "
                                f"isolation; bwrap unavailable: {bwrap_problem}; {whole_run}", cgroups=run_cgroups)
