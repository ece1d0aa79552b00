"""Whether a process traces, and where to: the policy's `telemetry:` values and the standard `OTEL_*` environment.

A pure function of its inputs (the environment is passed in), so every rule here is tested without a collector:

- `OTEL_SDK_DISABLED=true`, or the policy's `enabled: false`: no tracing.
- `OTEL_TRACES_EXPORTER=none`: no tracing unless the policy says `enabled: true`.
- `OTEL_TRACES_EXPORTER=otlp`, `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or the policy's
  `enabled: true`: traces over OTLP/HTTP (protobuf) to, in this order, the variable the policy names
  (`endpoint_env`, the traces URL as is), `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (as is), `OTEL_EXPORTER_OTLP_ENDPOINT`
  (+ `/v1/traces`, as the OpenTelemetry specification says), else http://localhost:4318/v1/traces.
- none of these: no tracing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

DEFAULT_ENDPOINT = "http://localhost:4318/v1/traces"
TRACES_PATH = "/v1/traces"
SDK_DISABLED = "OTEL_SDK_DISABLED"
TRACES_EXPORTER = "OTEL_TRACES_EXPORTER"
OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
OTLP_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
OTLP_HEADERS = "OTEL_EXPORTER_OTLP_HEADERS"
OTLP_TRACES_HEADERS = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
SERVICE_NAME = "OTEL_SERVICE_NAME"


class TelemetryConfigError(ValueError):
    """Tracing was asked for but cannot be set up as written (a named variable unset, a header without `=`)."""


@dataclass(frozen=True)
class Settings:
    """Where this process sends its traces: hashable, so one exporter serves every turn with equal settings."""

    endpoint: str = DEFAULT_ENDPOINT
    headers: tuple[tuple[str, str], ...] = ()
    sample_ratio: float = 1.0
    service_name: str = "guarded-assistant"


def resolve_settings(
    environ: Mapping[str, str],
    *,
    enabled: bool | None = None,
    endpoint_env: str | None = None,
    headers_env: str | None = None,
    sample_ratio: float = 1.0,
    service_name: str = "guarded-assistant",
) -> Settings | None:
    """The settings to trace with, or None when tracing is off (the keyword arguments are the policy's `telemetry:`
    section). Raises TelemetryConfigError when tracing is on but a variable the policy names is missing."""
    if _true(environ.get(SDK_DISABLED)) or enabled is False:
        return None
    exporter = environ.get(TRACES_EXPORTER, "").strip().lower()
    asked = exporter == "otlp" or bool(environ.get(OTLP_ENDPOINT) or environ.get(OTLP_TRACES_ENDPOINT))
    if enabled is None and (exporter == "none" or not asked):
        return None
    return Settings(
        endpoint=_endpoint(environ, endpoint_env),
        headers=_headers(environ, headers_env),
        sample_ratio=sample_ratio,
        service_name=environ.get(SERVICE_NAME) or service_name,
    )


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _named(environ: Mapping[str, str], name: str, key: str) -> str:
    value = environ.get(name)
    if not value:
        raise TelemetryConfigError(f"environment variable {name} (telemetry.{key}) is not set")
    return value


def _endpoint(environ: Mapping[str, str], endpoint_env: str | None) -> str:
    if endpoint_env is not None:
        return _named(environ, endpoint_env, "endpoint_env")
    if environ.get(OTLP_TRACES_ENDPOINT):
        return environ[OTLP_TRACES_ENDPOINT]
    if environ.get(OTLP_ENDPOINT):
        return environ[OTLP_ENDPOINT].rstrip("/") + TRACES_PATH
    return DEFAULT_ENDPOINT


def _headers(environ: Mapping[str, str], headers_env: str | None) -> tuple[tuple[str, str], ...]:
    if headers_env is not None:
        return parse_headers(_named(environ, headers_env, "headers_env"), headers_env)
    for name in (OTLP_TRACES_HEADERS, OTLP_HEADERS):
        if environ.get(name):
            return parse_headers(environ[name], name)
    return ()


def parse_headers(text: str, source: str) -> tuple[tuple[str, str], ...]:
    """`key=value,key2=value2` (values URL-encoded), the OTLP exporter's header format."""
    pairs = []
    for index, item in enumerate(text.split(","), 1):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():  # the item is not echoed: a header's value is often a key
            raise TelemetryConfigError(f"{source}: item {index} is not key=value (headers are key=value,key=value)")
        pairs.append((unquote(key.strip()).lower(), unquote(value.strip())))
    return tuple(pairs)


__all__ = ["DEFAULT_ENDPOINT", "Settings", "TelemetryConfigError", "parse_headers", "resolve_settings"]
