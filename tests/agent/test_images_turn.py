"""Images through the real graph: the tiny Llama Guard 4 that sees images (solid magenta is its unsafe test colour),
a scripted main model that stands in for one taking images (it records what it was given), and the one rule of
assistant/images.py asked before anything runs."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from assistant.agent.provenance import digest, seal
from assistant.api import Assistant
from assistant.events import Final, GuardVerdict, Refusal
from assistant.images import ImagesRefused
from guards.runtime.gate import Judgement
from model.backends.scripted import ScriptedBackend
from model.images import ImageData, ImageLimits, read_image
from tests.agent.conftest import TINY_DIR, write_script

LG4_POLICY = """\
version: 1
models:
  main: {source: tiny:llama-3.1-instruct, family: llama4, max_new_tokens: 32, context_window: 16384}
  llama_guard: {source: tiny:llama-guard-4, variant: "4", device: cpu, dtype: float32}
llama_guard: {timeout_s: 120}
stages:
  user_input: {llama_guard: {enabled: true}, prompt_guard: {enabled: false}}
  model_output: {llama_guard: {enabled: true}, code_shield: {enabled: false}}
  tool_result: {prompt_guard: {enabled: false}}
audit: {path: audit.jsonl, texts: hash}
"""
LG3_POLICY = LG4_POLICY.replace('tiny:llama-guard-4, variant: "4"', "tiny:llama-guard, variant: 8b")


def png(colour: tuple[int, int, int], size: tuple[int, int] = (48, 32), name: str = "img.png") -> ImageData:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return read_image(out.getvalue(), name=name, limits=ImageLimits())


MAGENTA = (255, 0, 255)
SKY = (90, 160, 220)


class RecordingBackend(ScriptedBackend):
    """The scripted model, taking images, recording the images of each call."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, accepts_images=True)
        self.calls: list[tuple[ImageData, ...]] = []

    async def stream(self, prompt_ids: list[int], params: Any) -> Any:  # type: ignore[override]
        self.calls.append(tuple(params.images))
        async for delta in super().stream(prompt_ids, params):
            yield delta


def assistant(tmp_path: Path, policy: str, *completions: str, accepts: bool = True) -> tuple[Assistant, Any]:
    path = tmp_path / "policy.yaml"
    path.write_text(policy, encoding="utf-8")
    script = write_script(tmp_path, *completions)
    bot = Assistant.from_policy(path, model=f"scripted:{script}", db_path=tmp_path / "threads.sqlite",
                                tiny_dir=TINY_DIR)
    backend = RecordingBackend(script) if accepts else ScriptedBackend(script)
    return bot.replace(backend=backend), backend


async def test_a_benign_image_is_judged_with_its_message_and_reaches_the_model(tmp_path: Path) -> None:
    bot, backend = assistant(tmp_path, LG4_POLICY, "A blue square.<|eot|>", "Still blue.<|eot|>")
    sky = png(SKY, name="sky.png")
    result = await bot.arun("What colour is this?", thread="t1", images=[sky])
    assert result.text == "A blue square."
    seen = [v for v in result.verdicts if v.stage == "user_input"]
    assert [(v.guard, v.decision, v.images) for v in seen] == [("llama_guard", "allow", ("sky.png (48x32 png)",))]
    assert backend.calls == [(sky,)]
    audited = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    judged = [r for r in audited if r["kind"] == "verdict" and r["stage"] == "user_input"]
    assert judged and all(r["images"] == [sky.sha256] for r in judged)  # digests only: the bytes stay out
    stored = (await bot.history("t1"))[0]
    assert [ImageData.from_dict(i) for i in stored["images"]] == [sky]
    # the next turn's prompt still holds the image (it is part of the conversation), judged once, with its message
    result = await bot.arun("And now?", thread="t1")
    assert result.text == "Still blue."
    assert backend.calls[-1] == (sky,)
    assert all(not v.images for v in result.verdicts)


async def test_an_unsafe_image_is_blocked_before_the_model_and_nothing_is_stored(tmp_path: Path) -> None:
    bot, backend = assistant(tmp_path, LG4_POLICY, "never said<|eot|>")
    result = await bot.arun("A harmless question about this picture.", thread="t2", images=[png(MAGENTA)])
    assert isinstance(result.events[-1], Refusal) and result.refusal is not None
    assert result.refusal.stage == "user_input" and not result.refusal.guard_error
    blocked = [v for v in result.verdicts if v.guard == "llama_guard"]
    assert blocked[0].decision == "block" and "S9" in blocked[0].categories and blocked[0].images
    assert backend.calls == []  # not even a speculative start: no model read the pixels
    assert await bot.history("t2") == []


async def test_one_unsafe_image_among_benign_ones_blocks_the_message(tmp_path: Path) -> None:
    bot, backend = assistant(tmp_path, LG4_POLICY, "never said<|eot|>")
    images = [png(SKY, name="a.png"), png(MAGENTA, (400, 700), name="b.png")]  # the second one spans several tiles
    result = await bot.arun("Compare them.", thread="t3", images=images)
    assert result.refused and backend.calls == []


