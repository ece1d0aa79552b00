"""vLLM-servable variants of the tiny checkpoints: vLLM's CPU attention needs a head size of 32 or more, and the
suite's tiny models use 16 (hidden 64, 4 heads). Same architecture, tokenizer and training code, 2 heads of 32.

- `main`: random-weight Llama 3.1 saved in float32, with a wide weight init so that the greedy choice between
  tokens is never a near tie (a float32 rounding difference between two engines must not flip a token).
- `llama-guard`: the tiny trained Llama Guard (guards.tiny_guards' data, loss and schedule): `safe`, or
  `unsafe\\nS9` for `zyxtrigger` in the message under check.

Built once into `.cache/vllm-models/` (versioned, locked, atomic: model.versioned_dir).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from model.versioned_dir import build_once

VERSION = "vllm-tiny-1"
MARKER = ".vllm-tiny-version"
HEADS = {"num_attention_heads": 2, "num_key_value_heads": 2}  # hidden 64 / 2 heads = head_dim 32


def build_vllm_checkpoints(directory: Path) -> dict[str, Path]:
    return {
        "main": build_once(directory / "main", _write_main, marker=MARKER, version=VERSION),
        "llama-guard": build_once(directory / "llama-guard", _write_guard, marker=MARKER, version=VERSION),
    }


def _config(**overrides: Any) -> Any:
    from transformers import LlamaConfig

    from model.tiny import tiny_llama_config

    return LlamaConfig(**{**tiny_llama_config(), **HEADS, **overrides})


def _finish(directory: Path, model: Any) -> None:
    from transformers import GenerationConfig

    from model.hf_tokenizer import save_hf_tokenizer
    from model.tiny import PAD_ID, STOP_IDS
    from model.tokenizer import default_tokenizer_model

    model.save_pretrained(str(directory), safe_serialization=True)
    GenerationConfig(bos_token_id=128_000, eos_token_id=list(STOP_IDS), pad_token_id=PAD_ID, do_sample=False
                     ).save_pretrained(str(directory))  # fmt: skip
    save_hf_tokenizer(directory)
    (directory / "original").mkdir()
    shutil.copyfile(default_tokenizer_model(), directory / "original" / "tokenizer.model")


def _write_main(directory: Path) -> None:
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(_config(initializer_range=0.5, max_position_embeddings=16384)).eval()
    _finish(directory, model)


def _write_guard(directory: Path, steps: int = 200, batch: int = 16) -> None:
    import torch
    from transformers import LlamaForCausalLM

    from guards.tiny_guards import LG_SEED, _deterministic, _lg_batch, _lg_loss

    with _deterministic(LG_SEED) as rng:
        model = LlamaForCausalLM(_config(tie_word_embeddings=True, max_position_embeddings=16384))
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 10) * (1 - s / steps))
        for step in range(steps):
            examples = _lg_batch(rng, batch, max_turns=3 if step < steps // 2 else 5, max_words=30)
            loss = _lg_loss(model, examples)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
        model.eval()
    _finish(directory, model)
