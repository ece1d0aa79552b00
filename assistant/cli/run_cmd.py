"""`assistant run TEXT --policy FILE`: one guarded agent turn for scripts.

The command only consumes the agent's event stream. Plain mode prints the answer as it is released (or the policy's
refusal); `--json` prints every event as one JSON object per line, the last of type final, refusal or error. The
terminal is the edge where a person can be asked: `--approve ask` prompts here (on stderr/stdin), never in the core.
Exit codes: 0 answered, 3 refused by the policy, 4 guard error (failed closed), 2 bad input, 5 model backend error,
1 any other failure (tool retries exhausted, internal error), 130 stopped with ctrl+c (the last `--json` event is an
`error` of kind `cancelled`; what was printed is kept in the thread, marked stopped).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from assistant.agent.approval import APPROVE, APPROVE_SESSION, deny
from assistant.api import Assistant, new_thread_id
from assistant.cli import exit_codes
from assistant.events import ApprovalRequested, Error, Event, Final, Notice, Refusal, TokenDelta
from assistant.logs import configure_logging, level_for
from assistant.stopped import stopped_event
from guards.policy import PolicyError
from model.backends.errors import BackendError, ModelNotFoundError

ERROR_EXIT = {"model_backend": exit_codes.MODEL_ERROR, "bad_input": exit_codes.BAD_INPUT}
OTHER_FAILURE = 1
CANCELLED_EXIT = 130  # stopped with ctrl+c (SIGINT), as shells report it


def exit_code_for(last: Event | None) -> int:
    if isinstance(last, Final):
        return exit_codes.OK
    if isinstance(last, Refusal):
        return exit_codes.GUARD_ERROR if last.guard_error else exit_codes.REFUSED
    if isinstance(last, Error):
        return ERROR_EXIT.get(last.kind, OTHER_FAILURE)
    return OTHER_FAILURE  # a stream must end in one of the above; anything else is a failure to say so


def approver_for(mode: str):  # -> ApproveCallback

    if mode == "always":
        return lambda request: APPROVE
    if mode == "never":
        return lambda request: deny("Tool calls that need approval are denied in this run (--approve never).")
    return ask_on_terminal


def ask_on_terminal(request: ApprovalRequested):  # -> Decision, bound to the call shown (request.call_id)

    click.echo(f"\nThe assistant wants to call {request.name} with {json.dumps(request.arguments)}", err=True)
    click.echo(f"Approval needed: {request.reason}", err=True)
    try:
        answer = click.prompt(
            "[a]pprove once, approve for the [s]ession, [d]eny", type=click.Choice(["a", "s", "d"]), err=True,
            default="d", show_choices=False,
        )
    except (click.Abort, EOFError):  # no one to ask (stdin closed): fail closed
        return deny("No one could be asked, so the call was denied.").for_call(request.call_id)
    if answer == "a":
        return APPROVE.for_call(request.call_id)
    if answer == "s":
        return APPROVE_SESSION.for_call(request.call_id)
    try:  # the reason reaches the assistant only if it passes the user_input guards (agent/graph.py)
        reason = click.prompt("Reason for the assistant (optional)", default="", show_default=False, err=True)
    except (click.Abort, EOFError):
        reason = ""
    return deny(reason).for_call(request.call_id)


@click.command()
@click.argument("text")
@click.option("--policy", "policy_path", type=click.Path(path_type=Path), required=True, help="The policy file.")
@click.option("--model", "model_spec", default=None,
              help="Main model: scripted:FILE.jsonl, transformers:PATH, openai:URL or tiny:NAME (default: policy's).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON event per line.")
@click.option("--approve", "approve_mode", type=click.Choice(["ask", "always", "never"]), default="ask",
              show_default=True, help="What to do when a tool call needs a human's approval.")
@click.option("--thread", "thread_id", default=None, help="Continue (or start) this conversation thread.")
@click.option("--image", "image_paths", multiple=True, type=click.Path(path_type=Path),
              help="Attach an image (PNG, JPEG, WebP) to TEXT; repeatable. Needs a policy whose guards see images.")
@click.option("--db", "db_path", type=click.Path(path_type=Path), default=None,
              help="SQLite file for conversations (default: under the data dir).")
@click.option("-v", "--verbose", count=True, help="Log to stderr: -v info, -vv debug (default: no logging).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
              default=None, help="Log to stderr from this level on (overrides -v).")
def run(text: str, policy_path: Path, model_spec: str | None, as_json: bool, approve_mode: str,
        thread_id: str | None, image_paths: tuple[Path, ...], db_path: Path | None, verbose: int,
        log_level: str | None) -> None:
    """Run one guarded agent turn on TEXT and print the answer (exit 0), refusal (3) or error."""
    level = level_for(verbose, log_level)
    if level is not None:
        configure_logging(level)
    assistant = _build_or_exit(policy_path, model_spec, db_path, approver_for(approve_mode), as_json)
    images = _images_or_exit(assistant, image_paths, as_json)
    code = asyncio.run(_consume(assistant, text, thread_id, as_json, images))
    sys.exit(code)


def _images_or_exit(assistant: Assistant, paths: tuple[Path, ...], as_json: bool) -> tuple[Any, ...]:
    """The --image files, read and checked; exit 2 with the reason when this policy cannot take them (before any
    model sees anything) or a file is not an acceptable image."""
    from assistant.images import ImageError, ImagesRefused, images_refusal, refuse_images

    if not paths:
        return ()
    try:
        if (why := images_refusal(assistant.policy, assistant.pipeline, assistant.backend)) is not None:
            raise ImagesRefused(why)
        images = assistant.read_images(paths)
        refuse_images(assistant.policy, assistant.pipeline, assistant.backend, images)
    except (ImageError, ImagesRefused) as exc:
        click.echo(f"error: {exc}", err=True)
        _fail("bad_input", str(exc), as_json)
        sys.exit(exit_codes.BAD_INPUT)
    return images


def _fail(kind: str, message: str, as_json: bool) -> None:
    """A failure before or around the turn: stderr for people; with --json also an `error` event on stdout, so a
    script reading the event stream always gets its last event."""
    if as_json:
        click.echo(json.dumps(Error(kind=kind, message=message).to_json(), ensure_ascii=False))


def _build_or_exit(policy_path: Path, model_spec: str | None, db_path: Path | None, approve: Any,
                   as_json: bool = False) -> Assistant:
    try:
        return Assistant.from_policy(policy_path, model=model_spec, approve=approve, db_path=db_path).replace(
            interface="cli"
        )
    except PolicyError as exc:
        for issue in exc.errors:
            click.echo(str(issue), err=True)
        _fail("bad_input", "; ".join(str(issue) for issue in exc.errors) or str(exc), as_json)
        sys.exit(exit_codes.BAD_INPUT)
    except ModelNotFoundError as exc:
        click.echo(f"error: {exc}", err=True)
        _fail("model_backend", str(exc), as_json)
        sys.exit(exit_codes.MODEL_ERROR)
    except (BackendError, ValueError, OSError) as exc:  # unreadable scripted file, bad spec, bad tool reference
        click.echo(f"error: {exc}", err=True)
        _fail("bad_input", str(exc), as_json)
        sys.exit(exit_codes.BAD_INPUT)


async def _consume(assistant, text: str, thread_id: str | None, as_json: bool, images: tuple[Any, ...] = ()) -> int:
    import contextlib
    import signal

    from assistant.agent.graph import ThreadBusy  # lazy: the agent's graph imports langgraph

    thread_id = thread_id or new_thread_id()
    events: list[Event] = []
    # ctrl+c (SIGINT) stops the turn like esc in the chat: closing the stream cancels it (generation, guards, a
    # running sandbox); what was printed stays in the thread, marked stopped; a last `error` event of kind cancelled.
    task, loop = asyncio.current_task(), asyncio.get_running_loop()
    interrupted: list[bool] = []

    def interrupt() -> None:
        if not interrupted and task is not None:
            interrupted.append(True)
            task.cancel()

    loop.add_signal_handler(signal.SIGINT, interrupt)
    try:
        async with contextlib.aclosing(assistant.stream(text, thread=thread_id, images=images)) as stream:
            async for event in stream:
                events.append(event)
                if as_json:
                    click.echo(json.dumps(event.to_json(), ensure_ascii=False))
                else:
                    _print_plain(event)
    except ThreadBusy as exc:
        click.echo(f"error: {exc}", err=True)
        _fail("bad_input", str(exc), as_json)
        return exit_codes.BAD_INPUT
    except asyncio.CancelledError:
        if not interrupted or task is None:
            raise
        task.uncancel()
        stopped = stopped_event(events[-1].elapsed_ms if events else 0.0)
        click.echo(json.dumps(stopped.to_json(), ensure_ascii=False) if as_json else "", err=not as_json)
        click.echo(f"stopped ({stopped.message})", err=True)
        await assistant.keep_stopped(thread_id, text, events)
        return CANCELLED_EXIT
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    return exit_code_for(events[-1] if events else None)


def _print_plain(event: Event) -> None:
    match event:
        case TokenDelta(text=t):
            click.echo(t, nl=False)
        case Final():
            click.echo()
        case Refusal(message=m, guard_error=g):
            click.echo(m)
            if g:
                click.echo("(a safety check failed, so the policy blocked this)", err=True)
        case Error(kind=k, message=m):
            click.echo(f"error ({k}): {m}", err=True)
        case Notice(message=m):
            click.echo(f"note: {m}", err=True)
        case _:
            pass
