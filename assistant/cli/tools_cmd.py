"""`assistant tools`: list the tools a policy gives the model, and run one exactly as the agent would.

Without --policy both commands use the default policy with code_interpreter enabled and Code Shield as the only
guard (the model guards need downloads). That stays safe because the default sandbox settings apply (isolation:
required, so the code runs only inside bubblewrap, with no network and small limits); the web tools stay off (they
need keys and send the query off the machine). `tools run` takes the agent's own tool path (tools.executor).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from assistant.cli import exit_codes
from assistant.home import default_audit_path
from assistant.models import guard_model_dirs
from guards.policy import Policy, PolicyError, load_policy, parse_policy_text
from guards.runtime.pipeline import GuardPipeline
from model.messages import BUILTIN_TOOLS, ToolCall
from tools.base import ToolOutput
from tools.custom import ToolLoadError
from tools.executor import ToolPath
from tools.listing import tool_rows
from tools.mcp import McpStartupError, McpToolset, start_mcp_tools
from tools.mcp.pins import LockFileError, lock_path, pin_entry, pin_status, pins_text, read_pins
from tools.mcp.vetting import vetting_for
from tools.registry import ToolRegistry, add_mcp_tools, build_registry

# Without --policy: code_interpreter on, and Code Shield as the only guard (no model downloads needed); pass the
# agent's --policy to run every guard it runs.
DEFAULT_POLICY_TEXT = """version: 1
tools:
  builtin:
    code_interpreter: {enabled: true}
code_shield:
  actions: {block: block, warn: block, ignore: allow}
stages:
  user_input: {llama_guard: {enabled: false}, prompt_guard: {enabled: false}}
  model_output: {llama_guard: {enabled: false}, code_shield: {enabled: true}}
  tool_result: {prompt_guard: {enabled: false}}
  code: {code_shield: {enabled: true}}
"""


def _emit(payload: dict[str, Any], code: int) -> NoReturn:
    click.echo(json.dumps(payload, ensure_ascii=False))
    sys.exit(code)


def _bad_input(message: str) -> NoReturn:
    _emit({"ok": False, "output": "", "error": message, "limits_hit": []}, exit_codes.BAD_INPUT)


def _pipeline(policy: Policy, policy_file: Path | None) -> GuardPipeline:
    return GuardPipeline.from_policy(policy, model_dirs=guard_model_dirs(policy), policy_path=policy_file,
                                     default_audit_path=default_audit_path())


def _load(policy_file: Path | None, *, json_errors: bool) -> tuple[Policy, ToolRegistry, McpToolset]:
    """(policy, registry, MCP toolset) or exit 2 naming the problem. The policy's MCP servers run until the command
    exits; their definitions are vetted as the agent vets them (judged, checked against POLICY.tools.lock)."""
    try:
        policy = parse_policy_text(DEFAULT_POLICY_TEXT, file="<default>") if policy_file is None \
            else load_policy(policy_file)
        registry = build_registry(policy.tools)
        vetting = None if policy_file is None or not policy.tools.mcp else vetting_for(
            _pipeline(policy, policy_file), policy_file)
        mcp = add_mcp_tools(registry, policy.tools, vetting=vetting)
        click.get_current_context().call_on_close(mcp.close)  # whichever way the command ends (sys.exit too)
    except (PolicyError, ToolLoadError, McpStartupError, LockFileError) as exc:
        if json_errors:
            _bad_input(str(exc))
        click.echo(str(exc), err=True)
        sys.exit(exit_codes.BAD_INPUT)
    for notice in mcp.notices:
        if notice.kind != "mcp_tool_withheld":  # `tools list` shows those as rows
            click.echo(f"note: {notice}", err=True)
    return policy, registry, mcp


@click.group()
def tools() -> None:
    """List tools and run one as the agent would."""


@tools.command("list")
@click.option("--policy", "policy_file", type=click.Path(path_type=Path),
              help="Policy file (default: the built-in policy with code_interpreter on).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def list_tools(policy_file: Path | None, as_json: bool) -> None:
    """The tools with their side effects, policy status and argument schemas."""
    policy, registry, mcp = _load(policy_file, json_errors=False)
    rows = tool_rows(registry, policy.tools, mcp.withheld, visible={t.name for t in registry.visible(policy.tools)})
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no tools enabled by this policy")
    for row in rows:
        kind = "built-in" if row["builtin"] else f"MCP server {row['server']}" if row["server"] else "custom"
        if row["status"] == "blocked":
            click.echo(f"{row['name']}  ({kind}, blocked: not offered to the model)")
            click.echo(f"    {row['reason']}")
            continue
        effects = "side effects" if row["side_effects"] else "no side effects"
        click.echo(f"{row['name']}  ({kind}, {effects}, {row['status']})")
        click.echo(f"    {row['description'].splitlines()[0]}")
        click.echo(f"    parameters: {json.dumps(row['parameters'], ensure_ascii=False)}")


@tools.command("run")
@click.argument("name")
@click.option("--args", "args_json", required=True, help='Arguments as a JSON object, e.g. \'{"code": "print(1)"}\'.')
@click.option("--policy", "policy_file", type=click.Path(path_type=Path),
              help="Policy file (default: the built-in policy with code_interpreter on and only Code Shield as guard).")
@click.option("--approve", is_flag=True, help="Approve the call if the policy (or a guard) asks for a human.")
def run_tool(name: str, args_json: str, policy_file: Path | None, approve: bool) -> None:
    """Run NAME on the agent's own tool path: the policy's guards on the call (Code Shield on code), its rules, the
    approval (--approve), the sandbox, and the guards on the result. Prints {"ok", "output", "error", "limits_hit"}.

    Exit 0 when the tool ran (even if it failed), 3 when the policy or a guard refused it (or it needs approval and
    --approve was not given), 4 on a guard error, 2 on bad input.
    """
    try:
        arguments = json.loads(args_json)
    except json.JSONDecodeError as exc:
        _bad_input(f"--args is not valid JSON: {exc}")
    if not isinstance(arguments, dict):
        _bad_input(f"--args must be a JSON object, not {type(arguments).__name__}")
    policy, registry, _ = _load(policy_file, json_errors=True)
    name = registry.resolve(name) or name  # an MCP tool also answers to `server.tool`

    if name not in registry and name in BUILTIN_TOOLS:
        refusal = ToolOutput.failure(f"refused by the policy: {name} is not enabled "
                                     f"(tools.builtin.{name}.enabled)", refused=True)
        _emit(refusal.to_json(), exit_codes.REFUSED)
    pipeline = _pipeline(policy, policy_file)
    path = ToolPath({t.name: t for t in registry}, policy, pipeline)

    async def approver(call: ToolCall, review: object) -> bool:
        return approve

    execution = asyncio.run(path.execute(ToolCall(name=name, arguments=arguments), approve=approver, interface="cli"))
    review, ran = execution.review, execution.ran
    if ran is None:
        if review.action == "invalid":
            _bad_input(f"unknown tool {name!r}: {review.reason}")
        guard_error = review.judgement is not None and review.judgement.outcome == "error"
        why = {"block": f"blocked by the guards ({review.judgement.stage if review.judgement else ''} stage)",
               "deny": f"refused by the policy: {review.reason}",
               "ask": f"needs approval (pass --approve): {review.reason}"}.get(review.action, review.reason)
        _emit(ToolOutput.failure(why, refused=True).to_json(),
              exit_codes.GUARD_ERROR if guard_error else exit_codes.REFUSED)
    if ran.guard_error:
        _emit(ToolOutput.failure(f"a guard failed on the result, so it was withheld: {ran.text}").to_json(),
              exit_codes.GUARD_ERROR)
    output = ran.output
    if output.error and output.error.startswith(f"invalid arguments for {name}"):
        _emit(output.to_json(), exit_codes.BAD_INPUT)
    if output.refused:
        _emit(output.to_json(), exit_codes.REFUSED)
    payload = {"ok": output.ok and not ran.withheld, "output": ran.text,
               "error": "the guards withheld the result" if ran.withheld else output.error,
               "limits_hit": list(ran.limits_hit)}
    _emit(payload, exit_codes.REFUSED if ran.withheld else exit_codes.OK)


@tools.command("pin")
@click.option("--policy", "policy_file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Policy file; the pins go to FILE.tools.lock beside it.")
def pin_tools(policy_file: Path) -> None:
    """Start every MCP server of the policy and record the sha256 of each tool definition it lists in
    POLICY.tools.lock (sorted JSON: review the diff, commit it beside the policy). A definition that later differs
    from its pin, or a tool never pinned, follows the server's `on_change` (default: withheld until re-pinned).
    A server that fails to start keeps its old pins (exit 1)."""
    try:
        policy = load_policy(policy_file)
        lock = lock_path(policy_file)
        old = read_pins(lock)
        toolset = start_mcp_tools(policy.tools)
    except (PolicyError, McpStartupError, LockFileError) as exc:
        click.echo(str(exc), err=True)
        sys.exit(exit_codes.BAD_INPUT)
    with toolset:
        pins: dict[str, dict[str, dict[str, Any]]] = {}
        for config in policy.tools.mcp:
            listed = toolset.listed.get(config.name)
            if listed is None:  # it failed to start: its notice says why
                if config.name in old:
                    pins[config.name] = dict(old[config.name])
                continue
            pins[config.name] = {item.name: pin_entry(item) for item in listed}
            for item in listed:
                status = pin_status(old, config.name, item)
                if status != "pinned":
                    click.echo(f"{config.name}.{item.name}: {status}, pinned")
            for gone in sorted(set(old.get(config.name, {})) - {item.name for item in listed}):
                click.echo(f"{config.name}.{gone}: removed from the pins")
        lock.write_text(pins_text(pins), encoding="utf-8")
        click.echo(f"pinned {sum(len(t) for t in pins.values())} tool definitions of {len(pins)} server(s) in {lock}")
        for notice in toolset.notices:
            click.echo(f"note: {notice}", err=True)
        if any(notice.kind == "mcp_server_failed" for notice in toolset.notices):
            sys.exit(1)
