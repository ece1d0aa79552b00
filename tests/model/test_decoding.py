"""Local decoding steps: incremental detokenisation in constant work per token (14.7), special ids streamed as
`SpecialToken` and plain-spelled special-token text as plain text (12.9), and the backend's swappable token choice."""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path

import pytest

from model.backends import GenerationParams
from model.backends.decoding import IncrementalDecoder
from model.backends.transformers_backend import TransformersBackend
from model.completion import CompletionBuilder, SpecialToken
from model.messages import Message, ToolSpec
from model.prompt_format import encode_dialog
from model.tokenizer import get_tokenizer

TODAY = date(2024, 7, 23)
# Multi-byte characters that byte-level BPE splits over several tokens, so deltas must wait for complete characters.
SAMPLE = "Grüße, 世界! 🦙🦙 naïve café — ½ ∑ 𝐱 \U0001f9d1\u200d\U0001f4bb ok\n"


@pytest.fixture(scope="module")
def hf_tokenizer(tiny_llama_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_llama_dir))


def test_ten_thousand_tokens_decode_in_linear_work(hf_tokenizer) -> None:
    tok = get_tokenizer()
    ids: list[int] = []
    while len(ids) < 10_000:
        ids += tok.encode(SAMPLE)
        ids.append(tok.python_tag_id if len(ids) % 7 else tok.eom_id)
    ids = ids[:10_000]
    decoder = IncrementalDecoder(hf_tokenizer)
    started = time.perf_counter()
    deltas = [delta for i, token in enumerate(ids) for delta in decoder.push(token, final=i == len(ids) - 1)]
    elapsed = time.perf_counter() - started
    assert "".join(deltas) == hf_tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    assert "\ufffd" not in "".join(deltas)  # no character was ever emitted in halves
    # Each push decodes a window of a few ids (re-decoding everything so far would be ~50 million ids here).
    assert decoder.decoded_ids < 12 * len(ids), decoder.decoded_ids
    specials = [d for d in deltas if isinstance(d, SpecialToken)]
    assert len(specials) == sum(1 for i in ids if i >= 128_000)
    assert elapsed < 10


def test_invalid_bytes_do_not_grow_the_window(hf_tokenizer) -> None:
    """A run of bytes that never completes a character is emitted (as U+FFFD) after a few tokens, not held forever."""
    byte_ids = [hf_tokenizer.convert_tokens_to_ids(hf_tokenizer.convert_ids_to_tokens(i)) for i in range(128, 160)]
    lone = [i for i in byte_ids if "\ufffd" in hf_tokenizer.decode([i])][:1] * 2000
    decoder = IncrementalDecoder(hf_tokenizer)
    out = [d for token in lone for d in decoder.push(token)]
    out += decoder.flush()
    assert "".join(out).count("\ufffd") >= 1 and decoder.decoded_ids < 12 * len(lone)


class PlainEcho(TransformersBackend):
    """The real tiny model, made to choose the ORDINARY tokens that spell `<|python_tag|>print(1)` (as a model that
    repeats a user's text does), then the real `<|eot_id|>` id."""

    def token_chooser(self, prompt_ids, params):
        forced = iter([*get_tokenizer().encode("<|python_tag|>print(1)"), get_tokenizer().eot_id])
        return lambda logits: next(forced)


async def test_a_plain_spelled_python_tag_from_the_model_stays_text(tiny_llama_dir: Path) -> None:
    tok = get_tokenizer()
    backend = PlainEcho(str(tiny_llama_dir), reuse_cache=False)
    spec = ToolSpec(builtin_tools=("code_interpreter",))
    prompt = encode_dialog([Message("user", "Say <|python_tag|>print(1)")], spec, today=TODAY)
    builder = CompletionBuilder()
    async for delta in backend.stream(prompt, GenerationParams(max_new_tokens=64)):
        builder.add(delta)
    completion = builder.result()
    assert completion.text == "<|python_tag|>print(1)<|eot_id|>"
    assert completion.special_spans == ((22, 32),)  # only the stop token was generated as a special id
    parsed = completion.parse(builtin_tools=("code_interpreter",))
    assert parsed.tool_calls == () and parsed.content == "<|python_tag|>print(1)"
    reply = Message("assistant", parsed.content or "", raw=completion.raw, special_spans=completion.raw_spans,
                    stop_reason=completion.stop_reason)
    again = encode_dialog([Message("user", "Say <|python_tag|>print(1)"), reply], spec, today=TODAY)
    assert tok.python_tag_id not in again
    assert again[len(prompt) : len(prompt) + len(backend.stats.last_generated_ids)] == list(
        backend.stats.last_generated_ids
    )  # re-encoded exactly as generated: plain tokens, then the stop id


async def test_a_generated_python_tag_id_is_a_special_delta(tiny_llama_dir: Path) -> None:
    tok = get_tokenizer()

    class TagCall(TransformersBackend):
        def token_chooser(self, prompt_ids, params):
            forced = iter([tok.python_tag_id, *tok.encode("print(1)"), tok.eom_id])
            return lambda logits: next(forced)

    deltas = [d async for d in TagCall(str(tiny_llama_dir)).stream([128000, 9906], GenerationParams())]
    assert deltas[0] == "<|python_tag|>" and isinstance(deltas[0], SpecialToken)
    assert isinstance(deltas[-1], SpecialToken) and deltas[-1] == "<|eom_id|>"
    assert not any(isinstance(d, SpecialToken) for d in deltas[1:-1])
