"""Real escape attempts against the bubblewrap sandbox: each must fail or be killed, and the host stays unharmed."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tools.conftest import processes_of
from tools.sandbox import SandboxLimits, run_python

pytestmark = pytest.mark.usefixtures("bwrap_ready")


def _host_ip() -> str | None:
    """This machine's non-loopback address (a UDP connect sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


@pytest.fixture
def host_server() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on all host interfaces that records whatever reaches it."""
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.2)
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                received.append(conn.recv(100) or b"<connected>")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], received
    stop.set()
    thread.join()
    server.close()


async def test_plain_code_runs_as_unprivileged_user_in_private_work_dir(small_limits: SandboxLimits) -> None:
    result = await run_python("import os; print(os.getuid(), os.getcwd()); print(sum(range(10)))", small_limits)
    assert result.mechanism == "bwrap"
    assert result.ok and result.limits_hit == ()
    uid, cwd = result.stdout.splitlines()[0].split()
    assert int(uid) != 0 and cwd == "/work"
    assert result.stdout.splitlines()[1] == "45"


async def test_cannot_reach_the_outside_network(small_limits: SandboxLimits) -> None:
    code = (
        "import socket\n"
        "for target in [('1.1.1.1', 80), ('8.8.8.8', 53)]:\n"
        "    try:\n"
        "        socket.create_connection(target, timeout=1); print('CONNECTED', target)\n"
        "    except OSError as e: print('blocked', e.errno)\n"
        "try:\n"
        "    socket.getaddrinfo('example.com', 80); print('RESOLVED')\n"
        "except OSError as e: print('no dns')\n"
        "import os; print(sorted(os.listdir('/sys/class/net')) if os.path.exists('/sys/class/net') else 'no sysfs')\n"
    )
    result = await run_python(code, small_limits)
    assert result.ok, result.stderr
    assert "CONNECTED" not in result.stdout and "RESOLVED" not in result.stdout
    assert result.stdout.count("blocked") == 2


async def test_cannot_reach_a_server_on_the_host(small_limits: SandboxLimits,
                                                 host_server: tuple[int, list[bytes]]) -> None:
    port, received = host_server
    # The server is really there: the host itself can reach it.
    with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
        conn.sendall(b"host")
    targets = ["127.0.0.1"] + ([ip] if (ip := _host_ip()) else [])
    code = (
        "import socket\n"
        f"for host in {targets!r}:\n"
        "    try:\n"
        f"        s = socket.create_connection((host, {port}), timeout=1); s.sendall(b'sandbox'); print('REACHED')\n"
        "    except OSError as e: print('blocked', host, e.errno)\n"
    )
    result = await run_python(code, small_limits)
    assert "REACHED" not in result.stdout
    assert result.stdout.count("blocked") == len(targets)
    assert received == [b"host"]  # nothing from the sandbox ever arrived


async def test_cannot_read_shadow_home_or_the_repository(small_limits: SandboxLimits) -> None:
    secret_dir = Path(__file__).resolve().parents[2]  # the checkout: not part of the sandbox's view
    code = (
        "import os\n"
        f"for path in ['/etc/shadow', '/etc/passwd', '/root', '/home', {str(secret_dir)!r}, '/etc/hostname']:\n"
        "    try:\n"
        "        print('READ', path, os.listdir(path) if os.path.isdir(path) else open(path).read()[:20])\n"
        "    except OSError as e: print('denied', path, e.errno)\n"
        "print(sorted(os.listdir('/etc')))\n"
    )
    result = await run_python(code, small_limits)
    assert result.ok, result.stderr
    assert "READ" not in result.stdout
    assert result.stdout.count("denied") == 6
    assert result.stdout.splitlines()[-1] in ("['ld.so.cache', 'localtime']", "['ld.so.cache']")


async def test_cannot_write_outside_the_work_dir(small_limits: SandboxLimits) -> None:
    marker = f"escape-{uuid.uuid4().hex}"
    code = (
        "import os\n"
        f"for d in ['/', '/usr', '/etc', '/dev', '/sandbox', '/proc', '/var', '/root']:\n"
        "    try:\n"
        f"        open(os.path.join(d, {marker!r}), 'w').write('x'); print('WROTE', d)\n"
        "    except OSError as e: print('denied', d)\n"
        f"open('/work/{marker}', 'w').write('inside'); print(open('/work/{marker}').read())\n"
        f"open('/tmp/{marker}', 'w').write('private tmp')\n"
    )
    result = await run_python(code, small_limits)
    assert result.ok, result.stderr
    assert "WROTE" not in result.stdout and result.stdout.count("denied") == 8
    assert "inside" in result.stdout  # the work dir is writable
    for host_dir in ("/", "/tmp", "/usr", "/etc", "/var", "/root", "/dev"):
        assert not (Path(host_dir) / marker).exists()


async def test_secrets_in_the_environment_do_not_reach_the_sandbox(small_limits: SandboxLimits,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_supersecrettoken123")
    monkeypatch.setenv("BRAVE_API_KEY", "brave-secret-key-456")
    code = (
        "import os, glob\n"
        "print(dict(os.environ))\n"
        "for path in ['/proc/1/environ', '/proc/self/environ', *glob.glob('/proc/[0-9]*/environ')]:\n"
        "    try: print(path, open(path, 'rb').read())\n"
        "    except OSError as e: print(path, 'unreadable')\n"
    )
    result = await run_python(code, small_limits)
    assert result.ok, result.stderr
    assert "/proc/1/environ b'" in result.stdout  # the check really read bwrap's own environment
    for secret in ("hf_supersecrettoken123", "brave-secret-key-456", "HF_TOKEN", "BRAVE_API_KEY"):
        assert secret not in result.stdout


async def test_fork_bomb_is_contained_and_leaves_nothing_behind(small_limits: SandboxLimits) -> None:
    code = "import os\nwhile True:\n    try: os.fork()\n    except OSError: pass\n"
    limits = SandboxLimits(cpu_seconds=1, wall_seconds=2.0, memory_mb=256, max_processes=16, max_file_mb=1,
                           max_output_chars=2000)
    result = await run_python(code, limits)
    assert not result.ok
    assert "wall" in result.limits_hit or "cpu" in result.limits_hit
    assert result.duration_ms < 6000
    assert result.uid is not None and processes_of(result.uid) == []
    # The host can still start processes.
    assert (await run_python("print('alive')", small_limits)).stdout == "alive\n"


async def test_fork_bomb_hits_the_process_limit(small_limits: SandboxLimits) -> None:
    code = "import os, time\nfor _ in range(100):\n    if os.fork() == 0:\n        time.sleep(5); os._exit(0)\n"
    result = await run_python(code, small_limits)
    assert "processes" in result.limits_hit
    assert "BlockingIOError" in result.stderr
    assert processes_of(result.uid) == []  # the sleeping children died with the sandbox


async def test_memory_bomb_is_refused(small_limits: SandboxLimits) -> None:
    result = await run_python("blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 1024 * 1024))\n",
                              small_limits)
    assert result.limits_hit == ("memory",)
    assert result.exit_code == 1 and "MemoryError" in result.stderr


async def test_infinite_loop_is_killed_by_the_cpu_limit() -> None:
    # A generous wall clock: on a busy machine one CPU second can take several seconds of real time.
    limits = SandboxLimits(cpu_seconds=1, wall_seconds=20.0, memory_mb=256, max_processes=16, max_file_mb=1,
                           max_output_chars=2000)
    result = await run_python("while True:\n    pass\n", limits)
    assert result.limits_hit == ("cpu",)
    assert result.exit_code is None and result.signal is not None
    assert result.duration_ms < limits.wall_seconds * 1000


async def test_sleeping_forever_is_killed_by_the_wall_clock(small_limits: SandboxLimits) -> None:
    limits = SandboxLimits(cpu_seconds=1, wall_seconds=1.0, memory_mb=256, max_processes=16, max_file_mb=1,
                           max_output_chars=2000)
    result = await run_python("import time\ntime.sleep(60)\n", limits)
    assert result.limits_hit == ("wall",)
    assert 900 < result.duration_ms < 3000
    assert processes_of(result.uid) == []


async def test_printing_gigabytes_is_cut_and_killed(small_limits: SandboxLimits) -> None:
    result = await run_python("import sys\nwhile True:\n    sys.stdout.write('x' * 1_000_000)\n", small_limits)
    assert result.limits_hit == ("output",)
    assert len(result.stdout) == small_limits.max_output_chars
    assert result.duration_ms < 2000


async def test_big_files_hit_the_file_size_limit(small_limits: SandboxLimits) -> None:
    result = await run_python("open('big.bin', 'wb').write(b'0' * 5_000_000)\n", small_limits)
    assert result.limits_hit == ("file_size",)
    assert "File too large" in result.stderr


async def test_many_files_cannot_fill_the_host(small_limits: SandboxLimits) -> None:
    # Each file is under the per-file limit; the private tmpfs (4 x max_file_mb) fills up instead of the host.
    code = "i = 0\nwhile True:\n    open(f'f{i}', 'wb').write(b'0' * 500_000); i += 1\n"
    result = await run_python(code, small_limits)
    assert result.limits_hit == ("file_size",)
    assert "No space left on device" in result.stderr


async def test_cancelling_a_run_kills_it(small_limits: SandboxLimits) -> None:
    import asyncio

    task = asyncio.ensure_future(run_python("import time\ntime.sleep(30)\n", small_limits))
    await asyncio.sleep(0.5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # `ps` sees the whole machine: a sandbox of a test on the other worker (make test runs two) may be alive for a
    # moment. The cancelled run's own processes would live for 30 s, so a few seconds of polling tells them apart.
    for _ in range(50):
        leftovers = [line for line in os.popen("ps -e -o uid=,stat=,args=").read().splitlines()
                     if "time.sleep(30)" in line or ("bwrap" in line and " Z" not in line and line.split()[0] != "0")]
        if not leftovers:
            break
        await asyncio.sleep(0.1)
    assert leftovers == []
