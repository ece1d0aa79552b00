"""`telemetry`: OpenTelemetry traces of every turn, model call, guard check and tool run (docs/OBSERVABILITY.md).

`enabled: null` (default) follows the standard environment: `OTEL_TRACES_EXPORTER=otlp`, `OTEL_EXPORTER_OTLP_ENDPOINT`
or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` turn tracing on, `OTEL_SDK_DISABLED=true` turns it off. `true` traces even
without them (to the endpoint below, else http://localhost:4318); `false` never traces, whatever the environment says.
Like the database URL, the endpoint and the headers (which carry API keys) are never written in the policy: only the
names of the environment variables that hold them.
"""

from __future__ import annotations

import re

from pydantic import field_validator

from guards.policy.base import Flag, NonEmptyStr, PolicyModel, Probability

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _check_env_name(value: str, key: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise ValueError(f"{key}: {value!r} is not an environment variable name (letters, digits, _)")
    return value


class TelemetryConfig(PolicyModel):
    enabled: Flag | None = None  # null: on when the OTEL_* environment asks for traces (see above)
    # The variable holding the OTLP/HTTP traces URL (http://collector:4318/v1/traces); null: the OTEL_* variables
    endpoint_env: NonEmptyStr | None = None
    # The variable holding the exporter's headers, `key=value,key2=value2` (OTEL_EXPORTER_OTLP_HEADERS' format)
    headers_env: NonEmptyStr | None = None
    sample_ratio: Probability = 1.0  # share of new traces recorded; a caller's sampled traceparent is always followed
    service_name: NonEmptyStr = "guarded-assistant"  # the `service.name` resource attribute (OTEL_SERVICE_NAME wins)

    @field_validator("endpoint_env", "headers_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        return None if value is None else _check_env_name(value, "telemetry")


__all__ = ["TelemetryConfig"]
