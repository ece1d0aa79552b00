"""MCP tools against a real stdio server written with the SDK's FastMCP (tests/tools/mcp/servers/demo_server.py)."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest

from tests.tools.mcp.conftest import DEMO, demo, tools_config
from tools.base import ToolArgumentError
from tools.mcp import McpStartupError, start_mcp_tools


@pytest.fixture(scope="module")
def toolset():
    config = tools_config(demo("demo", timeout_s=5, side_effects={"write_note": False}, deny=["crash", "slow"],
                               env={"DEMO_SECRET": "ASSISTANT_DEMO_SECRET"}))
    with start_mcp_tools(config, env={"ASSISTANT_DEMO_SECRET": "s3cret", "PATH": "/usr/bin"}) as started:
        yield started


def by_name(toolset):
    return {t.name: t for t in toolset.tools}


def run(tool, arguments):
    return asyncio.run(tool.run(arguments))  # a fresh event loop per call, as Assistant.run() does


def test_tools_listed_with_side_effects_from_annotations_and_overrides(toolset):
    tools = by_name(toolset)
    assert {"echo", "write_note", "lookup", "delete_everything", "fail", "picture", "whoami"} <= set(tools)
    assert "crash" not in tools and "slow" not in tools  # the server's deny list
    assert tools["echo"].side_effects is False  # readOnlyHint and openWorldHint false
    assert tools["lookup"].side_effects is True  # read-only but open-world by the spec's default
    assert tools["delete_everything"].side_effects is True
    assert tools["write_note"].side_effects is False  # no annotations (side effects) but the policy overrides
    echo = tools["echo"]
    assert (echo.server, echo.remote_name, echo.qualified_name) == ("demo", "echo", "demo.echo")
    definition = echo.definition()
    assert definition.parameters == {"type": "object", "required": ["text"],
                                     "properties": {"text": {"type": "string"},
                                                    "times": {"type": "integer", "default": 1}}}
    assert definition.description == "Repeat the text."


def test_a_tool_the_prompt_cannot_name_is_left_out_with_a_notice(toolset):
    assert "9lives" not in by_name(toolset)
    skipped = [n for n in toolset.notices if n.kind == "mcp_tool_skipped"]
    assert len(skipped) == 1 and "9lives" in skipped[0].message and skipped[0].server == "demo"
    assert toolset.startup_ms["demo"] > 0


def test_text_result_and_arguments_checked_against_the_schema_before_the_call(toolset):
    echo = by_name(toolset)["echo"]
    out = run(echo, {"text": "hi", "times": 2})
    assert out.ok and out.output == "hi hi"
    with pytest.raises(ToolArgumentError, match="text: 3 is not of type 'string'"):
        echo.validate({"text": 3})
    with pytest.raises(ToolArgumentError, match="'text' is a required property"):
        echo.validate({})
    bad = run(echo, {"text": "hi", "times": "two"})
    assert not bad.ok and "invalid arguments for echo" in bad.error


def test_a_tool_error_is_a_failed_result_naming_the_tool(toolset):
    out = run(by_name(toolset)["fail"], {"message": "the disk is on fire"})
    assert not out.ok
    assert "demo.fail reported an error" in out.error and "the disk is on fire" in out.error


def test_image_content_is_refused_with_a_note_to_the_model(toolset):
    mixed = run(by_name(toolset)["picture"], {})
    assert mixed.ok and mixed.output.startswith("a red pixel:\n")
    assert "demo.picture also returned an image" in mixed.output and "left out" in mixed.output
    only = run(by_name(toolset)["only_picture"], {})
    assert only.ok and "returned an image" in only.output and "iVBOR" not in only.output


def test_secrets_reach_the_server_by_environment_variable_name(toolset):
    assert run(by_name(toolset)["whoami"], {}).output == "s3cret"


def test_a_hung_call_times_out_naming_the_server():
    with start_mcp_tools(tools_config(demo("sleepy", timeout_s=1, allow=["slow", "echo"]))) as started:
        slow = by_name(started)["slow"]
        began = time.monotonic()
        out = run(slow, {"seconds": 20})
        assert time.monotonic() - began < 5
        assert not out.ok and out.error == "MCP server sleepy did not answer the call to slow within 1 s (timeout_s)"


def test_a_timed_out_call_is_cancelled_on_the_server(tmp_path):
    marker = tmp_path / "cancelled"
    with start_mcp_tools(tools_config(demo("patient", timeout_s=1, allow=["wait", "echo"]))) as started:
        tools = by_name(started)
        out = run(tools["wait"], {"seconds": 30, "marker": str(marker)})
        assert not out.ok and "did not answer the call to wait within 1 s" in out.error
        for _ in range(100):  # MCP's notifications/cancelled reached the server, which stopped the call
            if marker.exists():
                break
            time.sleep(0.05)
        assert marker.read_text() == "cancelled"
        assert run(tools["echo"], {"text": "still here"}).output == "still here"


def test_a_server_that_crashes_mid_call_is_a_clear_error_and_comes_back():
    with start_mcp_tools(tools_config(demo("fragile", allow=["crash", "echo"]))) as started:
        tools = by_name(started)
        out = run(tools["crash"], {})  # the turn in flight gets the clear error
        assert not out.ok and out.error.startswith("MCP server fragile died during the call to crash")
        assert "crashing on purpose" in out.error  # the tail of the server's stderr
        after = run(tools["echo"], {"text": "still there?"})
        assert not after.ok and "being restarted" in after.error
        for _ in range(100):  # restarted after 0.5 s of backoff, plus the interpreter's start
            time.sleep(0.1)
            again = run(tools["echo"], {"text": "back"})
            if again.ok:
                break
        assert again.output == "back" and started.servers["fragile"].restarts == 0


def test_restarts_are_bounded():
    with start_mcp_tools(tools_config(demo("fragile", allow=["crash", "echo"], max_restarts=0))) as started:
        tools = by_name(started)
        assert not run(tools["crash"], {}).ok
        time.sleep(1)
        after = run(tools["echo"], {"text": "still there?"})
        assert not after.ok and after.error.startswith("MCP server fragile is not available")
        assert "restarted" not in after.error


def test_failed_servers_become_notices_and_the_rest_start():
    config = tools_config(
        demo("good", allow=["echo"]),
        demo("quitter", "--mode", "exit-at-start"),
        demo("sleeper", "--mode", "hang-at-start", startup_timeout_s=1),
        {"name": "ghost", "command": "/nonexistent/mcp-server"},
        demo("secretive", env={"TOKEN": "NOT_SET_ANYWHERE_42"}),
    )
    began = time.monotonic()
    with start_mcp_tools(config, env={"PATH": "/usr/bin"}) as started:
        elapsed = time.monotonic() - began
        assert [t.name for t in started.tools] == ["echo"]
        failed = {n.server: n.message for n in started.notices if n.kind == "mcp_server_failed"}
        assert set(failed) == {"quitter", "sleeper", "ghost", "secretive"}
        assert "giving up" in failed["quitter"]  # the server's own stderr explains
        assert "did not start within 1 s (startup_timeout_s" in failed["sleeper"]
        assert "No such file or directory" in failed["ghost"]
        assert "environment variable NOT_SET_ANYWHERE_42 is not set" in failed["secretive"]
        assert all(m.endswith("the agent goes on without its tools") for m in failed.values())
    assert elapsed < 15


def test_a_required_server_that_fails_stops_the_start():
    config = tools_config(demo("good", allow=["echo"]), demo("vital", "--mode", "exit-at-start", required=True))
    with pytest.raises(McpStartupError, match=r"MCP server vital: failed to start .*required"):
        start_mcp_tools(config)


def test_clashing_names_are_prefixed_by_the_server():
    config = tools_config(demo("a", allow=["echo", "lookup"]), demo("b", allow=["echo"]))
    with start_mcp_tools(config, reserved_names=["lookup"]) as started:
        tools = by_name(started)
        assert set(tools) == {"a.echo", "b.echo", "a.lookup"}
        assert run(tools["b.echo"], {"text": "from b"}).output == "from b"


def test_close_stops_the_server_processes():
    marker = "--mode=ok"  # only this test starts the demo server with this spelling
    with start_mcp_tools(tools_config(demo("short-lived", marker, allow=["echo"]))):
        assert _processes_with(marker)
    deadline = time.monotonic() + 5
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _processes_with(marker)


def _processes_with(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-eo", "stat=,args="], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(DEMO) in line and marker in line and not line.startswith("Z")]


async def test_the_async_context_manager_and_concurrent_calls():
    from tools.mcp import open_mcp_tools

    async with open_mcp_tools(tools_config(demo("busy", allow=["echo"]))) as started:
        echo = by_name(started)["echo"]
        outs = await asyncio.gather(*(echo.run({"text": str(i)}) for i in range(20)))
        assert [o.output for o in outs] == [str(i) for i in range(20)]
    after = await echo.run({"text": "late"})
    assert not after.ok and "is not available" in after.error


def test_no_servers_means_no_thread_and_nothing_imported():
    import threading

    before = threading.active_count()
    with start_mcp_tools(tools_config()) as started:
        assert started.tools == () and started.notices == ()
        assert threading.active_count() == before


def test_a_server_printing_junk_to_stdout_still_works_and_prints_nothing(capfd, monkeypatch):
    import logging

    # As in a program that configured no logging (other tests' in-process FastMCP servers install a root handler).
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    with start_mcp_tools(tools_config(demo("chatty", "--mode", "noisy", allow=["echo"]))) as started:
        assert run(by_name(started)["echo"], {"text": "hi"}).output == "hi"
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""  # the SDK's parse-error traceback stays silent
