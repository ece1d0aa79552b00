"""The sandbox's hardening: a seccomp filter (each denied class answers EPERM inside), hidden host paths, and no
temporary folder left behind by any run."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pyseccomp
import pytest

from tools.sandbox import SandboxLimits, run_python
from tools.sandbox.seccomp import CLONE_NAMESPACE_FLAGS, TIOCSTI, denied_names, describe

pytestmark = pytest.mark.usefixtures("bwrap_ready")

REPO = Path(__file__).resolve().parents[2]
ADDR_NO_RANDOMIZE, PER_QUERY = 0x0040000, 0xFFFFFFFF
SIGCHLD = 17
# One call per denied class, with arguments that would succeed (or fail differently) without the filter.
DENIED_CALLS: dict[str, tuple[str, list[int]]] = {
    "ptrace": ("ptrace", [0, 0, 0, 0]),  # PTRACE_TRACEME succeeds unfiltered
    "process_vm_readv": ("process_vm_readv", [1, 0, 0, 0, 0, 0]),
    "mount": ("mount", [0, 0, 0, 0, 0]),
    "umount2": ("umount2", [0, 0]),
    "pivot_root": ("pivot_root", [0, 0]),
    "open_tree": ("open_tree", [-100, 0, 0]),
    "fsopen": ("fsopen", [0, 0]),
    "keyctl": ("keyctl", [0, -3, 1]),  # KEYCTL_GET_KEYRING_ID of the session keyring
    "add_key": ("add_key", [0, 0, 0, 0, 0]),
    "request_key": ("request_key", [0, 0, 0, 0]),
    "bpf": ("bpf", [0, 0, 0]),
    "perf_event_open": ("perf_event_open", [0, 0, -1, -1, 0]),
    "userfaultfd": ("userfaultfd", [1]),  # UFFD_USER_MODE_ONLY: allowed unprivileged unfiltered
    "kexec_load": ("kexec_load", [0, 0, 0, 0]),
    "kexec_file_load": ("kexec_file_load", [-1, -1, 0, 0, 0]),
    "init_module": ("init_module", [0, 0, 0]),
    "finit_module": ("finit_module", [-1, 0, 0]),
    "delete_module": ("delete_module", [0, 0]),
    "unshare": ("unshare", [0]),  # a no-op unfiltered
    "setns": ("setns", [-1, 0]),
    "clone_newuser": ("clone", [CLONE_NAMESPACE_FLAGS["CLONE_NEWUSER"] | SIGCHLD, 0, 0, 0, 0]),
    "clone_newnet": ("clone", [CLONE_NAMESPACE_FLAGS["CLONE_NEWNET"] | SIGCHLD, 0, 0, 0, 0]),
    "personality_no_aslr": ("personality", [ADDR_NO_RANDOMIZE]),  # succeeds unfiltered
    "personality_query": ("personality", [PER_QUERY]),
    "io_uring_setup": ("io_uring_setup", [1, 0]),
    "open_by_handle_at": ("open_by_handle_at", [-1, 0, 0]),
    "pidfd_getfd": ("pidfd_getfd", [-1, 0, 0]),
    "reboot": ("reboot", [0, 0, 0, 0]),
    "swapon": ("swapon", [0, 0]),
    "syslog": ("syslog", [3, 0, 0]),
    "tiocsti": ("ioctl", [0, TIOCSTI, 0]),
}
PROBE = """
import ctypes, errno, json, os, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
out = {}
for name, (nr, args) in json.loads(CALLS).items():
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *(ctypes.c_long(a) for a in args))
    if r == 0 and name.startswith('clone'):
        os._exit(0)  # a child, had the clone been allowed
    out[name] = 'ok' if r >= 0 else errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno())
# What ordinary code needs still works: fork, threads, subprocesses (glibc falls back from clone3 to clone).
pid = os.fork()
if pid == 0:
    os._exit(7)
