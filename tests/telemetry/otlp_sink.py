"""A local OTLP/HTTP (protobuf) trace collector that keeps what it is sent: the tests read spans back from it, and
bench/tracing.py exports to it from another process (`python -m tests.telemetry.otlp_sink` prints its URL).

It decodes each `POST /v1/traces` (an ExportTraceServiceRequest) and keeps one `SinkSpan` per span; `GET /stats`
answers the counts as JSON and `GET /spans` every kept span. Nothing here is a collector to deploy.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass(frozen=True)
class SinkSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root
    service: str
    attributes: dict[str, Any]


class Sink:
    """The collector, serving on a daemon thread from `start()` until `stop()`."""

    def __init__(self, keep: bool = True) -> None:
        self.keep = keep  # the bench only counts (keeping every span of a long run costs memory for nothing)
        self.spans: list[SinkSpan] = []
        self.requests = 0
        self.bytes = 0
        self.count = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the sink first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self, port: int = 0) -> Sink:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/v1/traces":
                    self.send_error(404)
                    return
                sink.receive(body)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def do_GET(self) -> None:
                if self.path == "/stats":
                    payload: Any = sink.stats()
                elif self.path == "/spans":
                    payload = [asdict(s) for s in sink.snapshot()]
                else:
                    self.send_error(404)
                    return
                data = json.dumps(payload).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: one line per export would drown the test output

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self._server.serve_forever, name="otlp sink", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        received: list[SinkSpan] = []
        for resource_spans in request.resource_spans:
            service = next((a.value.string_value for a in resource_spans.resource.attributes
                            if a.key == "service.name"), "")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(SinkSpan(
                        span.name, span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex(), service,
                        {a.key: _value(a.value) for a in span.attributes} if self.keep else {},
                    ))
        with self._lock:
            self.requests += 1
            self.bytes += len(body)
            self.count += len(received)
            if self.keep:
                self.spans.extend(received)

    def snapshot(self) -> list[SinkSpan]:
        with self._lock:
            return list(self.spans)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"requests": self.requests, "bytes": self.bytes, "spans": self.count}


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="a local OTLP/HTTP trace sink (prints its URL, serves until killed)")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--count-only", action="store_true", help="keep counts, not the spans")
    args = parser.parse_args(argv)
    sink = Sink(keep=not args.count_only).start(args.port)
    print(sink.url, flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
