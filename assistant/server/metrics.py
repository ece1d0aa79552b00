"""Prometheus metrics (`GET /metrics`, text format via prometheus-client), one registry per app.

requests by route and status; guard verdicts by stage, guard and decision; guard, model and turn latency
histograms; refusals by stage; guard errors; tool runs; turns in progress; admission: requests waiting for a turn
slot, their waits by outcome, and the 429s by reason (admission.py).
"""

from __future__ import annotations

from typing import Any

from assistant.events import GuardVerdict, Refusal, ToolResult

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        r = self.registry = CollectorRegistry()
        self.requests = Counter("assistant_http_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=r)
        self.verdicts = Counter("assistant_guard_verdicts", "Guard verdicts", ["stage", "guard", "decision"],
                                registry=r)
        self.guard_latency = Histogram("assistant_guard_latency_seconds", "Guard latency per verdict", ["guard"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.model_latency = Histogram("assistant_model_latency_seconds", "Main model: one completion",
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.turn_latency = Histogram("assistant_turn_seconds", "One turn, guards and model included", ["api"],
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.refusals = Counter("assistant_refusals", "Turns refused by the policy", ["stage"], registry=r)
        self.guard_errors = Counter("assistant_guard_errors", "Guard errors (failed closed)", ["stage", "guard"],
                                    registry=r)
        self.tool_runs = Counter("assistant_tool_runs", "Tool results by tool and outcome", ["tool", "ok"],
                                 registry=r)
        self.active_turns = Gauge("assistant_active_turns", "Turns in progress", registry=r)
        self.queue_depth = Gauge("assistant_queue_depth", "Requests waiting for a turn slot", registry=r)
        self.queue_wait = Histogram("assistant_queue_wait_seconds", "Time a request waited for a turn slot, by "
                                    "outcome (admitted, timeout, cancelled)", ["outcome"], buckets=LATENCY_BUCKETS,
                                    registry=r)
        self.queue_rejections = Counter("assistant_queue_rejections", "Requests answered 429 by admission, by reason "
                                        "(full: the queue was full; timeout: no slot before server.queue_timeout_s)",
                                        ["reason"], registry=r)

    def observe(self, event: Any) -> None:
        if isinstance(event, GuardVerdict):
            self.verdicts.labels(event.stage, event.guard, event.decision).inc()
            self.guard_latency.labels(event.guard).observe(event.latency_ms / 1000)
            if event.error is not None:
                self.guard_errors.labels(event.stage, event.guard).inc()
        elif isinstance(event, Refusal):
            self.refusals.labels(event.stage).inc()
        elif isinstance(event, ToolResult):
            self.tool_runs.labels(event.name, str(event.ok).lower()).inc()

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RequestMetrics:
    """ASGI middleware counting responses by route template (never the raw path: thread ids would explode labels)."""

    def __init__(self, app: Any, metrics: Any) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "other"
            metrics = self.metrics()
            if metrics is not None:
                metrics.requests.labels(path, str(status["code"])).inc()
