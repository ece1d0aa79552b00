"""`tools`: which tools the agent may call, with what arguments and approvals, and the code sandbox's limits."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from guards.policy.base import (
    IMPORT_REF_PATTERN,
    TOOL_NAME_PATTERN,
    Flag,
    NonEmptyStr,
    PolicyModel,
    PositiveInt,
    Seconds,
)
from guards.policy.mcp_config import McpServers

ToolName = Annotated[str, StringConstraints(strict=True, pattern=TOOL_NAME_PATTERN)]
ImportRef = Annotated[str, StringConstraints(strict=True, pattern=IMPORT_REF_PATTERN)]  # `package.module:function`


class ArgumentRule(PolicyModel):
    """A constraint on one argument: a regular expression its string form must match in full, or a JSON schema."""

    pattern: NonEmptyStr | None = None
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("json_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            check_json_schema(value)
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> ArgumentRule:
        if (self.pattern is None) == (self.json_schema is None):
            raise ValueError("write exactly one of `pattern` or `schema`")
        return self


def check_json_schema(schema: dict[str, Any]) -> None:
    """Raise ValueError when `schema` is not a valid JSON schema (for the draft it names, else the latest)."""
    from jsonschema import exceptions, validators

    try:
        validators.validator_for(schema).check_schema(schema)
    except exceptions.SchemaError as exc:
        raise ValueError(f"not a valid JSON schema: {exc.message}") from None


class CodeInterpreterConfig(PolicyModel):
    enabled: Flag = False


class BraveSearchConfig(PolicyModel):
    enabled: Flag = False
    api_key: NonEmptyStr | None = None  # prefer api_key_env: a key in the policy file is a secret in a config file
    api_key_env: NonEmptyStr | None = "BRAVE_API_KEY"
    endpoint: NonEmptyStr = "https://api.search.brave.com/res/v1/web/search"
    max_results: int = Field(default=5, strict=True, gt=0, le=20)


class WolframAlphaConfig(PolicyModel):
    enabled: Flag = False
    app_id: NonEmptyStr | None = None
    app_id_env: NonEmptyStr | None = "WOLFRAM_ALPHA_APP_ID"
    endpoint: NonEmptyStr = "https://api.wolframalpha.com/v2/query"


class BuiltinToolsConfig(PolicyModel):
    code_interpreter: CodeInterpreterConfig = CodeInterpreterConfig()
    brave_search: BraveSearchConfig = BraveSearchConfig()
    wolfram_alpha: WolframAlphaConfig = WolframAlphaConfig()


class SandboxConfig(PolicyModel):
    isolation: Literal["required", "best_effort"] = "required"  # required: refuse to run code without bwrap
    cpu_seconds: PositiveInt = 5
    wall_seconds: Seconds = 10.0
    memory_mb: PositiveInt = 512
    max_processes: PositiveInt = 32
    max_file_mb: PositiveInt = 16
    max_output_chars: PositiveInt = 10000


class ToolsConfig(PolicyModel):
    allow: tuple[ToolName, ...] | None = None  # None = every registered tool; else only these names
    deny: tuple[ToolName, ...] = ()
    approval_required: tuple[ToolName, ...] = ()  # always need a human decision
    arguments: dict[ToolName, dict[NonEmptyStr, ArgumentRule]] = Field(default_factory=dict)
    max_calls_per_turn: PositiveInt = 8
    # A tool result longer than this is cut (with a note saying so) before the guards and the model see it.
    max_result_chars: PositiveInt = 20_000
    # Side-effect tools after a tool result entered the context (it may carry injected instructions).
    untrusted_content: Literal["ask", "block", "allow"] = "ask"
    custom: tuple[ImportRef, ...] = ()  # `package.module:function`, each decorated with @tool
    mcp: McpServers = ()  # Model Context Protocol servers (guards/policy/mcp_config.py)
    builtin: BuiltinToolsConfig = BuiltinToolsConfig()
    sandbox: SandboxConfig = SandboxConfig()
