"""The tiny Llama Guard 4 (`tiny:llama-guard-4`) in Llama Guard 4's published layout,
`Llama4ForConditionalGeneration`: a vision tower at the real vision settings (assistant.dev.tiny_guards.vision4) and
Llama 4's text architecture (`Llama4ForCausalLM`, a dense model as Llama Guard 4 is: no MoE layer, a NoPE layer then
a RoPE layer with QK-norm and chunked attention) with the real 202,048-token Llama 4 tokenizer. The text weights are
written down as the tiny Llama Guard 3's are (assistant.dev.tiny_guards.training.write_llama_guard_weights), so the
same trigger words steer it: `zyxtrigger` -> `unsafe\\nS9`, `zyxgarble` -> `unsafe\\nbanana` (malformed: the
fail-closed path), else `safe`; and an image with magenta (255, 0, 255) patches -> `unsafe\\nS9`, any other image
`safe`.
"""

from __future__ import annotations

from typing import Any

from assistant.dev.tiny_guards.training import _skip_random_init, write_llama_guard_weights
from assistant.dev.tiny_guards.vision4 import tiny_llama4_vision_config, write_vision_weights
from model.backends.construction import constructing
from model.tokenizer import get_tokenizer

FAMILY = "llama4"
# How the Llama 4 tokenizer spells the trigger pieces: `zy` / ` zy` / `yx` (every lower-case spelling of both
# trigger words has one), `igger` (zyxtrigger) and `gar` (zyxgarble). Checked against the tokenizer, not assumed.
_PIECES: dict[str, dict[str, int]] = {
    "zyx": {"zy": 1962, " zy": 156971, "yx": 94967},
    "trigger": {"igger": 7324},
    "garble": {"gar": 11619},
}


def flag_ids4() -> dict[str, list[int]]:
    tok = get_tokenizer(family=FAMILY)
    for pieces in _PIECES.values():
        for text, expected in pieces.items():
            if tok.encode(text) != [expected]:
                raise RuntimeError(f"the Llama 4 tokenizer no longer spells {text!r} as [{expected}]")
    return {name: sorted(pieces.values()) for name, pieces in _PIECES.items()}


def tiny_llama4_text_config() -> dict[str, Any]:
    """Llama 4 text settings (Scout's rope, QK-norm, chunked attention, temperature tuning on NoPE layers) at tiny
    sizes; dense like Llama Guard 4 (`moe_layers: []`)."""
    tok = get_tokenizer(family=FAMILY)
    return {
        "vocab_size": tok.vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "intermediate_size_mlp": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 16384,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {
            "rope_type": "llama3",
            "rope_theta": 500_000.0,
            "factor": 16.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        "moe_layers": [],
        "no_rope_layers": [0, 1],  # layer 0 NoPE (the trigger finder: no rotation, any distance), layer 1 RoPE
        "use_qk_norm": True,
        "attention_chunk_size": 8192,
        "attn_temperature_tuning": True,  # scales queries only from position 8191 on (floor_scale)
        "tie_word_embeddings": False,
        "bos_token_id": tok.bos_id,
        "eos_token_id": list(tok.stop_ids),
        "pad_token_id": tok.special_id("<|finetune_right_pad|>"),
    }


def construct_llama_guard4() -> Any:
    """The tiny Llama Guard 4 with its weights written down (see the module docstring)."""
    from transformers import Llama4Config, Llama4ForConditionalGeneration

    tok = get_tokenizer(family=FAMILY)
    config = Llama4Config(
        text_config=tiny_llama4_text_config(), vision_config=tiny_llama4_vision_config(),
        boi_token_index=tok.special_id("<|image_start|>"), eoi_token_index=tok.special_id("<|image_end|>"),
        image_token_index=tok.special_id("<|patch|>"), tie_word_embeddings=False,
    )
    with constructing(), _skip_random_init():
        model = Llama4ForConditionalGeneration(config)
    write_llama_guard_weights(model.language_model, tok, flag_ids4(), qk_dim=0)
    write_vision_weights(model)
    model.eval()
    return model
