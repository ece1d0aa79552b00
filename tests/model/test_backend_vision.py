"""The transformers backend on the tiny Llama 4 with its vision tower (`tiny:llama4-vision`): images reach the model
as pixels, a prompt whose `<|patch|>` tokens are not its images' is refused, and the KV cache is reused across an
image only when it is the same image."""

from __future__ import annotations

import asyncio
import io
from datetime import date
from pathlib import Path

import pytest
from PIL import Image

from model.backends import BackendError, GenerationParams
from model.backends.base import BackendDefaults, ModelBackend
from model.backends.loading import resolve_model_source
from model.backends.openai_backend import OpenAIBackend
from model.backends.scripted import ScriptedBackend
from model.backends.transformers_backend import TransformersBackend
from model.family import family_from_config
from model.images import ImageData, ImageLimits, read_image
from model.messages import Message
from model.prompt_format import dialog_images, encode_dialog
from model.tiny import TINY_DIR_ENV
from model.tokenizer import get_tokenizer

TODAY = date(2025, 4, 5)


def png(colour: tuple[int, int, int], size: tuple[int, int] = (800, 600)) -> ImageData:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return read_image(buffer.getvalue(), name=f"rgb{colour}.png", limits=ImageLimits())


RED, BLUE, SMALL_RED = png((255, 0, 0)), png((0, 0, 255)), png((255, 0, 0), (120, 90))


def ids_of(messages: list[Message]) -> list[int]:
    return encode_dialog(messages, today=TODAY, tokenizer=get_tokenizer(family="llama4"))


def ask(image: ImageData, text: str = "What colour is this?") -> list[Message]:
    return [Message("user", text, images=(image,))]


def generate(backend: TransformersBackend, messages: list[Message], *, images: tuple[ImageData, ...] | None = None,
             tokens: int = 10) -> tuple[int, ...]:
    params = GenerationParams(max_new_tokens=tokens, images=dialog_images(messages) if images is None else images)

    async def run() -> None:
        async for _ in backend.stream(ids_of(messages), params):
            pass

    asyncio.run(run())
    return backend.stats.last_generated_ids


@pytest.fixture(scope="module")
def vision(tiny_llama4_vision_dir: Path) -> TransformersBackend:
    backend = TransformersBackend(str(tiny_llama4_vision_dir), dtype="float32", device="cpu", context_window=16384)
    assert backend.accepts_images  # read from config.json, before loading
    backend.load()
    return backend


def test_pixels_reach_the_model(vision: TransformersBackend) -> None:
    red = generate(vision, ask(RED))
    assert vision.stats.last_prompt_tokens == len(ids_of(ask(RED))) > 2 * 144
    blue = generate(vision, ask(BLUE))
    assert len(red) == len(blue) == 10
    assert red != blue  # the same prompt ids, other pixels: another answer
    vision.reset_cache()
    assert generate(vision, ask(RED)) == red


def test_cache_stops_before_another_image(vision: TransformersBackend) -> None:
    first_patch = ids_of(ask(RED)).index(get_tokenizer(family="llama4").special_id("<|patch|>"))
    generate(vision, ask(RED))
    generate(vision, ask(BLUE))
    assert vision.stats.last_cached_tokens == first_patch  # same ids up to the end, but not the same image


def test_cache_reused_across_the_same_image_equals_no_reuse(vision: TransformersBackend,
                                                             tiny_llama4_vision_dir: Path) -> None:
    turn = ask(RED)
    answer = generate(vision, turn)
    follow = [*turn, Message("assistant", get_tokenizer(family="llama4").decode(list(answer[:4]))),
              Message("user", "And now?", images=(SMALL_RED,))]
    with_reuse = generate(vision, follow)
    reused = vision.stats.last_cached_tokens
    patch = get_tokenizer(family="llama4").special_id("<|patch|>")
    first_ids = ids_of(turn)
    assert reused > len(first_ids) - 10 and reused > max(i for i, t in enumerate(first_ids) if t == patch)
    fresh = TransformersBackend(str(tiny_llama4_vision_dir), dtype="float32", device="cpu", context_window=16384,
                                reuse_cache=False)
    assert generate(fresh, follow) == with_reuse


