"""The sandbox's seccomp filter: kernel interfaces model-written code never needs, denied with EPERM.

Built once per process with libseccomp (through `pyseccomp`, a ctypes binding) in the parent and exported as BPF;
bwrap loads it (`--seccomp FD`) right before it executes Python, after it has built the namespaces itself. The
sandboxed Python runs as another user and never imports anything from here.

Everything not listed is allowed: this narrows the kernel's attack surface, while namespaces, the uid drop and the
cgroup do the confining. A call from a foreign ABI (32-bit `int 0x80`, x32) kills the process (libseccomp's
bad-arch action), so the list cannot be bypassed through another syscall table.
"""

from __future__ import annotations

import errno
import functools
import os
import tempfile

# Denied outright, by group (the report and docs list these).
DENIED_SYSCALLS: dict[str, tuple[str, ...]] = {
    "debugging other processes": ("ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd"),
    "mounting and file-system views": ("mount", "umount", "umount2", "pivot_root", "chroot", "move_mount",
                                       "open_tree", "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
                                       "name_to_handle_at", "open_by_handle_at", "quotactl", "quotactl_fd",
                                       "swapon", "swapoff"),
    "namespaces": ("unshare", "setns"),
    "kernel keyrings": ("keyctl", "add_key", "request_key"),
    "kernel programs and tracing": ("bpf", "perf_event_open", "userfaultfd", "lookup_dcookie", "fanotify_init"),
    "kernel images and modules": ("kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
                                  "create_module", "get_kernel_syms", "query_module", "reboot"),
    "io_uring (bypasses per-syscall filtering)": ("io_uring_setup", "io_uring_enter", "io_uring_register"),
    "host administration": ("acct", "syslog", "sethostname", "setdomainname", "settimeofday", "clock_settime",
                            "clock_adjtime", "adjtimex", "vhangup", "iopl", "ioperm", "uselib", "ustat", "sysfs",
                            "_sysctl", "nfsservctl", "vm86", "vm86old"),
}
# clone()'s namespace flags (sched.h); clone with any of them is denied, plain fork/thread creation is not.
CLONE_NAMESPACE_FLAGS: dict[str, int] = {
    "CLONE_NEWNS": 0x00020000, "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000, "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000, "CLONE_NEWTIME": 0x00000080,
}
# personality(): only PER_LINUX (0) and PER_LINUX32 (8) are allowed; anything else (ADDR_NO_RANDOMIZE,
# READ_IMPLIES_EXEC, MMAP_PAGE_ZERO, the 0xffffffff query...) is denied.
PERSONALITY_ALLOWED = (0x0, 0x8)
TIOCSTI = 0x5412  # ioctl that pushes characters into a terminal's input


class SeccompUnavailableError(RuntimeError):
    """libseccomp (or its Python binding) is missing, so no filter can be built."""


def denied_names() -> list[str]:
    """Every syscall the filter denies outright (argument-filtered ones are in `describe()`)."""
    return [name for group in DENIED_SYSCALLS.values() for name in group]


def describe() -> str:
    """The deny list in words, for reports."""
    lines = [f"{group}: {', '.join(names)}" for group, names in DENIED_SYSCALLS.items()]
    lines.append(f"clone with {'/'.join(CLONE_NAMESPACE_FLAGS)} (clone3 answers ENOSYS so libc falls back to clone)")
    lines.append("personality other than PER_LINUX/PER_LINUX32; ioctl TIOCSTI")
    return "\n".join(lines)


@functools.cache
def filter_bpf() -> bytes:
    """The compiled BPF program for this machine's architecture (raises SeccompUnavailableError)."""
    try:
        import pyseccomp as sc
    except (ImportError, RuntimeError, OSError) as exc:  # RuntimeError: pyseccomp found no libseccomp.so
        raise SeccompUnavailableError(
            f"cannot build the seccomp filter: {exc} (pip install pyseccomp; Debian/Ubuntu: apt-get install "
            f"libseccomp2)") from exc
    deny = sc.ERRNO(errno.EPERM)
    flt = sc.SyscallFilter(sc.ALLOW)
    flt.set_attr(sc.Attr.ACT_BADARCH, sc.KILL_PROCESS)
    for name in denied_names():
        flt.add_rule(deny, name)  # names this architecture lacks resolve to pseudo-numbers libseccomp skips
    for flag in CLONE_NAMESPACE_FLAGS.values():
        flt.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    # clone3 passes its flags in memory a filter cannot read: ENOSYS makes glibc use clone, which is checked.
    flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    # personality(x) is allowed only for x in {0, 8}: deny x > 8 and any x with one of the bits 0-2 set.
    flt.add_rule(deny, "personality", sc.Arg(0, sc.GT, max(PERSONALITY_ALLOWED)))
    for bit in (1, 2, 4):
        flt.add_rule(deny, "personality", sc.Arg(0, sc.MASKED_EQ, bit, bit))
    flt.add_rule(deny, "ioctl", sc.Arg(1, sc.MASKED_EQ, 0xFFFFFFFF, TIOCSTI))
    with tempfile.TemporaryFile() as out:
        flt.export_bpf(out)
        out.seek(0)
        return out.read()


def filter_fd() -> int:
    """A fresh file descriptor holding the BPF program at offset 0, for one bwrap `--seccomp FD` (caller closes)."""
    program = filter_bpf()
    fd = os.memfd_create("sandbox-seccomp", os.MFD_CLOEXEC)
    try:
        os.write(fd, program)
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd
