"""`assistant prompt render CASE.json [--ids]` and `assistant prompt parse [--builtin-tools NAME ...]`.

CASE.json: `messages` (OpenAI chat format: role system|user|assistant|tool, content, optional `tool_calls` whose
`function.arguments` is a JSON string), optional `tools` (OpenAI function tools with JSON-schema parameters),
`builtin_tools` (brave_search, wolfram_alpha, code_interpreter), `tool_format` (json|function_tag|pythonic),
`family` (llama3|llama4, default llama3; llama4 and pythonic are Meta's rendering only), `dialect` (meta|hf, default
meta; hf is the Llama 3.1 Hugging Face template), `date` (ISO, default today). Extensions: an assistant message may
carry `raw` (the exact generated text, re-encoded verbatim) and `stop_reason` (end_of_turn|end_of_message);
`add_generation_prompt` (default true). Bad input exits 2 with one line naming the problem.
"""

from __future__ import annotations

import datetime
import json
import sys
from datetime import date
from pathlib import Path
from typing import Any, Literal, NoReturn

import click
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from assistant.cli import exit_codes
from model.completion import family_spans
from model.messages import BUILTIN_TOOLS, Message, ToolCall, ToolDefinition, ToolSpec
from model.prompt_format import PromptFormatError, encode_dialog, render_dialog
from model.tokenizer import TokenizerError, get_tokenizer
from model.tokenizer_specs import FAMILIES
from model.tool_parser import parse_completion

