"""A guard model served by a child process of its own (`models.llama_guard.process` / `models.prompt_guard.process`).

Why: a forward pass of a guard in the agent's process holds the interpreter lock for its Python work, so the main
model's decoding loop waits for it (measured on 2 CPU cores: a Llama Guard / Prompt Guard loop on a thread slowed
the main model's decoding by 20-30%, in a process of its own by nothing measurable; docs/PERFORMANCE.md). In its own
process a guard uses a core the decoding loop leaves idle.

The child is `python -m guards.runtime.child`: it reads one spec (a builder `module:function`, its keyword
arguments, the torch threads, the batching), builds the guard, answers `ready`, then serves calls in order, several
waiting calls of one batched method together when `batching` allows it (guards.runtime.child). Frames on its
stdin/stdout are a 4-byte length and a pickle; only this module's own two ends write them (the child is ours,
started from our interpreter; nothing a user or a model writes is unpickled as code: texts travel as data). The
child's own prints go to its stderr, which the parent reads and keeps only the end of (never the terminal, so a
terminal UI is never drawn over): a child that dies says why in the guard error.

Traces: a call made while a turn is traced carries the tracing settings and the calling span's `traceparent`; the
child exports a span of its own for the call (`process <method>`, a child of the guard check that asked) through an
exporter built from those settings, and flushes it when told (`flush_traces`) or when it exits. Untraced calls
carry nothing and the child never imports OpenTelemetry.

Failures are guard errors, never verdicts: an exception in the child comes back typed (`GuardOutputError`,
`GuardModelNotFoundError`, else `GuardError` naming the original type); a child that dies fails every call in
flight with `GuardError` and is started again on the next call. The child exits when its stdin closes (the agent's
process ended, however it ended) and ignores Ctrl-C, which the terminal sends to the whole process group.
"""

from __future__ import annotations

import atexit
import importlib
import itertools
import logging
import os
import pickle
import re
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import IO, Any

from guards import errors
from model import telemetry
from model.telemetry.propagation import traceresponse

logger = logging.getLogger(__name__)
_ERROR_LINE = re.compile(r"^(?:[\w.]*(?:Error|Exception)\b|Fatal Python error)")
_HEADER = struct.Struct("!I")
STATS = "__stats__"  # the call that returns the child's counters (tokens its models read, CPU seconds)
FLUSH = "__flush__"  # the call that exports the child's finished spans before it answers
Carried = tuple[telemetry.Settings, str]  # a traced call's settings and the calling span's traceparent


@dataclass(frozen=True)
class Batching:
    """How many waiting calls of a batched method (`guard.batched_methods`) one call of its batch method may answer
    (1: off), and how long the first of them waits for others to arrive (0: only the calls already waiting join)."""

    max_calls: int = 1
    wait_s: float = 0.0


def write_frame(stream: IO[bytes], payload: Any) -> None:
    data = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def read_frame(stream: IO[bytes]) -> Any:
    """The next frame, or EOFError when the other end closed."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)  # frames come only from our own child or parent (module docstring)


def resolve(ref: str) -> Any:
    """`package.module:attr[.attr]` -> the object."""
    module_name, _, qualname = ref.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return target


def error_from(kind: str, message: str) -> errors.GuardError:
    """A child's exception as the parent raises it (guard errors keep their type; others are named)."""
    cls = getattr(errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, errors.GuardError):
        return cls(message)
    return errors.GuardError(f"{kind}: {message}")


