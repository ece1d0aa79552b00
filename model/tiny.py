"""Tiny random-weight Llama 3.1 checkpoints for smoke tests: the real architecture and tokenizer, in Hugging Face form.

The weights are random, so the text they produce is noise; what the checkpoints exercise is every real loading,
tokenizing and generation path (from_pretrained, AutoTokenizer, generation_config stop ids, 128,256-token vocab).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from model import versioned_dir
from model.backends.construction import constructing
from model.hf_import import quiet_hf_progress
from model.hf_tokenizer import BOS, STOP_TOKENS, VOCAB_SIZE, default_tokenizer_model, save_hf_tokenizer
from model.tiny_llama4 import NAME as LLAMA4_VISION_NAME
from model.tiny_llama4 import build_tiny_llama4_vision

# Bump when the architecture, tokenizer files or layout change: directories built by another version are rebuilt.
TINY_VERSION = "tiny-llama-1"
MARKER = ".tiny-version"
NOTE = "random weights, smoke tests only"
MAIN_MODEL_NAME = "llama-3.1-instruct"
APP_NAME = "guarded-assistant"
TINY_DIR_ENV = "ASSISTANT_TINY_MODELS"  # overrides where the tiny models are built (see default_tiny_dir)

BOS_ID = 128_000
STOP_IDS = (128_001, 128_008, 128_009)  # <|end_of_text|>, <|eom_id|>, <|eot_id|>
PAD_ID = 128_004

_README = f"""# Tiny random Llama 3.1 ({TINY_VERSION})

**{NOTE.capitalize()}.** A `LlamaForCausalLM` with Llama 3.1's vocabulary (128,256 tokens), rope settings and stop
tokens ({", ".join(STOP_TOKENS)}), but only a few small layers with random weights. It produces noise. It exists so
tests and offline demos run the real loading and generation code without downloading an 8B model.

Built by `assistant dev tiny-models` (guarded-assistant).
"""


def tiny_llama_config(*, vocab_size: int = VOCAB_SIZE) -> dict[str, object]:
    """The config of the tiny main model: Llama 3.1 settings except for the sizes."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 131_072,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {
            "rope_type": "llama3",
            "rope_theta": 500_000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        "tie_word_embeddings": False,
        "bos_token_id": BOS_ID,
        "eos_token_id": list(STOP_IDS),
        "pad_token_id": PAD_ID,
        "tiny_note": NOTE,
    }


def is_built(path: Path) -> bool:
    """True when `path` holds a complete checkpoint of the current tiny version."""
    return versioned_dir.is_built(path, marker=MARKER, version=TINY_VERSION)


def build_tiny_llama(path: Path, *, seed: int = 0) -> Path:
    """Build the tiny checkpoint at `path` unless the current version is already there; return `path`.

    The checkpoint is written into a temporary sibling directory and renamed into place, so concurrent builders (test
    processes) never see half-written files: the first rename wins and the others discard their copies.
    """
    path = Path(path)
    if is_built(path):
        return path

    with quiet_hf_progress():
        return versioned_dir.build_once(
            path, lambda tmp: _write_checkpoint(tmp, seed=seed), marker=MARKER, version=TINY_VERSION
        )


def _write_checkpoint(directory: Path, *, seed: int) -> None:
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(**tiny_llama_config())
    with constructing():  # no guard model built in another thread meanwhile (construction.py)
        model = LlamaForCausalLM(config)
    model = model.to(torch.bfloat16)
    model.eval()
    model.save_pretrained(str(directory), safe_serialization=True)
    GenerationConfig(
        bos_token_id=BOS_ID,
        eos_token_id=list(STOP_IDS),
        pad_token_id=PAD_ID,
        do_sample=False,
        max_new_tokens=64,
    ).save_pretrained(str(directory))
    save_hf_tokenizer(directory)
    # Meta's repositories ship the tiktoken ranks under original/; `model.tokenizer.get_tokenizer(dir)` reads them.
    (directory / "original").mkdir()
    shutil.copyfile(default_tokenizer_model(), directory / "original" / "tokenizer.model")
    (directory / "README.md").write_text(_README, encoding="utf-8")
    (directory / "tiny.json").write_text(
        json.dumps({"version": TINY_VERSION, "note": NOTE, "seed": seed, "bos": BOS}, indent=2) + "\n",
        encoding="utf-8",
    )


def default_tiny_dir() -> Path:
    """The one build cache of the tiny models (tests, `make chat`, `assistant dev tiny-models` all use it):

    1. `$ASSISTANT_TINY_MODELS` when set;
    2. else, when the package runs from a source checkout (a clone, an editable install), its `.cache/tiny-models`,
       the folder the test suite builds into, so the chat after `make test` builds nothing again;
    3. else the user cache folder (platformdirs), e.g. `~/.cache/guarded-assistant/tiny-models`.
    """
    value = os.environ.get(TINY_DIR_ENV)
    if value:
        return Path(value).expanduser()
    checkout = Path(__file__).resolve().parents[1]
    try:
        is_checkout = 'name = "guarded-assistant"' in (checkout / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        is_checkout = False
    if is_checkout:
        return checkout / ".cache" / "tiny-models"
    import platformdirs

    return Path(platformdirs.user_cache_dir(APP_NAME)) / "tiny-models"


def ensure_tiny_main(directory: Path | None = None) -> Path:
    """The tiny main model's directory under `directory` (default: `default_tiny_dir()`), built on first use."""
    return build_tiny_llama(Path(directory or default_tiny_dir()) / MAIN_MODEL_NAME)


def ensure_tiny_llama4_vision(directory: Path | None = None) -> Path:
    """The tiny Llama 4 main model with its vision tower (`model.tiny_llama4`), built on first use."""
    return build_tiny_llama4_vision(Path(directory or default_tiny_dir()) / LLAMA4_VISION_NAME)


def ensure_tiny_model(name: str, directory: Path | None = None) -> Path:
    """`tiny:NAME` at the model layer: a main model (built on first use) or an already-built tiny model of another
    kind (guards are built by the layer above: `assistant dev tiny-models`). ValueError names the problem."""
    if name == MAIN_MODEL_NAME:
        return ensure_tiny_main(directory)
    if name == LLAMA4_VISION_NAME:
        return ensure_tiny_llama4_vision(directory)
    path = Path(directory or default_tiny_dir()) / name
    if name and "/" not in name and (path / "config.json").is_file():
        return path
    raise ValueError(
        f"unknown tiny model {name!r} for a main model; available: {MAIN_MODEL_NAME}, {LLAMA4_VISION_NAME} "
        "(tiny guard models: llama-guard, prompt-guard, prompt-guard-2, built by `assistant dev tiny-models`)"
    )