@pytest.mark.parametrize(("images", "problem"), [
    ((), r"has 1008 <\|patch\|> tokens but its images \(no images\) need 0"),
    ((RED, BLUE), r"but its images \(rgb\(255, 0, 0\).png, rgb\(0, 0, 255\).png\) need 2016"),
    ((SMALL_RED,), r"has 1008 <\|patch\|> tokens but its images \(rgb\(255, 0, 0\).png\) need 144"),
])
def test_images_must_be_the_prompts(vision: TransformersBackend, images: tuple[ImageData, ...], problem: str) -> None:
    with pytest.raises(BackendError, match=problem):
        generate(vision, ask(RED), images=images)


def test_images_without_their_tokens_are_refused(vision: TransformersBackend) -> None:
    with pytest.raises(BackendError, match=r"0 <\|patch\|> tokens but its images"):
        generate(vision, [Message("user", "no image here")], images=(RED,))


def test_text_model_takes_no_images(tiny_llama_dir: Path) -> None:
    text = TransformersBackend(str(tiny_llama_dir), dtype="float32", device="cpu")
    assert not text.accepts_images

    async def run() -> None:
        async for _ in text.stream([128000, 9906], GenerationParams(max_new_tokens=2, images=(RED,))):
            pass

    with pytest.raises(BackendError, match="no vision tower and takes no images"):
        asyncio.run(run())


def test_other_backends_refuse_images(tmp_path: Path) -> None:
    script = tmp_path / "script.jsonl"
    script.write_text('{"completion": "ok<|eot|>"}\n{"completion": "ok<|eot|>"}\n', encoding="utf-8")
    params = GenerationParams(images=(RED,))

    async def first(backend: ModelBackend) -> list[str]:
        return [delta async for delta in backend.stream([200000, 1], params)]

    assert not BackendDefaults().accepts_images
    refusing = ScriptedBackend(script)
    assert not refusing.accepts_images
    with pytest.raises(BackendError, match=r"takes no images, and this prompt has 1 \(rgb\(255, 0, 0\).png\)"):
        asyncio.run(first(refusing))
    accepting = ScriptedBackend(script, accepts_images=True)
    assert accepting.accepts_images and "".join(asyncio.run(first(accepting))) == "ok<|eot|>"
    remote = OpenAIBackend("http://127.0.0.1:9/v1", model="m")
    assert not remote.accepts_images
    with pytest.raises(BackendError, match="takes no images"):
        asyncio.run(first(remote))


def test_tiny_source_and_family(tiny_llama4_vision_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TINY_DIR_ENV, str(tiny_llama4_vision_dir.parent))
    assert resolve_model_source("tiny:llama4-vision") == tiny_llama4_vision_dir
    assert family_from_config(tiny_llama4_vision_dir) == "llama4"


def test_checkpoint_tokenizer_is_llama4s(vision: TransformersBackend) -> None:
    """tokenizer.json (model.hf_tokenizer, family llama4) agrees with the prompt encoder on text and special ids."""
    hf, ours = vision.load().tokenizer, get_tokenizer(family="llama4")
    for text in ("What colour is this?", "  déjà vu 12345\n\n\tx", "日本語のテキスト"):
        assert hf.encode(text, add_special_tokens=False) == ours.encode(text)
    for name in ("<|begin_of_text|>", "<|patch|>", "<|image_start|>", "<|eot|>", "<|finetune_right_pad|>"):
        assert hf.convert_tokens_to_ids(name) == ours.special_id(name)
    assert vision.stop_ids >= {ours.special_id("<|eot|>"), ours.special_id("<|eom|>")}
