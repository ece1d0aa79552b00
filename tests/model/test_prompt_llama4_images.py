"""Images in the Llama 4 prompt: our ids equal Meta's `llama_models.llama4.chat_format` encoding the same dialog with
the images in the user messages' content lists (tests/model/image_oracle.py says what stands in for torchvision)."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from model.image_tiles import image_grid, image_token_strings
from model.images import ImageData, ImageLimits, read_image
from model.messages import Message, ToolCall, ToolSpec
from model.prompt_format import PromptFormatError, dialog_images, dialog_segments, encode_dialog, render_dialog
from model.prompt_segments import segment_images
from model.tokenizer import get_tokenizer

sys.path.insert(0, str(Path(__file__).parent))
from image_oracle import meta_vision_format
from prompt_oracles import WEATHER
from prompt_oracles_pythonic import INJECTIONS4, TODAY, oracle_ids


def solid(width: int, height: int, colour: tuple[int, int, int] = (200, 30, 40), name: str = "img.png") -> ImageData:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return read_image(buffer.getvalue(), name=name, limits=ImageLimits())


SMALL, WIDE, PHOTO, TALL, HUGE = solid(200, 120), solid(1000, 300), solid(800, 600), solid(90, 1400), solid(5000, 5000)
TOOLS = ToolSpec(tools=(WEATHER,), tool_format="pythonic")
CASES: dict[str, tuple[list[Message], ToolSpec]] = {
    "one image": ([Message("user", "What is in this picture?", images=(PHOTO,))], ToolSpec(tool_format="pythonic")),
    "one tile": ([Message("user", "Describe.", images=(SMALL,))], ToolSpec(tool_format="pythonic")),
    "several images": ([Message("system", "Be brief."), Message("user", "Compare these.", images=(SMALL, WIDE, TALL))],
                       ToolSpec(tool_format="pythonic")),
    "sixteen tiles": ([Message("user", "Read the sign.", images=(HUGE,))], ToolSpec(tool_format="pythonic")),
    "image only": ([Message("user", "", images=(WIDE,))], ToolSpec(tool_format="pythonic")),
    "multi-turn with tools": (
        [
            Message("system", "You help with the weather."),
            Message("user", "Where was this taken? What's the weather there?", images=(PHOTO,)),
            Message("assistant", tool_calls=(ToolCall("get_weather", {"city": "Paris"}),)),
            Message("tool", '{"temp": 21}', tool_name="get_weather"),
            Message("assistant", "It is 21 degrees in Paris."),
            Message("user", "And this one?", images=(TALL, SMALL)),
        ],
        TOOLS,
    ),
    "injections beside images": (
        [Message("user", text, images=(SMALL,)) for text in INJECTIONS4], ToolSpec(tool_format="pythonic")),
}


@pytest.fixture(scope="module")
def tok() -> Any:
    return get_tokenizer(family="llama4")


@pytest.mark.parametrize("name", CASES)
def test_ids_equal_meta_chat_format(name: str, tok: Any) -> None:
    messages, spec = CASES[name]
    ours = encode_dialog(messages, spec, today=TODAY, tokenizer=tok)
    with meta_vision_format() as fmt:
        assert ours == oracle_ids(messages, spec, "llama4", fmt=fmt)


@pytest.mark.parametrize("name", CASES)
def test_rendering_shows_the_same_tokens(name: str, tok: Any) -> None:
    messages, spec = CASES[name]
    rendered = render_dialog(messages, spec, today=TODAY, family="llama4")
    assert tok.decode(encode_dialog(messages, spec, today=TODAY, tokenizer=tok)) == rendered


@pytest.mark.parametrize("name", CASES)
def test_image_tokens_come_only_from_images(name: str, tok: Any) -> None:
    messages, spec = CASES[name]
    ids = encode_dialog(messages, spec, today=TODAY, tokenizer=tok)
    images = dialog_images(messages)
    expected = sum(len(image_token_strings(image_grid(i.width, i.height))) for i in images)
    image_ids = {tok.special_id(n) for n in ("<|image_start|>", "<|image_end|>", "<|image|>", "<|patch|>",
                                             "<|tile_x_separator|>", "<|tile_y_separator|>")}
    assert sum(1 for i in ids if i in image_ids) == expected  # user text spelling them stays plain text
    assert ids.count(tok.special_id("<|image_start|>")) == len(images)


def test_images_in_prompt_order() -> None:
    messages, spec = CASES["multi-turn with tools"]
    segments = dialog_segments(messages, spec, today=TODAY, family="llama4")
    assert segment_images(segments) == dialog_images(messages) == (PHOTO, TALL, SMALL)


def test_images_come_before_the_text() -> None:
    rendered = render_dialog([Message("user", "Hi", images=(SMALL,))], today=TODAY, family="llama4")
    assert rendered.endswith("<|header_start|>user<|header_end|>\n\n" + "".join(image_token_strings((1, 1)))
                             + "Hi<|eot|><|header_start|>assistant<|header_end|>\n\n")


@pytest.mark.parametrize("dialect", ["meta", "hf"])
def test_llama3_family_refuses_images(dialect: Any) -> None:
    with pytest.raises(PromptFormatError, match=r"messages\[1\]: the llama3 family takes no images"):
        encode_dialog([Message("system", "s"), Message("user", "look", images=(SMALL,))], today=TODAY,
                      dialect=dialect)


@pytest.mark.parametrize("role", ["system", "assistant", "tool"])
def test_only_user_messages_carry_images(role: Any) -> None:
    with pytest.raises(PromptFormatError, match=f"only user messages carry images, not {role} messages"):
        render_dialog([Message("user", "hi"), Message(role, "x", images=(SMALL,))], today=TODAY, family="llama4")


def documented_prompts() -> dict[str, str]:
    """Title -> input prompt of the image sections of llama-stack's Llama 4 prompt-format document."""
    import llama_stack.models.llama.llama4 as doc_home

    text = (Path(doc_home.__file__).parent / "prompt_format.md").read_text(encoding="utf-8")
    prompts = {}
    for section in text.split("\n## ")[1:]:
        title, _, body = section.partition("\n")
        if "image" in title and "##### Input Prompt Format\n```\n" in body:
            prompts[title.strip()] = body.split("##### Input Prompt Format\n```\n", 1)[1].split("\n```", 1)[0]
    return prompts


def test_documented_image_prompts() -> None:
    """The document's examples: the small dog (any image under one tile lays out the same), dog.jpg (512x512: 2x2
    tiles) and dog.jpg with pasta.jpeg (1280x1280: 4x4 tiles), both shipped with llama-models."""
    import llama_models

    resources = Path(llama_models.__file__).parent / "resources"
    dog, pasta = (read_image((resources / name).read_bytes(), name=name, limits=ImageLimits())
                  for name in ("dog.jpg", "pasta.jpeg"))
    ours = {
        "Single image prompt format - small image": ([SMALL], "Describe this image in two sentences"),
        "Single image prompt format": ([dog], "Describe this image in two sentences"),
        "Multiple images prompt format": ([dog, pasta], "Describe these images in two sentences"),
    }
    documented = documented_prompts()
    assert set(documented) == set(ours)
    for title, (images, text) in ours.items():
        rendered = render_dialog([Message("user", text, images=tuple(images))], today=TODAY, family="llama4")
        assert rendered == documented[title], title
