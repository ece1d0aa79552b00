"""OpenTelemetry traces, at the lowest layer so that the agent, the tools and the guards all make their spans here.

`settings` decides whether to trace (the policy's `telemetry:` and the `OTEL_*` environment), `spans` makes spans at
no cost while tracing is off, `export` builds the SDK's provider and OTLP/HTTP exporter (only once tracing is on),
`propagation` reads and writes W3C Trace Context headers. docs/OBSERVABILITY.md says what each span carries.
"""

from model.telemetry.settings import Settings, TelemetryConfigError, resolve_settings
from model.telemetry.spans import (
    TextMode,
    Trace,
    annotate,
    child,
    current,
    each_within,
    end,
    install_provider,
    mark_error,
    span,
    start,
    text_attributes,
    tracer_for,
    within,
)

__all__ = [
    "Settings",
    "TelemetryConfigError",
    "TextMode",
    "Trace",
    "annotate",
    "child",
    "current",
    "each_within",
    "end",
    "install_provider",
    "mark_error",
    "resolve_settings",
    "span",
    "start",
    "text_attributes",
    "tracer_for",
    "within",
]
