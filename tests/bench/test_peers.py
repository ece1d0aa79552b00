"""The peer modes' parts on the real tiny guards: Llama Guard generating its verdict decides as our one-forward check
does, LlamaFirewall's Prompt Guard reads only the first 512 tokens, and each peer schedules a stage's guards its way."""

from __future__ import annotations

import asyncio
import random

import pytest

from bench.peers import (
    LlamaFirewallPipeline,
    LlamaStackPipeline,
    OgxPipeline,
    PeerLlamaGuardRunner,
    first_window_score,
    forget_checks,
    generate_verdict,
    moderation_text,
)
from bench.scenario import UNSAFE, words


@pytest.mark.parametrize("unsafe", [False, True])
def test_generated_verdict_matches_the_forward_check(bench_models, unsafe: bool) -> None:
    from guards.llama_guard.guard import LlamaGuard
    from guards.llama_guard.prompt import as_turn

    guard = LlamaGuard.load(str(bench_models.llama_guard))
    answer = words(random.Random(4), 20) + (f" {UNSAFE}" if unsafe else "")
    turns = [as_turn("user", "tell me about the garden"), as_turn("agent", answer)]
    generated, forward = generate_verdict(guard, turns), guard.check(turns)
    assert generated.mode == "generate" and generated.text.startswith("unsafe" if unsafe else "safe")
    assert generated.unsafe == forward.unsafe == unsafe and generated.categories == forward.categories
    assert abs(generated.score - forward.score) < 1e-4


def test_firewall_prompt_guard_reads_the_first_512_tokens_only(bench_models) -> None:
    from bench.firewall import long_text
    from guards.prompt_guard.guard import PromptGuard

    guard = PromptGuard.load(str(bench_models.prompt_guard), device="cpu")
    text = long_text(600)  # a jailbreak trigger at 90% of a text longer than one window
    score, tokens = first_window_score(guard, text, "jailbreak")
    assert tokens == 510 and score < 0.5
    assert guard.score(text, "jailbreak").score >= 0.5


class _Runner:
    def __init__(self, name: str, decision: str, log: list[str]) -> None:
        self.name, self.decision, self.log = name, decision, log
        self.timeout_s, self.on_error = 5.0, "block"

    def load(self) -> None:
        """Nothing to load."""

    async def check(self, item):  # a schedule test: what runs, in which order (the guards are tested above)
        from guards.verdict import Verdict

        self.log.append(f"start {self.name}")
        await asyncio.sleep(0.01)
        self.log.append(f"end {self.name}")
        return Verdict(item.stage, self.name, self.decision)


def _pipeline(cls, log: list[str]):
    from guards.policy import Policy

    policy = Policy.model_validate({"version": 1, "stages": {
        "user_input": {"llama_guard": {"enabled": True}, "prompt_guard": {"enabled": True}},
        "model_output": {"llama_guard": {"enabled": True}, "code_shield": {"enabled": False}}}})
    runners = {name: _Runner(name, decision, log) for name, decision in (("llama_guard", "block"),
                                                                         ("prompt_guard", "allow"))}
    return cls(policy, runners, audit=lambda verdict, item: None)


async def test_llamafirewall_runs_scanners_one_after_another_and_stops_at_a_block() -> None:
    log: list[str] = []
    pipeline = _pipeline(LlamaFirewallPipeline, log)
    result = await pipeline.check("user_input", "hello")
    first = pipeline.enabled_guards("user_input")[0]
    assert result.decision == "block"
    assert log[:2] == [f"start {first}", f"end {first}"]
    assert len(log) == (2 if first == "llama_guard" else 4)


async def test_llama_stack_runs_every_shield_at_once_to_its_end() -> None:
    log: list[str] = []
    result = await _pipeline(LlamaStackPipeline, log).check("user_input", "hello")
    assert result.decision == "block"
    assert sorted(log[:2]) == ["start llama_guard", "start prompt_guard"] and len(log) == 4


async def test_ogx_runs_input_guards_at_once_and_the_answers_checks_one_at_a_time() -> None:
    from guards.runtime.runner import CheckInput

    log: list[str] = []
    pipeline = _pipeline(OgxPipeline, log)
    assert (await pipeline.check("user_input", "hello")).decision == "block"
    assert sorted(log[:2]) == ["start llama_guard", "start prompt_guard"] and len(log) == 4
    log.clear()
    # Two checks of one answer scheduled together: the second starts only after the first ended (OGX's stream
    # awaits each check); another conversation's check does not wait for them.
    await asyncio.gather(*(pipeline._check_text(CheckInput("model_output", text, role="assistant", thread_id=t))
                           for text, t in (("a", "one"), ("ab", "one"))))
    assert log == ["start llama_guard", "end llama_guard"] * 2
    log.clear()
    await asyncio.gather(*(pipeline._check_text(CheckInput("model_output", "a", role="assistant", thread_id=t))
                           for t in ("one", "two")))
    assert log == ["start llama_guard", "start llama_guard", "end llama_guard", "end llama_guard"]


def test_ogx_moderation_text_joins_the_messages_at_the_input_only() -> None:
    from guards.runtime.runner import CheckInput

    conversation = (("user", "hello there"), ("assistant", "hi"), ("user", "now this"))
    assert moderation_text(CheckInput("user_input", "now this", conversation=conversation)) == "hello there hi now this"
    assert moderation_text(CheckInput("user_input", "first", conversation=())) == "first"
    answer = CheckInput("model_output", "the answer so far", role="assistant", conversation=conversation)
    assert moderation_text(answer) == "the answer so far"


@pytest.mark.parametrize("unsafe", [False, True])
async def test_ogx_llama_guard_judges_the_text_alone_and_starts_cold_after_forget(bench_models, unsafe: bool) -> None:
    from guards.llama_guard.guard import LlamaGuard
    from guards.policy import Policy
    from guards.runtime.runner import CheckInput

    policy = Policy.model_validate({"version": 1, "stages": {"model_output": {"llama_guard": {"enabled": True}}}})
    runner = PeerLlamaGuardRunner(policy, str(bench_models.llama_guard), scope="text")
    answer = words(random.Random(5), 20) + (f" {UNSAFE}" if unsafe else "")
    item = CheckInput("model_output", answer, role="assistant", conversation=(("user", "tell me"),))
    assert [t.content for t in runner.turns(item)] == [answer]
    verdict = await runner.check(item)
    assert verdict.decision == ("block" if unsafe else "allow")
    guard = runner.load()
    assert isinstance(guard, LlamaGuard) and guard._last
    forget_checks(guard)
    assert not guard._last
