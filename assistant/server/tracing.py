"""W3C Trace Context for `assistant serve` (docs/OBSERVABILITY.md): a server span per request when the policy
traces, the child of the caller's `traceparent`, current while the request runs (so its turn is a child of it); the
response names the trace in a `traceresponse` header (Trace Context level 2).

Bare ASGI, outermost: the span covers the perimeter's and the limits' refusals too. Not tracing, a request costs one
settings check and passes through untouched.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from assistant.agent.tracing import settings_for
from model import telemetry
from model.telemetry.propagation import remote_context, traceresponse

_THREAD_PATH = re.compile(r"^(/v1/threads/)[^/]+")  # a thread id in a span's name would make one name per thread
UNTRACED = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes: a trace every few seconds of nothing


class TraceContext:
    def __init__(self, app: Any, policy: Callable[[], Any]) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        traced = scope["type"] == "http" and scope.get("path") not in UNTRACED
        settings = settings_for(self.policy()) if traced else None
        tracer = telemetry.tracer_for(settings)
        if tracer is None:
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        parent = remote_context(headers.get(b"traceparent", b"").decode("latin-1"),
                                headers.get(b"tracestate", b"").decode("latin-1") or None)
        method, path = scope.get("method", ""), scope.get("path", "")
        route = _THREAD_PATH.sub(r"\1{thread_id}", path)
        trace = telemetry.start(tracer, f"{method} {route}", {
            "http.request.method": method, "url.path": path, "url.scheme": scope.get("scheme", "http"),
        }, remote=parent, kind="server", settings=settings)

        async def send_traced(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message.get("status", 0))
                telemetry.annotate(trace, {"http.response.status_code": status})
                if status >= 500:
                    telemetry.mark_error(trace, str(status))
                extra = [(b"traceresponse", traceresponse(trace).encode("ascii"))]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        failure: BaseException | None = None
        try:
            with telemetry.within(trace):
                await self.app(scope, receive, send_traced)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            telemetry.end(trace, error=failure)


__all__ = ["TraceContext"]