class GuardProcess:
    """One guard in one child process. `call` is thread-safe; the child serves calls in the order they arrive."""

    def __init__(self, builder: str, kwargs: dict[str, Any], *, name: str, threads: int | None = None,
                 batching: Batching | None = None) -> None:
        self.builder = builder
        self.batching = batching or Batching()
        self.kwargs = kwargs
        self.name = name
        self.threads = threads
        self._lock = threading.Lock()  # the child handle, the next id, the calls in flight
        self._write_lock = threading.Lock()  # one frame at a time on the child's input
        self._child: subprocess.Popen[bytes] | None = None
        self._pending: dict[int, Future[Any]] = {}
        self._ids = itertools.count()
        self.starts = 0  # children started (more than one: a child died and was replaced, or was closed)
        self._closed = False  # closed on purpose: the next start is not a replacement
        self._stderr: deque[bytes] = deque()

    # --- the guard's interface, as the stage runners call it ------------------------------------------------------

    def check_text(self, text: str, **kwargs: Any) -> Any:
        return self.call("check_text", text, **kwargs)

    def score(self, text: str, kind: str = "jailbreak") -> Any:
        return self.call("score", text, kind)

    # --- the process ---------------------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

    def start(self) -> None:
        """Start the child (if it is not running) and wait until its guard is built; raises the child's error."""
        with self._lock:
            if self._child is not None and self._child.poll() is None:
                return
            if self.starts and not self._closed:
                logger.warning("the %s process exited; starting it again", self.name)
            self._closed = False
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
            child = subprocess.Popen(  # our interpreter running our module
                [sys.executable, "-m", "guards.runtime.child"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=env,
            )
            assert child.stdin is not None and child.stdout is not None and child.stderr is not None
            self._stderr = _tail_of(child.stderr)
            try:
                write_frame(child.stdin, {"builder": self.builder, "kwargs": self.kwargs, "threads": self.threads,
                                          "name": self.name, "batching": self.batching})
                status, detail = read_frame(child.stdout)
            except (EOFError, OSError):
                child.kill()
                child.wait()
                raise errors.GuardError(f"the {self.name} process exited while starting{self._last_words()}") from None
            if status != "ready":
                child.wait()
                raise error_from(*detail)
            self._child = child
            self.starts += 1
            threading.Thread(target=self._read_replies, args=(child,), name=f"{self.name} replies", daemon=True).start()
        _LIVE.add(self)

    def call(self, ref: str, *args: Any, **kwargs: Any) -> Any:
        """Run `ref` in the child: a method name of the guard, or `module:function` called as function(guard, ...).
        Under a traced span (with settings another process can use) the child traces the call as its child."""
        trace = telemetry.current()
        carried: Carried | None = None
        if trace is not None and trace.settings is not None and ref not in (STATS, FLUSH):
            carried = (trace.settings, traceresponse(trace))
        self.start()
        future: Future[Any] = Future()
        with self._lock:
            child = self._child
            if child is None or child.stdin is None:
                raise errors.GuardError(f"the {self.name} process is not running")
            request = next(self._ids)
            self._pending[request] = future
        try:
            # A long text can fill the pipe while the child works on an earlier call: the write waits, but never
            # under `_lock`, which the reply reader needs to hand that earlier call its answer.
            with self._write_lock:
                write_frame(child.stdin, (request, ref, args, kwargs, carried))
        except (OSError, ValueError) as exc:  # ValueError: the pipe was closed by close()
            with self._lock:
                self._pending.pop(request, None)
            raise errors.GuardError(f"the {self.name} process cannot be reached ({exc!r})") from None
        return future.result()

    def stats(self) -> dict[str, float]:
        """Tokens the child's model has read in forward passes, the child's CPU seconds, and how many calls it
        answered together with others (`batched_calls`)."""
        return dict(self.call(STATS))

    def flush_traces(self) -> None:
        """Export the spans the child has finished (a no-op there when it traced nothing)."""
        self.call(FLUSH)

    def _read_replies(self, child: subprocess.Popen[bytes]) -> None:
        assert child.stdout is not None
        while True:
            try:
                request, ok, value = read_frame(child.stdout)
            except (EOFError, OSError, pickle.UnpicklingError):
                break
            with self._lock:
                future = self._pending.pop(request, None)
            if future is None:
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(error_from(*value))
        code = child.wait()
        with self._lock:
            if self._child is child:
                self._child = None
            failed, self._pending = self._pending, {}
        why = f"the {self.name} process exited (code {code}) during a check{self._last_words()}"
        for future in failed.values():
            future.set_exception(errors.GuardError(why))

    def _last_words(self) -> str:
        time.sleep(0.05)  # the stderr reader may still be draining what the child wrote last
        lines = [line.strip() for line in b"".join(self._stderr).decode(errors="replace").splitlines() if line.strip()]
        named = [line for line in lines if _ERROR_LINE.match(line)]  # a traceback's last line, a fatal error
        said = (named or lines)[-1:]
        return f": {said[0][:300]}" if said else ""

    def close(self, wait_s: float = 1.0) -> None:
        """End the child: its input closes (it exits at the end of it); one that is still there after `wait_s` is
        killed (it keeps no state worth a slow exit)."""
        child = self._release()
        if child is not None:
            _reap(child, wait_s)

    def _release(self) -> subprocess.Popen[bytes] | None:
        with self._lock:
            child, self._child = self._child, None
            self._closed = True
        if child is not None and child.stdin is not None:
            child.stdin.close()
        return child


def _reap(child: subprocess.Popen[bytes], wait_s: float) -> None:
    try:
        child.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _tail_of(stream: IO[bytes], keep: int = 64) -> deque[bytes]:
    """Read `stream` on a daemon thread until it ends, keeping its last `keep` chunks (the child never blocks on a
    full pipe, and memory stays bounded however much it writes)."""
    tail: deque[bytes] = deque(maxlen=keep)

    def drain() -> None:
        for chunk in iter(lambda: stream.read1(4096), b""):  # type: ignore[attr-defined]  # Popen's pipes are BufferedReaders; typeshed says IO[bytes]
            tail.append(chunk)

    threading.Thread(target=drain, name="guard process stderr", daemon=True).start()
    return tail


_LIVE: set[GuardProcess] = set()  # started processes, closed when the agent's process exits


def live_pids() -> list[int]:
    """The process ids of the guard processes running now (the benchmark adds their CPU time to the agent's)."""
    return [pid for pid in (process.pid for process in list(_LIVE)) if pid is not None]


def flush_traces() -> None:
    """Export the finished spans of every running guard process (before a benchmark reads their CPU time, or a test
    reads a collector)."""
    for process in list(_LIVE):
        if process.pid is not None:
            process.flush_traces()


@atexit.register
def _close_all() -> None:
    children = [child for child in (process._release() for process in list(_LIVE)) if child is not None]
    deadline = time.monotonic() + 1.0  # every child ends at once: exiting waits at most about a second in all
    for child in children:
        _reap(child, max(0.0, deadline - time.monotonic()))
