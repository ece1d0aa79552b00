"""Each guard's per-stage section (`stages.<stage>.<guard>`): whether it runs there and how it reads its score.

The guard declarations (`guards.policy.registry`) name one of these per guard and its default on every stage.
"""

from __future__ import annotations

from typing import Literal

from guards.policy.base import Action, Flag, PolicyModel, Probability


class GuardStage(PolicyModel):
    """What every guard has on every stage: on or off."""

    enabled: Flag = True


class LlamaGuardStage(GuardStage):
    pass


class PromptGuardStage(GuardStage):
    # jailbreak: P(JAILBREAK) (v1) / P(malicious) (v2). injection: P(INJECTION) + P(JAILBREAK) (v1) / P(malicious) (v2):
    # third-party text should contain no instructions at all, so either label counts.
    score: Literal["jailbreak", "injection"] = "injection"
    threshold: Probability = 0.5
    action: Action = "block"


class UserPromptGuardStage(PromptGuardStage):
    """Prompt Guard on the user's own text: jailbreak attempts matter there, instructions are expected."""

    score: Literal["jailbreak", "injection"] = "jailbreak"


class CodeShieldStage(GuardStage):
    # The project's own semgrep rules (guards/code_shield/rules: shell calls, ctypes, unpickling, eval/exec and names
    # built at run time) in the same semgrep run as Code Shield's; on by default where code is about to run (`code`).
    project_rules: Flag = False


class CodeStageCodeShield(CodeShieldStage):
    project_rules: Flag = True