BuiltinName = Literal["brave_search", "wolfram_alpha", "code_interpreter"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class FunctionCall(_Strict):
    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)

    @field_validator("arguments", mode="before")
    @classmethod
    def _json_arguments(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise ValueError("must be a JSON object (or a JSON string holding one)")
        return value


class CaseToolCall(_Strict):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class CaseMessage(_Strict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    tool_calls: list[CaseToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None
    raw: str | None = None
    stop_reason: Literal["end_of_turn", "end_of_message"] | None = None

    def to_message(self, index: int, family: str = "llama3") -> Message:
        if self.role != "assistant" and (self.tool_calls or self.raw is not None or self.stop_reason is not None):
            raise ValueError(f"messages.{index}: only assistant messages may have tool_calls, raw or stop_reason")
        content = self.content if not isinstance(self.content, list) else "".join(p.text for p in self.content)
        calls = tuple(ToolCall(c.function.name, c.function.arguments, c.id) for c in self.tool_calls or ())
        return Message(
            self.role,
            content or "",
            calls,
            raw=self.raw,
            # The case file stands in for the model's own output: its special-token strings (the family's) are
            # generated ids.
            special_spans=family_spans(self.raw, family) if self.raw is not None else None,
            stop_reason=self.stop_reason,
            tool_name=self.name if self.role == "tool" else None,
        )


class FunctionDefinition(_Strict):
    name: str = Field(min_length=1)
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class CaseTool(_Strict):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class Case(_Strict):
    messages: list[CaseMessage]
    tools: list[CaseTool] = Field(default_factory=list)
    builtin_tools: list[BuiltinName] = Field(default_factory=list)
    tool_format: Literal["json", "function_tag", "pythonic"] = "json"
    family: Literal["llama3", "llama4"] = "llama3"
    dialect: Literal["meta", "hf"] = "meta"
    date: str | None = None
    add_generation_prompt: bool = True

    @field_validator("date")
    @classmethod
    def _iso_date(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                date.fromisoformat(value)
            except ValueError:
                raise ValueError(f"not an ISO date (YYYY-MM-DD): {value!r}") from None
        return value

    def today(self) -> datetime.date:  # (`date` in this class is the field)
        return date.fromisoformat(self.date) if self.date else date.today()

    def dialog(self) -> tuple[list[Message], ToolSpec]:
        messages = [message.to_message(index, self.family) for index, message in enumerate(self.messages)]
        tools = tuple(
            ToolDefinition(t.function.name, t.function.description, t.function.parameters) for t in self.tools
        )
        return messages, ToolSpec(tools, tuple(self.builtin_tools), self.tool_format)


def _fail(message: str) -> NoReturn:
    click.echo("error: " + " ".join(message.split()), err=True)
    sys.exit(exit_codes.BAD_INPUT)


def _validation_problem(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return f"{where}: {message}{more}" if where else f"{message}{more}"


def load_case(path: Path) -> Case:
    """Read and validate a CASE.json file; exits 2 with one line on any problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"{path}: cannot read: {exc}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"{path}: invalid JSON: {exc}")
    if not isinstance(data, dict):
        _fail(f"{path}: expected a JSON object with 'messages'")
    try:
        return Case.model_validate(data)
    except ValidationError as exc:
        _fail(f"{path}: {_validation_problem(exc)}")


def _write(text: str) -> None:
    stream = click.get_binary_stream("stdout")
    stream.write(text.encode("utf-8"))
    stream.flush()


@click.group()
def prompt() -> None:
    """Render Llama 3.1/3.2/3.3 and Llama 4 prompts and parse completions."""


@prompt.command("render")
@click.argument("case_file", metavar="CASE.json", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--ids", is_flag=True, help="Print the token ids as a JSON list instead of the prompt text.")
@click.option(
    "--tokenizer-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Model directory whose tokenizer.model to use (default: the one shipped with llama-models).",
)
def render(case_file: Path, ids: bool, tokenizer_dir: Path | None) -> None:
    """Print the prompt for CASE.json exactly (no newline added), or its token ids with --ids."""
    case = load_case(case_file)
    try:
        messages, spec = case.dialog()
        kwargs: dict[str, Any] = {
            "today": case.today(),
            "dialect": case.dialect,
            "add_generation_prompt": case.add_generation_prompt,
        }
        if ids:
            try:
                tokenizer = get_tokenizer(tokenizer_dir, case.family)
            except TokenizerError as exc:
                _fail(str(exc))
            _write(json.dumps(encode_dialog(messages, spec, tokenizer=tokenizer, **kwargs)) + "\n")
        else:
            _write(render_dialog(messages, spec, family=case.family, **kwargs))
    except (PromptFormatError, ValueError) as exc:
        _fail(f"{case_file}: {exc}")


@prompt.command("parse")
@click.option(
    "--builtin-tools",
    "builtin_tools",
    multiple=True,
    metavar="NAME",
    help="An enabled built-in tool (repeat, or separate with commas); raw code is a call only with code_interpreter.",
)
@click.option("--tool", "tools", multiple=True, metavar="NAME", help="A custom tool name; calls to others are errors.")
@click.option(
    "--family",
    type=click.Choice(FAMILIES),
    default="llama3",
    show_default=True,
    help="The model family whose special tokens the completion's <|...|> strings are.",
)
@click.argument("more_builtin_tools", nargs=-1, metavar="[NAME ...]")
def parse(
    builtin_tools: tuple[str, ...], tools: tuple[str, ...], family: str, more_builtin_tools: tuple[str, ...]
) -> None:
    """Read a completion on stdin and print {"content", "tool_calls", "stop_reason", "error"} as JSON."""
    names = [name.strip() for value in (*builtin_tools, *more_builtin_tools) for name in value.split(",") if name]
    if more_builtin_tools and not builtin_tools:
        _fail(f"unexpected argument {more_builtin_tools[0]!r} (built-in tool names follow --builtin-tools)")
    for name in names:
        if name not in BUILTIN_TOOLS:
            _fail(f"unknown built-in tool {name!r} (expected one of {', '.join(BUILTIN_TOOLS)})")
    try:
        text = click.get_binary_stream("stdin").read().decode("utf-8")
    except UnicodeDecodeError as exc:
        _fail(f"stdin is not UTF-8 text: {exc}")
    # stdin stands in for the model's output: the family's special-token strings count as generated special ids.
    spans = family_spans(text, family)
    parsed = parse_completion(text, builtin_tools=tuple(names), tools=tools or None, special_spans=spans)
    result = {
        "content": parsed.content,
        "tool_calls": [{"name": call.name, "arguments": call.arguments} for call in parsed.tool_calls],
        "stop_reason": parsed.stop_reason,
        "error": parsed.error,
    }
    _write(json.dumps(result, ensure_ascii=False) + "\n")
