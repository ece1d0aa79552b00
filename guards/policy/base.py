"""Shared building blocks of the policy schema: the base model and the value types users write."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from guards.policy.categories import CATEGORY_CODE_PATTERN


class PolicyModel(BaseModel):
    """Base of every section users write: unknown keys are errors and a loaded policy never changes."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, populate_by_name=True)


# What a guard's hit leads to. `block` refuses with the stage's refusal message, `warn` continues flagged,
# `log` only records, `ask` needs a human decision.
Action = Literal["block", "warn", "log", "ask"]
# Code Shield treatments map onto an action or `allow` (let the code through unflagged).
CodeShieldAction = Literal["block", "warn", "log", "ask", "allow"]
# What happens when a guard itself fails (exception, timeout, unparseable output). Fail-open only when written.
OnError = Literal["block", "allow"]

# Strict scalars: YAML `enabled: "no"` or `max_steps: "8"` is a mistake worth reporting, not coercing.
Flag = Annotated[bool, Field(strict=True)]
PositiveInt = Annotated[int, Field(strict=True, gt=0)]
NonNegativeInt = Annotated[int, Field(strict=True, ge=0)]
Seconds = Annotated[float, Field(strict=True, gt=0)]
Probability = Annotated[float, Field(strict=True, ge=0.0, le=1.0)]
NonEmptyStr = Annotated[str, StringConstraints(strict=True, min_length=1)]
CategoryCode = Annotated[str, StringConstraints(strict=True, pattern=CATEGORY_CODE_PATTERN.pattern)]
_DEVICE_PATTERN = r"^(auto|cpu|mps|cuda(:[0-9]+)?)$"
Device = Annotated[str, StringConstraints(strict=True, pattern=_DEVICE_PATTERN)]
TOOL_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]*$"
IMPORT_REF_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
SINGLE_LINE_PATTERN = r"^[^\n\r]+$"
# What each pattern means, for error messages that a person can act on.
PATTERN_MEANINGS: dict[str, str] = {
    CATEGORY_CODE_PATTERN.pattern: "a category code such as S1 or S15",
    _DEVICE_PATTERN: "a device: auto, cpu, mps, cuda or cuda:N",
    TOOL_NAME_PATTERN: "a tool name (letters, digits, _ . -, not starting with a digit)",
    IMPORT_REF_PATTERN: "`package.module:function`",
    SINGLE_LINE_PATTERN: "a single line of text",
}
DType = Literal["auto", "float32", "bfloat16", "float16"]
