"""`tools.mcp` in the policy file, and the pure parts of the MCP tools (names, results, side effects)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from guards.policy import PolicyError, parse_policy_text
from tools.mcp.naming import exposed_names, split_qualified
from tools.mcp.results import to_output
from tools.mcp.tool import side_effects_from

GOOD = """\
version: 1
tools:
  mcp:
    - name: time
      command: python
      args: [-m, mcp_server_time]
      env: {TZ: ASSISTANT_TZ}
      side_effects: {get_current_time: false}
      timeout_s: 5
    - name: web
      url: https://example.com/mcp
      headers:
        Authorization: {env: WEB_TOKEN, prefix: "Bearer "}
      required: true
"""


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as caught:
        parse_policy_text(text, file="p.yaml")
    return [str(issue) for issue in caught.value.errors]


def test_a_valid_mcp_section():
    servers = parse_policy_text(GOOD).tools.mcp
    assert [s.name for s in servers] == ["time", "web"]
    assert servers[0].env == {"TZ": "ASSISTANT_TZ"} and servers[0].side_effects == {"get_current_time": False}
    assert servers[1].headers["Authorization"].prefix == "Bearer " and servers[1].required


def test_errors_name_file_line_and_key():
    text = """\
version: 1
tools:
  mcp:
    - name: both
      command: x
      url: http://x
    - name: has.dot
      command: x
    - name: web
      url: https://example.com
      headers:
        Authorization: "Bearer abc123"
    - name: leaky
      command: x
      env: {TOKEN: "abc 123 secret"}
    - name: typo
      command: x
      timeot_s: 3
"""
    assert problems(text) == [
        "p.yaml:4: tools.mcp[0]: server both: write exactly one of `command` (stdio) or `url` (streamable HTTP)",
        "p.yaml:7: tools.mcp[1].name: expected a server name (letters, digits, _ and -, not starting with a digit; "
        "no dots: `server.tool` names one server's tool) (got 'has.dot')",
        "p.yaml:12: tools.mcp[2].headers.Authorization: write a header as {env: VARIABLE_NAME, prefix: \"Bearer \"}: "
        "its value is read from the environment, never written in the policy file",
        "p.yaml:15: tools.mcp[3].env.TOKEN: expected the NAME of an environment variable (letters, digits, _); its "
        "value is read when the server starts, so no secret is written in the policy (got 'abc 123 secret')",
        "p.yaml:18: tools.mcp[4].timeot_s: unknown key; did you mean `timeout_s`? (allowed here: name, command, args, "
        "env, cwd, url, headers, allow, deny, side_effects, timeout_s, startup_timeout_s, required, on_change, "
        "max_restarts, trace_context)",
    ]


def test_transport_specific_keys_and_unique_names():
    text = "version: 1\ntools:\n  mcp:\n    - {name: a, url: 'http://h', env: {X: Y}}\n" \
           "    - {name: b, command: x, headers: {H: {env: Y}}}\n    - {name: c, url: 'file:///etc/passwd'}\n"
    found = problems(text)
    assert "server a: env only apply to a `command` (stdio) server" in found[0]
    assert "server b: `headers` only apply to a `url` (streamable HTTP) server" in found[1]
    assert "`url` must be an http:// or https:// address" in found[2]
    twice = "version: 1\ntools:\n  mcp:\n    - {name: a, command: x}\n    - {name: a, command: y}\n"
    assert problems(twice) == ["p.yaml:3: tools.mcp: two MCP servers are named 'a'; names must be unique"]


def test_names_are_prefixed_only_where_they_clash():
    names = exposed_names([("a", "read"), ("b", "read"), ("a", "write"), ("b", "list"), ("c", "x.y")],
                          reserved=["list"])
    assert names == {("a", "read"): "a.read", ("b", "read"): "b.read", ("a", "write"): "write",
                     ("b", "list"): "b.list", ("c", "x.y"): "c.x.y"}
    assert split_qualified("c.x.y") == ("c", "x.y") and split_qualified("plain") is None


@pytest.mark.parametrize(("annotations", "override", "expected"), [
    (None, None, True),
    ({}, None, True),
    ({"readOnlyHint": True}, None, True),  # open world by the spec's default
    ({"readOnlyHint": True, "openWorldHint": False}, None, False),
    ({"readOnlyHint": True, "openWorldHint": True}, None, True),
    ({"readOnlyHint": False, "destructiveHint": False, "openWorldHint": False}, None, True),
    ({"destructiveHint": True}, False, False),
    ({"readOnlyHint": True, "openWorldHint": False}, True, True),
])
def test_side_effects_from_annotations(annotations, override, expected):
    assert side_effects_from(annotations, override) is expected


def _result(*content, is_error=False, structured=None):
    return SimpleNamespace(content=list(content), isError=is_error, structuredContent=structured)


def test_results_keep_text_and_name_what_was_refused():
    text = SimpleNamespace(type="text", text="hello")
    out = to_output(_result(text, SimpleNamespace(type="audio"), SimpleNamespace(type="resource"),
                            SimpleNamespace(type="resource_link")), "s.t")
    assert out.ok and out.output.startswith("hello\n[s.t also returned audio, an embedded resource, a resource link;")
    assert to_output(_result(structured={"b": 1, "a": "é"}), "s.t").output == '{"a": "é", "b": 1}'
    failed = to_output(_result(text, is_error=True), "s.t")
    assert not failed.ok and failed.error == "s.t reported an error: hello"
    assert to_output(_result(is_error=True), "s.t").error == "s.t reported an error: (no message)"
