"""A tiny random-weight Llama 4 main model with its vision tower (`tiny:llama4-vision`), in Hugging Face form.

A `Llama4ForConditionalGeneration` as Scout is published: a vision tower at the real vision settings (tiles of 336
pixels, patches of 14, pixel shuffle 0.5: 144 `<|patch|>` features per tile, so `model.image_tiles` runs unchanged),
the projector, and Llama 4's text architecture (a NoPE layer then a RoPE layer with QK-norm and chunked attention,
one mixture-of-experts layer as Scout has) at tiny sizes, with the real 202,048-token Llama 4 tokenizer (tokenizer.json
for transformers, original/tokenizer.model for the prompt encoder). Random weights: the text is noise; what it
exercises is every real loading, image-merging and generation path.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

from model import versioned_dir
from model.backends.construction import constructing
from model.hf_import import quiet_hf_progress
from model.hf_tokenizer import save_hf_tokenizer
from model.image_tiles import LLAMA4_VISION
from model.tokenizer import default_tokenizer_model, get_tokenizer

NAME = "llama4-vision"
VERSION = "tiny-llama4-vision-1"  # bump when the architecture, tokenizer files or layout change
MARKER = ".tiny-version"
FAMILY = "llama4"
VISION_HIDDEN = 16


def tiny_text_config() -> dict[str, Any]:
    tok = get_tokenizer(family=FAMILY)
    return {
        "vocab_size": tok.vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,  # each expert's
        "intermediate_size_mlp": 128,  # the dense layers'
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "num_local_experts": 2,
        "num_experts_per_tok": 1,
        "moe_layers": [1],
        "no_rope_layers": [0, 1],  # Llama 4's list marks the RoPE layers with 1: layer 0 NoPE, layer 1 RoPE
        "max_position_embeddings": 16384,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "llama3", "rope_theta": 500_000.0, "factor": 16.0, "low_freq_factor": 1.0,
                            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        "use_qk_norm": True,
        "attention_chunk_size": 8192,
        "attn_temperature_tuning": True,
        "tie_word_embeddings": False,
        "bos_token_id": tok.bos_id,
        "eos_token_id": list(tok.stop_ids),
        "pad_token_id": tok.special_id("<|finetune_right_pad|>"),
    }


def tiny_vision_config() -> dict[str, Any]:
    """Llama 4's vision settings (336 / 14 / 0.5) at tiny hidden sizes."""
    return {
        "hidden_size": VISION_HIDDEN,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": VISION_HIDDEN * 4,  # the pixel-shuffled width: 2x2 patches per feature
        "image_size": LLAMA4_VISION.tile_size,
        "patch_size": LLAMA4_VISION.patch_size,
        "pixel_shuffle_ratio": LLAMA4_VISION.pixel_shuffle_ratio,
        "projector_input_dim": VISION_HIDDEN,
        "projector_output_dim": VISION_HIDDEN,
        "vision_output_dim": VISION_HIDDEN,
        "norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
    }


def build_tiny_llama4_vision(path: Path, *, seed: int = 0) -> Path:
    """Build the checkpoint at `path` unless this version is there (atomically, as model.tiny's); return `path`."""
    with quiet_hf_progress():
        return versioned_dir.build_once(Path(path), lambda tmp: _write(tmp, seed=seed), marker=MARKER,
                                        version=VERSION)


def _write(directory: Path, *, seed: int) -> None:
    import torch
    from transformers import GenerationConfig, Llama4Config, Llama4ForConditionalGeneration

    tok = get_tokenizer(family=FAMILY)
    config = Llama4Config(
        text_config=tiny_text_config(), vision_config=tiny_vision_config(),
        boi_token_index=tok.special_id("<|image_start|>"), eoi_token_index=tok.special_id("<|image_end|>"),
        image_token_index=tok.special_id("<|patch|>"), tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    with constructing():  # no other model built in another thread meanwhile (construction.py)
        model = Llama4ForConditionalGeneration(config)
    with warnings.catch_warnings():  # the vision rotary table is a complex buffer, not saved, rebuilt on load
        warnings.filterwarnings("ignore", "Casting complex values to real")
        model = model.to(torch.bfloat16).eval()
    model.save_pretrained(str(directory), safe_serialization=True)
    GenerationConfig(bos_token_id=tok.bos_id, eos_token_id=list(tok.stop_ids),
                     pad_token_id=tok.special_id("<|finetune_right_pad|>"), do_sample=False,
                     max_new_tokens=64).save_pretrained(str(directory))
    save_hf_tokenizer(directory, family=FAMILY)
    (directory / "original").mkdir()
    shutil.copyfile(default_tokenizer_model(FAMILY), directory / "original" / "tokenizer.model")
    (directory / "README.md").write_text(
        f"# Tiny random Llama 4 with a vision tower ({VERSION})\n\n**Random weights, smoke tests only.** See "
        "model/tiny_llama4.py (guarded-assistant).\n", encoding="utf-8")
    (directory / "tiny.json").write_text(json.dumps({"version": VERSION, "seed": seed}, indent=2) + "\n",
                                         encoding="utf-8")
