"""Which isolation this machine can give, and the command lines that apply it.

Mechanisms, strongest first:
- `bwrap`: bubblewrap with every namespace unshared (its own network namespace: loopback only), a read-only view of
  /usr and the few /etc files Python needs, private tmpfs mounts for /work and /tmp, a new session, a cleared
  environment. As root we first drop to an unprivileged uid with `setpriv` so that RLIMIT_NPROC holds (root ignores
  it) and bwrap runs in an unprivileged user namespace.
- `unshare` (best_effort only, needs root): new network, pid, ipc, uts and mount namespaces, then the same uid drop.
  The file system stays the host's, protected by permissions only.
- `rlimits` (best_effort only): resource limits, a scrubbed environment and (as root) the uid drop; no namespaces.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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
CODE_DIR_INSIDE = "/sandbox"
WORK_DIR_INSIDE = "/work"


class IsolationUnavailableError(RuntimeError):
    """The policy requires isolation this machine cannot give; the code was not run."""


@dataclass(frozen=True)
class Mechanism:
    name: MechanismName
    detail: str  # what it isolates, in words, for reports and errors


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


def bwrap_argv(bwrap: str, python: str, code_dir: Path, limits: SandboxLimits, uid: int | None) -> list[str]:
    """The full command line for one bwrap-sandboxed run of `code_dir/main.py`."""
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
    argv += [*sized, "--tmpfs", "/tmp", *sized, "--tmpfs", WORK_DIR_INSIDE]
    argv += ["--ro-bind", str(code_dir), CODE_DIR_INSIDE, "--chdir", WORK_DIR_INSIDE]
    # bwrap builds / and /dev as tmpfs mounts of unbounded size: make both read-only once everything is in place.
    argv += ["--remount-ro", "/dev", "--remount-ro", "/"]
    argv += ["--", python, "-I", "-B", "-X", "utf8", f"{CODE_DIR_INSIDE}/main.py"]
    return argv


def unshare_argv(python: str, code_dir: Path, uid: int | None) -> list[str]:
    return ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc", "--ipc", "--uts", "--mount",
            "--propagation", "private", "--", *drop_privileges_argv(uid), python, "-I", "-B", "-X", "utf8",
            str(code_dir / "main.py")]


def rlimits_argv(python: str, code_dir: Path, uid: int | None) -> list[str]:
    return [*drop_privileges_argv(uid), python, "-I", "-B", "-X", "utf8", str(code_dir / "main.py")]


def _probe(argv: Sequence[str], cwd: str | None = None) -> str | None:
    """Run a probe command; None when it printed `ok`, else why it failed."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=15, env=HOST_ENV, cwd=cwd,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{argv[0]}: {exc}"
    if done.returncode == 0 and done.stdout.strip() == "ok":
        return None
    message = (done.stderr or done.stdout).strip().splitlines()
    return message[-1] if message else f"exit status {done.returncode}"


@functools.cache
def probe_bwrap(bwrap: str, python: str) -> str | None:
    """None when bwrap can sandbox Python here, else the reason it cannot (cached per process)."""
    if shutil.which(bwrap) is None:
        return f"bubblewrap ({bwrap}) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    if is_root() and shutil.which("setpriv") is None:
        return "setpriv (util-linux) is missing, so the sandbox cannot drop root before bwrap"
    if not os.access(python, os.X_OK):
        return f"{python} is missing; the sandbox runs the system Python"
    code_dir = Path(_probe_code_dir())
    reason = _probe(bwrap_argv(bwrap, python, code_dir, SandboxLimits(), sandbox_uid()))
    if reason is not None and ("uid map" in reason or "namespace" in reason or "Operation not permitted" in reason):
        reason += " (unprivileged user namespaces look disabled: sysctl kernel.unprivileged_userns_clone=1)"
    return reason


@functools.cache
def _probe_code_dir() -> str:
    """A world-readable directory holding a main.py that prints `ok` (kept for the process's lifetime)."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="sandbox-probe-"))
    path.chmod(0o755)
    (path / "main.py").write_text("print('ok')\n")
    (path / "main.py").chmod(0o644)
    return str(path)


@functools.cache
def probe_unshare(python: str) -> str | None:
    if not is_root():
        return "unshare without bwrap needs root here"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    return _probe(unshare_argv(python, Path(_probe_code_dir()), sandbox_uid()), cwd="/")


def choose_mechanism(isolation: Isolation, *, bwrap: str = "bwrap", python: str = SYSTEM_PYTHON) -> Mechanism:
    """The strongest mechanism available; raises IsolationUnavailableError when `required` cannot be met."""
    bwrap_problem = probe_bwrap(bwrap, python)
    if bwrap_problem is None:
        who = "an unprivileged per-run uid (setpriv)" if is_root() else f"uid {os.getuid()}"
        return Mechanism("bwrap", f"bubblewrap: no network, private /work and /tmp, read-only /usr, as {who}")
    if isolation == "required":
        raise IsolationUnavailableError(
            f"the policy requires sandbox isolation (tools.sandbox.isolation: required) but bwrap cannot run here: "
            f"{bwrap_problem}. Install bubblewrap, or set isolation: best_effort to accept weaker isolation."
        )
    if probe_unshare(python) is None:
        return Mechanism("unshare", f"unshare namespaces (no network), host file system by permissions only; "
                                    f"bwrap unavailable: {bwrap_problem}")
    return Mechanism("rlimits", f"resource limits and a scrubbed environment only, NO network or file-system "
                                f"isolation; bwrap unavailable: {bwrap_problem}")
