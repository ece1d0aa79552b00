"""code_interpreter: Meta's result format, limits in words, refusal without isolation, and the weaker fallbacks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tools.code_interpreter import CodeInterpreter
from tools.response_format import fit_tool_response, format_tool_response
from tools.sandbox import IsolationUnavailableError, SandboxLimits, run_python
from tools.sandbox.isolation import is_root


def test_format_matches_llama_stack_tool_response_generator() -> None:
    generator = pytest.importorskip("llama_stack.models.llama.llama3.prompt_templates.tool_response")
    cases = [("success", "42\n", None), ("failure", None, "Traceback\nValueError"), ("success", "a", "b"),
             ("success", None, None)]
    for status, stdout, stderr in cases:
        expected = generator.ToolResponseGenerator().gen(status=status, stdout=stdout, stderr=stderr).render()
        assert format_tool_response(status == "success", stdout or "", stderr or "") == expected


@given(st.booleans(), st.text(max_size=300), st.text(max_size=300), st.integers(min_value=60, max_value=400))
def test_fitted_response_never_exceeds_the_cap(ok: bool, stdout: str, stderr: str, cap: int) -> None:
    text = fit_tool_response(ok, stdout, stderr, cap)
    assert len(text) <= cap
    assert text.startswith("completed" if ok else "failed")
    if len(format_tool_response(ok, stdout, stderr)) <= cap:
        assert text == format_tool_response(ok, stdout, stderr)


@pytest.mark.usefixtures("bwrap_ready")
async def test_success_failure_and_limits_in_meta_format(small_limits: SandboxLimits) -> None:
    interpreter = CodeInterpreter(small_limits)
    assert interpreter.builtin and not interpreter.side_effects
    ok = await interpreter.run({"code": "print(6 * 7)"})
    assert ok.ok and ok.output == "completed\n[stdout]42\n[/stdout]" and ok.error is None
    failed = await interpreter.run({"code": "1 / 0"})
    assert not failed.ok and failed.output.startswith("failed\n[stderr]Traceback")
    assert failed.output.endswith("ZeroDivisionError: division by zero\n[/stderr]")
    flood = await interpreter.run({"code": "while True: print('y' * 1000)"})
    assert flood.limits_hit == ("output",) and len(flood.output) <= small_limits.max_output_chars
    assert "output limit (2000 characters)" in (flood.error or "")


async def test_required_isolation_without_bwrap_refuses_to_run(small_limits: SandboxLimits) -> None:
    with pytest.raises(IsolationUnavailableError, match="not installed"):
        await run_python("print(1)", small_limits, bwrap="/nonexistent/bwrap")
    out = await CodeInterpreter(small_limits, bwrap="/nonexistent/bwrap").run({"code": "print(1)"})
    assert out.refused and not out.ok and "isolation: required" in (out.error or "")


@pytest.mark.skipif(not is_root(), reason="the unshare fallback needs root")
async def test_best_effort_falls_back_to_unshare_and_still_isolates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_fallbacksecret")
    limits = SandboxLimits(isolation="best_effort", cpu_seconds=1, wall_seconds=3.0, memory_mb=256,
                           max_processes=16, max_file_mb=1, max_output_chars=4000)
    code = (
        "import os, socket\n"
        "init_env = open('/proc/1/environ', 'rb').read()\n"
        "print(os.getuid() != 0, 'HF_TOKEN' in os.environ, b'hf_fallbacksecret' in init_env)\n"
        "for path in ['/etc/shadow', '/root']:\n"
        "    try: os.listdir(path) if os.path.isdir(path) else open(path).read(); print('READ', path)\n"
        "    except OSError: print('denied')\n"
        "try: socket.create_connection(('1.1.1.1', 80), timeout=1); print('CONNECTED')\n"
        "except OSError: print('offline')\n"
    )
    result = await run_python(code, limits, bwrap="/nonexistent/bwrap")
    assert result.mechanism == "unshare" and "bwrap unavailable" in result.isolation_detail
    assert result.stdout.splitlines() == ["True False False", "denied", "denied", "offline"], result.stderr
    bomb = await run_python("import os\nfor _ in range(100): os.fork()\n", limits, bwrap="/nonexistent/bwrap")
    assert "processes" in bomb.limits_hit