out['fork'] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
t = threading.Thread(target=lambda: out.setdefault('thread', 'ok')); t.start(); t.join()
out['subprocess'] = subprocess.run(['/usr/bin/echo', 'hi'], capture_output=True, text=True).stdout
out['personality_linux'] = libc.syscall(ctypes.c_long(PERSONALITY), ctypes.c_long(0))
out['seccomp_mode'] = [l.split()[1] for l in open('/proc/self/status') if l.startswith('Seccomp:')][0]
print(json.dumps(out))
"""


async def test_seccomp_denies_each_class_with_eperm(small_limits: SandboxLimits) -> None:
    calls = {label: (pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name), args)
             for label, (name, args) in DENIED_CALLS.items()}
    calls["clone3"] = (pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, "clone3"), [0, 0])
    personality = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, "personality")
    code = f"CALLS = {json.dumps(calls)!r}\nPERSONALITY = {personality}\n" + PROBE
    result = await run_python(code, small_limits)
    assert result.ok, result.stderr
    out = json.loads(result.stdout)
    assert out.pop("seccomp_mode") == "2"  # a filter is loaded
    assert out.pop("clone3") == "ENOSYS"  # so that libc falls back to clone, whose flags the filter checks
    assert out.pop("fork") == 7 and out.pop("thread") == "ok" and out.pop("subprocess") == "hi\n"
    assert out.pop("personality_linux") >= 0
    assert out == dict.fromkeys(DENIED_CALLS, "EPERM")


# The deny list is per syscall table: a call through another ABI (32-bit `int 0x80`, x32 numbers) must not get
# around it. libseccomp's bad-arch action kills the process instead (SIGSYS).
INT80_GETPID = (
    "import ctypes, mmap\n"
    "page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
    "page.write(bytes([0xB8, 20, 0, 0, 0, 0xCD, 0x80, 0xC3]))  # mov eax, 20 (i386 getpid); int 0x80; ret\n"
    "address = ctypes.addressof(ctypes.c_char.from_buffer(page))\n"
    "print('ALIVE', ctypes.CFUNCTYPE(ctypes.c_int)(address)(), flush=True)\n"
)
X32_GETPID = (
    "import ctypes\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "print('ALIVE', libc.syscall(ctypes.c_long(0x40000000 | 39)), flush=True)  # x32 getpid\n"
)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 machine code")
@pytest.mark.parametrize("code", [INT80_GETPID, X32_GETPID], ids=["int80", "x32"])
async def test_foreign_syscall_abis_kill_the_process(small_limits: SandboxLimits, code: str) -> None:
    result = await run_python(code, small_limits)
    assert "ALIVE" not in result.stdout
    assert result.signal == signal.SIGSYS and result.exit_code is None


def test_the_deny_list_covers_the_issue_and_is_described() -> None:
    names = set(denied_names())
    assert {"ptrace", "mount", "umount2", "pivot_root", "keyctl", "add_key", "request_key", "bpf", "perf_event_open",
            "userfaultfd", "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
            "unshare", "setns"} <= names
    text = describe()
    assert "clone with" in text and "personality" in text


async def test_host_paths_code_does_not_need_are_hidden(small_limits: SandboxLimits) -> None:
    code = (
        "import os\n"
        "print(os.listdir('/usr/local'))\n"
        "for path in ['/proc/kallsyms', '/proc/keys']:\n"
        "    print(path, len(open(path, 'rb').read()))\n"
        "print('/sys', os.path.exists('/sys'))\n"
        "try: open('/usr/local/x', 'w'); print('WROTE')\n"
        "except OSError: print('read-only')\n"
    )
    result = await run_python(code, small_limits)
    assert result.ok, result.stderr
    assert result.stdout.splitlines() == ["[]", "/proc/kallsyms 0", "/proc/keys 0", "/sys False", "read-only"]


def test_runs_leave_no_temporary_folder_behind() -> None:
    """A fresh process (the probes run once per process) with its own TMPDIR: empty again after its runs."""
    tmp = Path(tempfile.mkdtemp(prefix="sandbox-tmpdir-test-"))
    try:
        tmp.chmod(0o755)  # the sandbox's unprivileged uid must reach the code folder made in it
        script = (
            "import asyncio\n"
            "from tools.sandbox import SandboxLimits, run_python\n"
            "async def main():\n"
            "    limits = SandboxLimits(wall_seconds=1.0, cpu_seconds=1, max_file_mb=1)\n"
            "    print((await run_python('print(1)', limits)).stdout.strip())\n"
            "    print((await run_python('import time; time.sleep(5)', limits)).limits_hit)\n"
            "    print((await run_python('1/0', limits)).exit_code)\n"
            "asyncio.run(main())\n"
        )
        env = {**os.environ, "TMPDIR": str(tmp)}
        done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.split("\n")[:3] == ["1", "('wall',)", "1"]
        assert sorted(p.name for p in tmp.iterdir()) == []
    finally:
        subprocess.run(["rm", "-rf", str(tmp)], check=False)
