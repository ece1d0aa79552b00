"""When a process traces and where to: the policy's `telemetry:` and the OTEL_* environment (pure rules)."""

from __future__ import annotations

import re

import pytest

from guards.policy import PolicyError, parse_policy_text
from model.telemetry import Settings, TelemetryConfigError, resolve_settings
from model.telemetry.settings import DEFAULT_ENDPOINT


def test_nothing_set_means_off() -> None:
    assert resolve_settings({}) is None
    assert resolve_settings({"OTEL_SERVICE_NAME": "x", "OTEL_EXPORTER_OTLP_HEADERS": "a=b"}) is None


@pytest.mark.parametrize("environ", [
    {"OTEL_TRACES_EXPORTER": "otlp"},
    {"OTEL_TRACES_EXPORTER": " OTLP "},
    {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
    {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"},
])
def test_the_standard_variables_turn_it_on(environ: dict[str, str]) -> None:
    assert isinstance(resolve_settings(environ), Settings)


def test_endpoints_follow_the_specification() -> None:
    assert resolve_settings({"OTEL_TRACES_EXPORTER": "otlp"}).endpoint == DEFAULT_ENDPOINT
    # the generic endpoint gets the signal's path; the traces endpoint is used as written
    assert resolve_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}).endpoint == "http://c:4318/v1/traces"
    both = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b/x"}
    assert resolve_settings(both).endpoint == "http://b/x"
    # the policy's variable wins over both
    mine = {**both, "MY_COLLECTOR": "https://collector.example/v1/traces"}
    assert resolve_settings(mine, endpoint_env="MY_COLLECTOR").endpoint == "https://collector.example/v1/traces"


def test_off_switches_win() -> None:
    on = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
    assert resolve_settings({**on, "OTEL_SDK_DISABLED": "true"}) is None
    assert resolve_settings({**on, "OTEL_SDK_DISABLED": "TRUE"}, enabled=True) is None
    assert resolve_settings(on, enabled=False) is None
    assert resolve_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_TRACES_EXPORTER": "none"}) is None
    assert resolve_settings({"OTEL_SDK_DISABLED": "false", **on}) is not None


def test_enabled_true_traces_without_any_variable() -> None:
    settings = resolve_settings({}, enabled=True, sample_ratio=0.25, service_name="support-bot")
    assert settings == Settings(DEFAULT_ENDPOINT, (), 0.25, "support-bot")
    assert resolve_settings({"OTEL_SERVICE_NAME": "from-env"}, enabled=True).service_name == "from-env"


def test_headers_come_from_variables_only() -> None:
    environ = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_HEADERS": "Api-Key=abc%3D%3D, x-team = ops"}
    assert resolve_settings(environ).headers == (("api-key", "abc=="), ("x-team", "ops"))
    environ["OTEL_EXPORTER_OTLP_TRACES_HEADERS"] = "only=traces"
    assert resolve_settings(environ).headers == (("only", "traces"),)
    environ["PHOENIX_HEADERS"] = "authorization=Bearer%20s3cret"
    assert resolve_settings(environ, headers_env="PHOENIX_HEADERS").headers == (("authorization", "Bearer s3cret"),)


def test_a_named_variable_that_is_unset_or_malformed_is_a_clear_error() -> None:
    with pytest.raises(TelemetryConfigError, match=re.escape("MY_COLLECTOR (telemetry.endpoint_env) is not set")):
        resolve_settings({}, enabled=True, endpoint_env="MY_COLLECTOR")
    with pytest.raises(TelemetryConfigError, match="item 2 is not key=value") as caught:
        resolve_settings({"H": "a=b,Bearer s3cret"}, enabled=True, headers_env="H")
    assert "s3cret" not in str(caught.value)  # a header's value is never echoed


def test_the_policy_section() -> None:
    policy = parse_policy_text("version: 1\ntelemetry: {enabled: true, endpoint_env: OTLP_URL, sample_ratio: 0.1}\n")
    assert policy.telemetry.enabled is True and policy.telemetry.sample_ratio == 0.1
    assert parse_policy_text("version: 1\n").telemetry.enabled is None
    for bad in ("telemetry: {endpoint: http://x}", "telemetry: {endpoint_env: 'not a name'}",
                "telemetry: {sample_ratio: 2}", "telemetry: {enabled: 'yes'}"):
        with pytest.raises(PolicyError):
            parse_policy_text(f"version: 1\n{bad}\n")
