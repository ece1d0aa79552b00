"""The `code_shield` runner: Code Shield (and, per stage, the project's own rules) on fenced code in model output or
on a call's code, its recommended treatment mapped onto the policy's actions."""

from __future__ import annotations

from guards.code_shield.guard import CodeShieldGuard, to_verdict
from guards.policy import Policy
from guards.policy.guard_stages import CodeShieldStage
from guards.policy.guards_config import CodeShieldConfig
from guards.policy.registry import CODE_SHIELD
from guards.runtime.runner import CheckInput, shared
from guards.verdict import Verdict


class CodeShieldRunner:
    name = CODE_SHIELD
    sees_images = False  # reads code only

    def __init__(self, policy: Policy) -> None:
        self.config = policy.guard_settings(self.name, CodeShieldConfig)
        self.stages = policy.stages
        self.timeout_s = float(self.config.timeout_s)
        self.on_error = self.config.on_error

    def load(self) -> CodeShieldGuard:
        """The scanner for the policy's languages (one per process and language set; semgrep starts on first use)."""
        config = self.config
        return shared(CODE_SHIELD, repr(config.languages), lambda: CodeShieldGuard.from_policy(config))

    async def check(self, item: CheckInput) -> Verdict:
        stage = self.stages.get(item.stage).guard(self.name)
        assert isinstance(stage, CodeShieldStage)  # the declaration's per-stage section
        guard = self.load()
        if item.language is not None:
            result = await guard.scan_code(item.text, item.language, project_rules=stage.project_rules)
        else:
            result = await guard.scan_text(item.text, project_rules=stage.project_rules)
        actions = self.config.actions.model_dump()
        return to_verdict(result, stage=item.stage, actions=actions, on_error=self.on_error)


def build_runner(policy: Policy, source: str) -> CodeShieldRunner:
    del source  # Code Shield has no model folder
    return CodeShieldRunner(policy)
