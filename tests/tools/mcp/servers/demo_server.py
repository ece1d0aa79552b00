"""A small MCP server for the tests, written with the SDK's own FastMCP (run as a script, stdio or streamable HTTP).

    python demo_server.py [--mode ok|exit-at-start|hang-at-start|noisy] [--http PORT]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import anyio
from mcp.server.fastmcp import Context, FastMCP, Image
from mcp.types import ToolAnnotations

READ_ONLY_LOCAL = ToolAnnotations(readOnlyHint=True, openWorldHint=False)
PNG_1PX = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def build(port: int) -> FastMCP:
    server = FastMCP("demo", port=port, log_level="WARNING")

    @server.tool(annotations=READ_ONLY_LOCAL)
    def echo(text: str, times: int = 1) -> str:
        """Repeat the text."""
        return " ".join([text] * times)

    @server.tool()
    def write_note(path: str, text: str) -> str:
        """Write a note (no annotations: counts as side-effecting)."""
        return f"wrote {len(text)} characters to {path}"

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def lookup(query: str) -> str:
        """Read-only, but open-world by the spec's default."""
        return f"result for {query}"

    @server.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True, openWorldHint=False))
    def delete_everything(confirm: bool) -> str:
        """Destructive."""
        return "deleted"

    @server.tool(annotations=READ_ONLY_LOCAL)
    def fail(message: str) -> str:
        """Always raises."""
        raise ValueError(message)

    @server.tool(annotations=READ_ONLY_LOCAL)
    def slow(seconds: float) -> str:
        """Sleeps (blocking the server), then answers."""
        time.sleep(seconds)
        return "finally"

    @server.tool(annotations=READ_ONLY_LOCAL)
    async def wait(seconds: float, marker: str) -> str:
        """Waits without blocking the server; writes `marker` if the client cancels it (notifications/cancelled)."""
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            Path(marker).write_text("cancelled", encoding="utf-8")
            raise
        return "waited"

    @server.tool(annotations=READ_ONLY_LOCAL)
    def crash() -> str:
        """The process dies in the middle of the call."""
        sys.stderr.write("demo server: crashing on purpose\n")
        sys.stderr.flush()
        os._exit(3)

    @server.tool(annotations=READ_ONLY_LOCAL)
    def picture() -> list:
        """Text and an image."""
        return ["a red pixel:", Image(data=PNG_1PX, format="png")]

    @server.tool(annotations=READ_ONLY_LOCAL)
    def only_picture() -> Image:
        """Only an image."""
        return Image(data=PNG_1PX, format="png")

    @server.tool(annotations=READ_ONLY_LOCAL)
    def whoami(ctx: Context) -> str:
        """The Authorization header of the HTTP request, or the DEMO_SECRET variable under stdio."""
        request = ctx.request_context.request
        if request is not None:
            return str(request.headers.get("authorization"))
        return str(os.environ.get("DEMO_SECRET"))

    @server.tool(annotations=READ_ONLY_LOCAL)
    def trace_context(ctx: Context) -> str:
        """The trace context the call came with: its params._meta and (over HTTP) its headers, as JSON."""
        meta = ctx.request_context.meta
        extra = dict(meta.model_extra or {}) if meta is not None else {}
        request = ctx.request_context.request
        headers = {k: request.headers.get(k) for k in ("traceparent", "tracestate")} if request is not None else None
        return json.dumps({"meta": {k: extra.get(k) for k in ("traceparent", "tracestate")}, "headers": headers})

    @server.tool(name="9lives", annotations=READ_ONLY_LOCAL)
    def nine_lives() -> str:
        """A name the prompt format cannot carry."""
        return "meow"

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", default="ok", choices=["ok", "exit-at-start", "hang-at-start", "noisy"])
    parser.add_argument("--http", type=int, default=0)
    args = parser.parse_args()
    if args.mode == "exit-at-start":
        sys.stderr.write("demo server: missing configuration, giving up\n")
        sys.exit(2)
    if args.mode == "hang-at-start":
        time.sleep(120)
    if args.mode == "noisy":  # a server that prints to stdout, where only JSON-RPC belongs
        print("demo server: hello, world", flush=True)
    server = build(args.http)
    server.run(transport="streamable-http" if args.http else "stdio")


if __name__ == "__main__":
    main()
