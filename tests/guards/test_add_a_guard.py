"""The add-a-guard recipe of docs/ARCHITECTURE.md, followed literally once, on a copy of the product packages.

The copy gets a trivial guard, `length_guard` (blocks a text longer than its stage's `max_chars`), in exactly the
places the recipe names and nowhere else:

1. its package, `guards/length_guard/` (a runner and its `build_runner(policy, source)` factory);
2. its per-stage section, a `GuardStage` subclass in `guards/policy/guard_stages.py` (only because this guard has a
   per-stage option, `max_chars`: a guard with none uses `GuardStage`, on/off);
3. its declaration in `guards/policy/registry.py`: the `GuardName` Literal and one `GuardDeclaration` in `GUARDS`.
   Its own section (`length_guard:` with `timeout_s`, `on_error`) and its key on every stage follow from the
   declaration; it declares no settings class of its own, so it gets `GuardSettings`.

Then, in a subprocess that imports the copy, a policy that enables it on `user_input` loads, the pipeline built by the
real runner registry runs it, a long text is blocked by its verdict and a short one allowed. When this test fails
because the registry's shape changed, update the recipe in docs/ARCHITECTURE.md and the edits below together.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("assistant", "guards", "tools", "model")
RECIPE = ROOT / "docs" / "ARCHITECTURE.md"

RUNNER = '''\
"""The `length_guard` runner: a text longer than its stage's `max_chars` gets the stage's action."""

from __future__ import annotations

from guards.policy import Policy
from guards.policy.guard_stages import LengthGuardStage
from guards.policy.guards_config import GuardSettings
from guards.runtime.runner import CheckInput
from guards.verdict import Verdict


class LengthGuardRunner:
    name = "length_guard"

    def __init__(self, policy: Policy) -> None:
        self.stages = policy.stages
        settings = policy.guard_settings(self.name, GuardSettings)
        self.timeout_s = float(settings.timeout_s)
        self.on_error = settings.on_error

    def load(self) -> None:
        return None  # nothing to load

    async def check(self, item: CheckInput) -> Verdict:
        stage = self.stages.get(item.stage).guard(self.name)
        assert isinstance(stage, LengthGuardStage)
        decision = stage.action if len(item.text) > stage.max_chars else "allow"
        reason = f"{len(item.text)} characters (limit {stage.max_chars})"
        return Verdict(item.stage, self.name, decision, reasons=(reason,))


def build_runner(policy: Policy, source: str) -> LengthGuardRunner:
    del source  # no model folder
    return LengthGuardRunner(policy)
'''

STAGE_SECTION = '''

class LengthGuardStage(GuardStage):
    """The length guard on one stage: texts longer than `max_chars` get `action`."""

    max_chars: PositiveInt = 1000
    action: Action = "block"
'''

DECLARATION = (
    '    GuardDeclaration("length_guard", "Length guard", "guards.length_guard.runner:build_runner",'
    " LengthGuardStage),\n"
)

POLICY = """\
version: 1
stages:
  user_input:
    length_guard: {enabled: true, max_chars: 100}
    llama_guard: {enabled: false}
    prompt_guard: {enabled: false}
  model_output: {llama_guard: {enabled: false}, code_shield: {enabled: false}}
  tool_result: {prompt_guard: {enabled: false}}
  code: {code_shield: {enabled: false}}
"""

CHECK = textwrap.dedent(
    """
    import asyncio, json, sys

    from guards.policy import Policy, parse_policy_text
    from guards.policy.registry import GUARD_NAMES, STAGE_NAMES
    from guards.runtime.pipeline import GuardPipeline

    policy = parse_policy_text(sys.argv[1])
    pipeline = GuardPipeline.from_policy(policy, audit=False)
    long, short = asyncio.run(pipeline.check("user_input", "x" * 101)), asyncio.run(pipeline.check("user_input", "hi"))
    print(json.dumps({
        "guards": list(GUARD_NAMES),
        "runners": sorted(pipeline.runners),
        "settings": [policy.length_guard.timeout_s, policy.length_guard.on_error],
        "off_by_default": [s for s in STAGE_NAMES if Policy().stages.get(s).guard("length_guard").enabled],
        "long": [long.decision, [(v.guard, v.decision, list(v.reasons)) for v in long.verdicts]],
        "short": [short.decision, [(v.guard, v.decision) for v in short.verdicts]],
    }))
    """
)


def replace_once(path: Path, pattern: str, replacement: str) -> None:
    """Apply one edit of the recipe; the anchor must be found exactly once (else the registry changed shape)."""
    text = path.read_text(encoding="utf-8")
    new, count = re.subn(pattern, replacement, text, count=1, flags=re.S | re.M)
    assert count == 1 and len(re.findall(pattern, text, flags=re.S | re.M)) == 1, f"{path}: no single {pattern!r}"
    path.write_text(new, encoding="utf-8")


def add_length_guard(root: Path) -> None:
    # 1. the guard's package
    package = root / "guards" / "length_guard"
    package.mkdir()
    (package / "__init__.py").write_text('"""A trivial guard: blocks texts over a length."""\n', encoding="utf-8")
    (package / "runner.py").write_text(RUNNER, encoding="utf-8")
    # 2. its per-stage section (with the value types it uses)
    sections = root / "guards" / "policy" / "guard_stages.py"
    sections.write_text(
        sections.read_text(encoding="utf-8")
        + "\nfrom guards.policy.base import Action, PositiveInt  # noqa: E402\n"
        + STAGE_SECTION,
        encoding="utf-8",
    )
    # 3. the registry: the name in the Literal, the section imported, one declaration in GUARDS
    registry = root / "guards" / "policy" / "registry.py"
    replace_once(registry, r"^(GuardName = Literal\[.*?)\]", r'\1, "length_guard"]')
    replace_once(registry, r"^(StageName = Literal)", "from guards.policy.guard_stages import LengthGuardStage\n\n\\1")
    replace_once(registry, r"^(GUARDS: tuple\[GuardDeclaration, \.\.\.\] = \(\n.*?\n)(\))", rf"\g<1>{DECLARATION}\2")


def test_the_recipe_names_the_places_this_test_edits() -> None:
    recipe = RECIPE.read_text(encoding="utf-8")
    places = ("guards/policy/registry.py", "guards/policy/guard_stages.py", "GuardDeclaration", "GuardName")
    places += ("build_runner", "test_add_a_guard.py")
    for place in places:
        assert place in recipe, f"docs/ARCHITECTURE.md's recipe no longer names {place}"


def test_a_guard_added_by_the_recipe_runs_where_the_policy_enables_it(tmp_path: Path) -> None:
    root = tmp_path / "copy"
    for package in PACKAGES:
        shutil.copytree(ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    add_length_guard(root)
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", CHECK, POLICY], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["guards"][-1] == "length_guard"
    assert seen["settings"] == [1.0 * 30, "block"]  # its own section, made from the declaration (GuardSettings)
    assert seen["runners"] == ["length_guard"]  # no model guard is built: every other guard is off
    assert seen["off_by_default"] == []  # a stage that does not name it does not run it
    decision, verdicts = seen["long"]
    assert decision == "block" and verdicts == [["length_guard", "block", ["101 characters (limit 100)"]]]
    assert seen["short"] == ["allow", [["length_guard", "allow"]]]
