"""Meta's text for a tool result of the code interpreter (pure).

Same shape as llama-models' / llama-stack's `ToolResponseGenerator`: `completed` or `failed`, then
`\\n[stdout]...[/stdout]` when there is standard output and `\\n[stderr]...[/stderr]` when there is standard error.
"""

from __future__ import annotations

TRUNCATED = "\n[... output truncated]"


def format_tool_response(ok: bool, stdout: str = "", stderr: str = "") -> str:
    text = "completed" if ok else "failed"
    if stdout:
        text += f"\n[stdout]{stdout}[/stdout]"
    if stderr:
        text += f"\n[stderr]{stderr}[/stderr]"
    return text


def _cut_head(text: str, room: int) -> str:
    if len(text) <= room:
        return text
    return text[: room - len(TRUNCATED)] + TRUNCATED if room > len(TRUNCATED) else text[:room]


def _cut_tail(text: str, room: int) -> str:
    marker = TRUNCATED.lstrip("\n") + "\n"
    if len(text) <= room:
        return text
    return marker + text[len(text) - (room - len(marker)) :] if room > len(marker) else text[len(text) - room :]


def fit_tool_response(ok: bool, stdout: str, stderr: str, max_chars: int) -> str:
    """`format_tool_response`, shortened to at most `max_chars` characters when it has to be.

    Standard output keeps its beginning; standard error keeps its end (the last traceback lines say what failed).
    """
    full = format_tool_response(ok, stdout, stderr)
    if len(full) <= max_chars:
        return full
    wrapper = len("\n[stdout][/stdout]")
    budget = max(max_chars - len("completed" if ok else "failed") - wrapper * (bool(stdout) + bool(stderr)), 0)
    err_room = min(len(stderr), budget // 2) if stdout else budget
    out_room = budget - err_room
    if len(stdout) < out_room:  # short stdout: stderr may use what stdout leaves
        err_room, out_room = budget - len(stdout), len(stdout)
    return format_tool_response(ok, _cut_head(stdout, out_room), _cut_tail(stderr, err_room))[:max_chars]
