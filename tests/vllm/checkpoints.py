"""vLLM-servable variants of the tiny checkpoints: vLLM's CPU attention needs a head size of 32 or more, and the
suite's tiny models use 16 (hidden 64, 4 heads).

- `main`: random-weight Llama 3.1 (2 heads of 32) saved in float32, with a wide weight init so that the greedy choice
  between tokens is never a near tie (a float32 rounding difference between two engines must not flip a token).
- `llama-guard`: the suite's tiny Llama Guard, constructed by the same code
  (`assistant.dev.tiny_guards.training.construct_llama_guard`) at hidden size 128 (4 heads of 32): `safe`, or
  `unsafe\\nS9`
  for `zyxtrigger`, `unsafe\\nbanana` (malformed) for `zyxgarble`; `unsafe` is the runner-up after `safe`.

Built once into `.cache/vllm-models/` (versioned, locked, atomic: model.versioned_dir).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from model.versioned_dir import build_once

VERSION = "vllm-tiny-4"
MARKER = ".vllm-tiny-version"
HEADS = {"num_attention_heads": 2, "num_key_value_heads": 2}  # hidden 64 / 2 heads = head_dim 32
GUARD_SIZE = {"hidden_size": 128, "intermediate_size": 256}  # 4 heads (the construction's layout) of 32


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
                     ).save_pretrained(str(directory))
    save_hf_tokenizer(directory)
    (directory / "original").mkdir()
    shutil.copyfile(default_tokenizer_model(), directory / "original" / "tokenizer.model")


def _write_main(directory: Path) -> None:
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(_config(initializer_range=0.5, max_position_embeddings=16384)).eval()
    _finish(directory, model)


def _write_guard(directory: Path) -> None:
    import torch

    from assistant.dev.tiny_guards.builder import LG_SEED
    from assistant.dev.tiny_guards.training import construct_llama_guard, deterministic
    from model.tokenizer import get_tokenizer

    with deterministic(LG_SEED):
        model = construct_llama_guard(GUARD_SIZE).float().eval()
    # As in the real Llama Guard 3, `unsafe` is the runner-up after a `safe` (P ~ 1.5e-8 here) instead of tying
    # with every other token at logit 0, so a safe check is read from the top 20 log-probabilities (the common path);
    # the exact path for an `unsafe` below the top 20 has its own test.
    with torch.no_grad():
        model.lm_head.weight[get_tokenizer().encode("unsafe")[0], 0] += 0.4  # dimension 0: the constant bias
    _finish(directory, model)