async def test_a_policy_whose_guards_cannot_see_images_refuses_them_before_anything_runs(tmp_path: Path) -> None:
    bot, backend = assistant(tmp_path, LG3_POLICY, "never said<|eot|>")
    with pytest.raises(ImagesRefused, match=r"guards cannot see images .*Llama Guard 4"):
        await bot.arun("What is this?", thread="t4", images=[png(SKY)])
    assert backend.calls == []


async def test_a_main_model_that_takes_no_images_refuses_them(tmp_path: Path) -> None:
    bot, _ = assistant(tmp_path, LG4_POLICY, "never said<|eot|>", accepts=False)
    with pytest.raises(ImagesRefused, match=r"does not take images"):
        await bot.arun("What is this?", thread="t5", images=[png(SKY)])


async def test_images_enabled_false_and_the_count_limit(tmp_path: Path) -> None:
    off, _ = assistant(tmp_path, LG4_POLICY + "images: {enabled: false}\n", "x<|eot|>")
    with pytest.raises(ImagesRefused, match=r"images.enabled: false"):
        await off.arun("x", images=[png(SKY)])
    two, _ = assistant(tmp_path, LG4_POLICY + "images: {max_count: 1}\n", "x<|eot|>")
    with pytest.raises(ImagesRefused, match=r"images.max_count"):
        await two.arun("x", images=[png(SKY), png(SKY)])


def test_a_judgement_covers_its_images_exactly() -> None:
    sky, other = png(SKY), png((10, 200, 10))
    message = {"role": "user", "content": "look", "images": [sky.to_dict()]}
    passed = Judgement("user_text", "look", "pass", (), (), (sky.sha256,))
    sealed = seal(message, passed)
    swapped = {**sealed, "images": [other.to_dict()]}
    assert digest({k: v for k, v in swapped.items() if k != "judged"}) != sealed["judged"]["sha256"]
    with pytest.raises(ValueError, match="other images"):
        seal({**message, "images": [other.to_dict()]}, passed)
    with pytest.raises(ValueError, match="other images"):
        seal({"role": "user", "content": "look"}, passed)  # a judgement with images seals no message without them


async def test_verdict_events_without_images_stay_as_they_were(tmp_path: Path) -> None:
    bot, _ = assistant(tmp_path, LG4_POLICY, "Hello.<|eot|>")
    result = await bot.arun("hello", thread="t6")
    assert isinstance(result.events[-1], Final)
    assert all(isinstance(v, GuardVerdict) and v.images == () for v in result.verdicts)


async def test_a_stored_image_whose_bytes_changed_is_never_sent(tmp_path: Path) -> None:
    bot, backend = assistant(tmp_path, LG4_POLICY, "A blue square.<|eot|>", "never said<|eot|>")
    await bot.arun("What colour is this?", thread="t7", images=[png(SKY)])
    messages = await bot.history("t7")
    forged = png(MAGENTA).to_dict()
    messages[0]["images"] = [{**messages[0]["images"][0], "data": forged["data"]}]  # same digest, other bytes
    await replace_thread(bot, "t7", messages)
    calls = len(backend.calls)
    result = await bot.arun("And now?", thread="t7")
    assert result.guard_error and len(backend.calls) == calls
    notices = [e.message for e in result.events if getattr(e, "kind", "") == "unjudged_message"]
    assert notices and "holds an image whose bytes are not the image that was judged" in notices[0]


async def replace_thread(bot: Assistant, thread: str, messages: list[dict]) -> None:
    """A forger with write access to the store changes only the bytes, keeping each message's record."""
    async with bot._open_agent(thread) as agent:
        state = await agent.state(thread)
        records = [m.get("judged") for m in state["messages"]]
        forged = [{**m, "judged": r} for m, r in zip(messages, records, strict=True)]
        await agent.graph.aupdate_state(agent.config(thread), {"messages": forged})


async def test_image_data_made_by_hand_passes_the_same_checks(tmp_path: Path) -> None:
    bot, backend = assistant(tmp_path, LG4_POLICY, "never said<|eot|>")
    real = png(MAGENTA)
    lying = dataclasses.replace(real, width=1, height=1, sha256="0" * 64)  # claims another image than its bytes
    with pytest.raises(ImagesRefused, match="do not match its bytes"):
        await bot.arun("x", images=[lying])
    out = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(out, "PNG")  # a decompression bomb wrapped without read_image
    bomb = ImageData(name="bomb.png", data=out.getvalue(), format="png", width=1, height=1, sha256="x")
    with pytest.raises(ImagesRefused, match=r"bomb.png: refused before decoding|over the limit"):
        await bot.arun("x", images=[bomb])
    assert backend.calls == []
