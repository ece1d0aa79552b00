"""`stages`, `refusals` and `audit`: which guards run where, what a refused user reads, and what is recorded."""

from __future__ import annotations

from typing import Literal

from guards.policy.base import Action, Flag, NonEmptyStr, PolicyModel, Probability, StageName


class LlamaGuardStage(PolicyModel):
    enabled: Flag = True


class PromptGuardStage(PolicyModel):
    enabled: Flag = True
    # jailbreak: P(JAILBREAK) (v1) / P(malicious) (v2). injection: P(INJECTION) + P(JAILBREAK) (v1) / P(malicious) (v2):
    # third-party text should contain no instructions at all, so either label counts.
    score: Literal["jailbreak", "injection"] = "injection"
    threshold: Probability = 0.5
    action: Action = "block"


class UserPromptGuardStage(PromptGuardStage):
    """Prompt Guard on the user's own text: jailbreak attempts matter there, instructions are expected."""

    score: Literal["jailbreak", "injection"] = "jailbreak"


class CodeShieldStage(PolicyModel):
    enabled: Flag = True
    # The project's own semgrep rules (guards/rules: shell calls, ctypes, unpickling, eval/exec and names built at
    # run time) in the same semgrep run as Code Shield's; on by default where code is about to run (`code`).
    project_rules: Flag = False


class CodeStageCodeShield(CodeShieldStage):
    project_rules: Flag = True


_OFF_LG = LlamaGuardStage(enabled=False)
_OFF_PG = PromptGuardStage(enabled=False)
_OFF_CS = CodeShieldStage(enabled=False)


# Every stage carries all three guards so that consumers never test for None; the defaults differ per stage, and a
# stage written without a guard's key keeps that guard's default (fail-closed), it does not switch it off.
class UserInputStage(PolicyModel):
    llama_guard: LlamaGuardStage = LlamaGuardStage()
    prompt_guard: UserPromptGuardStage = UserPromptGuardStage()
    code_shield: CodeShieldStage = _OFF_CS


class ModelOutputStage(PolicyModel):
    llama_guard: LlamaGuardStage = LlamaGuardStage()
    prompt_guard: PromptGuardStage = _OFF_PG
    code_shield: CodeShieldStage = CodeShieldStage()


class ToolCallStage(PolicyModel):
    llama_guard: LlamaGuardStage = _OFF_LG
    prompt_guard: PromptGuardStage = _OFF_PG
    code_shield: CodeShieldStage = _OFF_CS


class ToolResultStage(PolicyModel):
    llama_guard: LlamaGuardStage = _OFF_LG
    prompt_guard: PromptGuardStage = PromptGuardStage()
    code_shield: CodeShieldStage = _OFF_CS


class CodeStage(PolicyModel):
    llama_guard: LlamaGuardStage = _OFF_LG
    prompt_guard: PromptGuardStage = _OFF_PG
    code_shield: CodeStageCodeShield = CodeStageCodeShield()


StageConfig = UserInputStage | ModelOutputStage | ToolCallStage | ToolResultStage | CodeStage


class StagesConfig(PolicyModel):
    user_input: UserInputStage = UserInputStage()
    model_output: ModelOutputStage = ModelOutputStage()
    tool_call: ToolCallStage = ToolCallStage()
    tool_result: ToolResultStage = ToolResultStage()
    code: CodeStage = CodeStage()

    def get(self, stage: StageName) -> StageConfig:
        return getattr(self, stage)


class RefusalsConfig(PolicyModel):
    """The message shown when a stage blocks; `guard_error` when a guard failed and the policy failed closed."""

    user_input: NonEmptyStr = "I can't help with that request."
    model_output: NonEmptyStr = "I can't share that response."
    tool_call: NonEmptyStr = "That tool call was blocked by the policy."
    tool_result: NonEmptyStr = "A tool returned content that was blocked by the policy."
    code: NonEmptyStr = "The generated code was blocked by the policy."
    guard_error: NonEmptyStr = "A safety check failed, so this was blocked."

    def for_stage(self, stage: StageName) -> str:
        return getattr(self, stage)


class AuditConfig(PolicyModel):
    path: NonEmptyStr | None = None  # None = <data dir>/audit.jsonl
    texts: Literal["full", "hash", "redact"] = "hash"  # how checked texts are stored in the audit records
    # After every record the chain head (seq, hash) is written beside the log (`<log>.head`); this also sends it to
    # syslog (facility AUTH), an outside copy that deleting the log's end together with its head file cannot undo.
    head_syslog: Flag = False
