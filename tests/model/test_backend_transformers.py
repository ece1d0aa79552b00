"""The transformers backend on the tiny checkpoint: real from_pretrained, streaming, stops, sampling, KV-cache reuse."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import pytest

from model.backends import BackendError, GenerationParams, LoadEvent, load_backend
from model.backends.transformers_backend import LLAMA_STOP_IDS, TransformersBackend
from model.messages import Message
from model.prompt_format import encode_dialog
from model.tokenizer import get_tokenizer

TODAY = date(2024, 7, 23)
GREEDY = GenerationParams(max_new_tokens=8)


def dialog_ids(*messages: Message) -> list[int]:
    return encode_dialog(list(messages), today=TODAY)


FIRST = [Message("system", "You are terse."), Message("user", "Name three colours.")]


async def collect(backend: TransformersBackend, prompt: list[int], params: GenerationParams = GREEDY) -> list[str]:
    return [delta async for delta in backend.stream(prompt, params)]


@pytest.fixture(scope="module")
def events() -> list[LoadEvent]:
    return []


@pytest.fixture(scope="module")
def backend(tiny_llama_dir: Path, events: list[LoadEvent]) -> TransformersBackend:
    from model.backends import transformers_backend

    transformers_backend._LOADED.clear()  # an earlier test module may have loaded it: this one watches a real load
    model = TransformersBackend(str(tiny_llama_dir), on_progress=events.append, reuse_cache=False)
    model.load()
    return model


def test_loading_reports_progress_and_happens_once(backend: TransformersBackend, events, tiny_llama_dir) -> None:
    stages = [event.stage for event in events]
    assert stages[0] == "resolve" and stages[-1] == "ready"
    assert {"tokenizer", "weights"} <= set(stages)
    again = TransformersBackend(str(tiny_llama_dir))
    assert again.load() is backend.load()  # the weights are shared, not loaded twice
    assert backend.stop_ids == frozenset(LLAMA_STOP_IDS)
    assert backend.model_dir == tiny_llama_dir


async def test_greedy_stream_is_deterministic_and_decodes_the_generated_ids(backend: TransformersBackend) -> None:
    prompt = dialog_ids(*FIRST)
    first = await collect(backend, prompt)
    ids = backend.stats.last_generated_ids
    assert len(ids) == 8 and backend.stats.last_generated_tokens == 8
    assert backend.stats.last_prompt_tokens == len(prompt) == backend.stats.last_prefill_tokens
    assert "".join(first) == get_tokenizer().decode(ids)
    assert len(first) >= 4  # streamed token by token, not in one piece
    assert await collect(backend, prompt) == first


async def test_stops_after_a_stop_token_and_includes_it(tiny_llama_dir: Path, backend: TransformersBackend) -> None:
    prompt = dialog_ids(*FIRST)
    await collect(backend, prompt)
    ids = backend.stats.last_generated_ids
    # Random weights never choose <|eot_id|>; make the third greedy token a stop token to drive the same code path.
    stopping = TransformersBackend(str(tiny_llama_dir), stop_ids=[ids[2]])
    deltas = await collect(stopping, prompt)
    assert stopping.stats.last_generated_ids == ids[:3]
    assert "".join(deltas) == get_tokenizer().decode(ids[:3])


async def test_sampling_follows_the_seed(backend: TransformersBackend) -> None:
    prompt = dialog_ids(*FIRST)
    sampled = GenerationParams(max_new_tokens=6, temperature=1.0, top_p=1.0, seed=7)
    first = await collect(backend, prompt, sampled)
    assert await collect(backend, prompt, sampled) == first
    other = await collect(backend, prompt, GenerationParams(max_new_tokens=6, temperature=1.0, top_p=1.0, seed=8))
    assert other != first
    assert first != await collect(backend, prompt, GenerationParams(max_new_tokens=6))  # not greedy


def test_top_p_keeps_only_the_nucleus() -> None:
    import torch

    from model.backends.decoding import pick_token as _pick_token

    logits = torch.full((128_256,), -10.0)
    logits[5], logits[7] = 10.0, 9.5  # p(5) ~ 0.62, p(7) ~ 0.38, the rest ~ 0
    generator = torch.Generator().manual_seed(0)
    nucleus = GenerationParams(temperature=1.0, top_p=0.5)
    assert {_pick_token(logits, nucleus, generator) for _ in range(40)} == {5}
    wide = GenerationParams(temperature=1.0, top_p=0.99)
    assert {_pick_token(logits, wide, generator) for _ in range(60)} == {5, 7}
    assert _pick_token(logits, GenerationParams(), generator) == 5


async def test_cache_reuse_gives_identical_output_with_less_prefill(tiny_llama_dir: Path) -> None:
    cold = TransformersBackend(str(tiny_llama_dir), reuse_cache=False)
    warm = TransformersBackend(str(tiny_llama_dir), reuse_cache=True)
    prompt1 = dialog_ids(*FIRST)
    step1 = await collect(warm, prompt1)
    assert step1 == await collect(cold, prompt1)
    reply = Message("assistant", "".join(step1), raw="".join(step1))
    prompt2 = dialog_ids(*FIRST, reply, Message("user", "And three more?"))
    assert await collect(warm, prompt2) == await collect(cold, prompt2)
    assert cold.stats.last_prefill_tokens == len(prompt2)
    assert warm.stats.last_cached_tokens >= len(prompt1)  # the whole first prompt at least
    assert warm.stats.last_prefill_tokens == len(prompt2) - warm.stats.last_cached_tokens
    # A prompt that differs early invalidates all but the common prefix, and still gives the cold output.
    changed = dialog_ids(Message("system", "You are verbose."), *FIRST[1:])
    assert await collect(warm, changed) == await collect(cold, changed)
    common = next(i for i, (a, b) in enumerate(zip(prompt2, changed, strict=False)) if a != b)
    assert warm.stats.last_cached_tokens == common < len(prompt1)


async def test_abandoned_stream_stops_the_worker(backend: TransformersBackend) -> None:
    prompt = dialog_ids(*FIRST)
    stream = backend.stream(prompt, GenerationParams(max_new_tokens=200))
    async for _delta in stream:
        break
    await stream.aclose()
    assert len(backend.stats.last_generated_ids) < 200
    assert len(await asyncio.wait_for(collect(backend, prompt), 60)) > 0


async def test_prompt_longer_than_the_context_window_is_refused(tiny_llama_dir: Path) -> None:
    small = TransformersBackend(str(tiny_llama_dir), context_window=16)
    with pytest.raises(BackendError, match="does not fit the context window of 16"):
        await collect(small, dialog_ids(*FIRST))


def test_load_backend_specs_and_config(tiny_llama_dir: Path, tmp_path: Path) -> None:
    from types import SimpleNamespace

    assert isinstance(load_backend(f"transformers:{tiny_llama_dir}"), TransformersBackend)
    config = SimpleNamespace(source=str(tiny_llama_dir), backend="transformers", base_url=None, api_key_env=None,
                             device="cpu", dtype="float32", context_window=4096)
    configured = load_backend(config)
    assert isinstance(configured, TransformersBackend)
    assert (configured.device, configured.dtype, configured.context_window) == ("cpu", "float32", 4096)
    with pytest.raises(BackendError, match="unknown model backend 'llamacpp'"):
        load_backend("llamacpp:model.gguf")
    with pytest.raises(BackendError, match="no backend prefix"):
        load_backend(str(tmp_path))
