"""The guard process's own end (`python -m guards.runtime.child`, started by guards.runtime.process.GuardProcess).

It reads one spec (a builder `module:function`, its keyword arguments, the torch threads, the batching), builds the
guard, answers `ready`, then serves calls until its input ends. Frames are read on a thread of their own, so the
loop sees every call already waiting: with batching on (`Batching.max_calls` > 1), calls of a method the guard can
answer together (`guard.batched_methods`: Llama Guard's `check_text`, from several conversations at once) are taken
together, up to `max_calls`, the first waiting at most `wait_s` for others, and answered by one call of the batch
method. Calls are never reordered: a waiting call of another kind ends the batch and is served next.

Every failure goes back as a guard error of the call that caused it; a batch method answers each call on its own
(one call's error fails only that call), and a batch method that raises fails every call of its batch.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import IO, Any

from guards.runtime.process import FLUSH, STATS, Batching, Carried, read_frame, resolve, write_frame
from model import telemetry
from model.telemetry import export
from model.telemetry.propagation import remote_context

logger = logging.getLogger(__name__)
Request = tuple[int, str, tuple[Any, ...], dict[str, Any], Carried | None]


class Inbox:
    """The calls read from the parent, in arrival order. A reader thread fills it, so the loop can tell which calls
    are already waiting; EOFError once the parent closed the input and every call was taken."""

    _END = object()

    def __init__(self, stream: IO[bytes]) -> None:
        self._frames: queue.Queue[Any] = queue.Queue()
        self._held: Request | None = None  # taken while batching but of another kind: served next
        threading.Thread(target=self._read, args=(stream,), name="guard calls", daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        while True:
            try:
                frame = read_frame(stream)
            except EOFError:
                self._frames.put(self._END)
                return
            self._frames.put(frame)

    def take(self) -> Request:
        if self._held is not None:
            request, self._held = self._held, None
            return request
        return self._unpack(self._frames.get())

    def join(self, ref: str, batching: Batching) -> list[Request]:
        """The calls of `ref` that join a batch begun now: those already waiting, then those arriving within
        `wait_s`, up to `max_calls` - 1 more; stops at the first call of another kind (kept for `take`)."""
        joined: list[Request] = []
        deadline = time.monotonic() + batching.wait_s
        while len(joined) < batching.max_calls - 1:
            remaining = deadline - time.monotonic()
            try:
                frame = self._frames.get(timeout=remaining) if remaining > 0 else self._frames.get_nowait()
            except queue.Empty:
                break
            if frame is self._END:
                self._frames.put(frame)  # the end stays for `take`, after this batch is answered
                break
            request = self._unpack(frame)
            if request[1] != ref:
                self._held = request
                break
            joined.append(request)
        return joined

    def _unpack(self, frame: Any) -> Request:
        if frame is self._END:
            self._frames.put(frame)
            raise EOFError
        request, ref, args, kwargs, carried = frame
        return request, ref, args, kwargs, carried


def count_forward_tokens(model: Any, counter: list[int]) -> None:
    """Count the text tokens each forward pass of `model` reads (the padding of batched windows and of batched
    checks is not text: the attention mask's columns of the new tokens say which are)."""

    def hook(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", args[0] if args else None)
        if mask is not None and ids is not None and mask.dim() == 2 and mask.shape[1] >= ids.shape[1]:
            counter[0] += int(mask[:, mask.shape[1] - ids.shape[1]:].sum())
        elif ids is not None:
            counter[0] += int(ids.numel())
        elif kwargs.get("inputs_embeds") is not None:  # an image check's prefill (guards.llama_guard.vision)
            counter[0] += int(kwargs["inputs_embeds"].shape[:-1].numel())

    model.register_forward_pre_hook(hook, with_kwargs=True)


class _Server:
    def __init__(self, guard: Any, name: str, batching: Batching) -> None:
        self.guard = guard
        self.name = name
        self.batching = batching
        self.batched: dict[str, str] = dict(getattr(guard, "batched_methods", {})) if batching.max_calls > 1 else {}
        self.tokens = [0]
        self.batched_calls = 0  # calls answered together with others (STATS)
        if getattr(guard, "model", None) is not None:
            count_forward_tokens(guard.model, self.tokens)

    def serve(self, inbox: Inbox, replies: IO[bytes]) -> None:
        while True:
            try:
                request = inbox.take()
            except EOFError:
                return
            batch_method = self.batched.get(request[1])
            if batch_method is None:
                write_frame(replies, self.answer(request))
                continue
            group = [request, *inbox.join(request[1], self.batching)]
            for reply in self.answer_together(group, batch_method):
                write_frame(replies, reply)

    def answer(self, request: Request) -> tuple[int, bool, Any]:
        import resource

        number, ref, args, kwargs, carried = request
        trace = _call_span(carried, self.name, ref)
        read_before = self.tokens[0]
        failure: Exception | None = None
        try:
            if ref == STATS:
                usage = resource.getrusage(resource.RUSAGE_SELF)
                value: Any = {"tokens": self.tokens[0], "cpu_s": usage.ru_utime + usage.ru_stime,
                              "batched_calls": self.batched_calls}
            elif ref == FLUSH:
                export.flush()
                value = None
            elif ":" in ref:
                value = resolve(ref)(self.guard, *args, **kwargs)
            else:
                value = getattr(self.guard, ref)(*args, **kwargs)
            reply = (number, True, value)
        except Exception as exc:  # every failure goes back as a guard error of the call that caused it
            failure = exc
            reply = (number, False, (type(exc).__name__, str(exc)))
        if trace is not None:
            telemetry.end(trace, {"assistant.guard.tokens": self.tokens[0] - read_before}, error=failure)
        return reply

    def answer_together(self, group: list[Request], batch_method: str) -> list[tuple[int, bool, Any]]:
        """One call of the batch method for the group; each call gets its own outcome (a batch method that raises
        fails every call of the group)."""
        if len(group) == 1:
            return [self.answer(group[0])]
        self.batched_calls += len(group)
        traces = [_call_span(carried, self.name, ref) for _, ref, _, _, carried in group]
        read_before = self.tokens[0]
        try:
            outcomes: list[Any] = list(getattr(self.guard, batch_method)([(args, kwargs) for _, _, args, kwargs, _
                                                                          in group]))
            if len(outcomes) != len(group):
                raise RuntimeError(f"{batch_method} answered {len(outcomes)} of {len(group)} calls")
        except Exception as exc:
            outcomes = [exc] * len(group)
        read = self.tokens[0] - read_before
        replies: list[tuple[int, bool, Any]] = []
        for (number, *_), outcome, trace in zip(group, outcomes, traces, strict=True):
            failed = isinstance(outcome, Exception)
            replies.append((number, False, (type(outcome).__name__, str(outcome))) if failed else
                           (number, True, outcome))
            if trace is not None:  # the batch's tokens, shared: a span says how many calls read them together
                telemetry.end(trace, {"assistant.guard.tokens": read, "assistant.guard.batch": len(group)},
                              error=outcome if failed else None)
        return replies


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    """The child's loop: build the guard from the spec, then answer calls until the input ends."""
    spec = read_frame(requests)
    try:
        if spec.get("threads"):
            import torch

            torch.set_num_threads(int(spec["threads"]))
        guard = resolve(spec["builder"])(**spec["kwargs"])
    except Exception as exc:  # reported to the parent, which raises it where the guard was asked for
        write_frame(replies, ("error", (type(exc).__name__, str(exc))))
        return
    server = _Server(guard, str(spec.get("name", spec["builder"])), spec.get("batching") or Batching())
    write_frame(replies, ("ready", None))
    server.serve(Inbox(requests), replies)


def _call_span(carried: Carried | None, name: str, ref: str) -> telemetry.Trace | None:
    """The child's span of one traced call, under the parent's span it names; None for an untraced call. A bad
    setting never fails the check: the call runs untraced."""
    if carried is None:
        return None
    settings, traceparent = carried
    try:
        tracer = telemetry.tracer_for(settings)
    except Exception:
        logger.warning("the %s process cannot trace", name, exc_info=True)
        return None
    return telemetry.start(tracer, f"process {ref}", {"assistant.guard.process": name, "process.pid": os.getpid()},
                           remote=remote_context(traceparent), settings=settings)


def main() -> None:
    import faulthandler
    import signal
    import sys

    faulthandler.enable()  # a crash in native code says so on stderr, which the parent reports
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group; the parent decides
    replies = os.fdopen(os.dup(1), "wb")  # the protocol keeps the real stdout; prints go to stderr (discarded)
    os.dup2(2, 1)
    serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
