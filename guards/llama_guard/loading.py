"""Loading a Llama Guard checkpoint: Llama Guard 3 (and any text-only causal LM) through AutoModelForCausalLM; a
checkpoint in Llama Guard 4's published layout with a vision tower (`Llama4ForConditionalGeneration`) whole, so that
it can judge images (guards.llama_guard.vision); its text checks run through its `language_model`, the same weights
a text-only load gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from guards.errors import GuardModelNotFoundError
from guards.llama_guard.vision import checkpoint_sees_images
from guards.sources import resolve_device
from model.backends.construction import from_pretrained
from model.hf_import import quiet_hf_progress, transformers_names


def load_causal_lm(path: str, *, device: str = "cpu", dtype: str = "auto") -> Any:
    """The model at `path` (a folder or a hub id), in eval mode on `device`; errors say what, why and how to fix."""
    import torch

    local = Path(path).expanduser()
    looks_local = local.is_absolute() or path.startswith(".") or local.exists()
    if looks_local and not (local / "config.json").is_file():
        raise GuardModelNotFoundError(
            f"Llama Guard model not found at {local}: no config.json there. Point models.llama_guard.source at a "
            "Hugging Face checkpoint directory, a hub id (meta-llama/Llama-Guard-3-8B), or tiny:llama-guard."
        )
    torch_dtype: Any = "auto" if dtype == "auto" else getattr(torch, dtype, None)
    if torch_dtype is None:
        raise GuardModelNotFoundError(f"unknown dtype {dtype!r} for the Llama Guard model (auto, float32, bfloat16)")
    source = str(local if looks_local else path)
    kind = "AutoModelForImageTextToText" if checkpoint_sees_images(source) else "AutoModelForCausalLM"
    (auto_class,) = transformers_names(kind)
    try:
        with quiet_hf_progress():
            model = from_pretrained(auto_class, source, dtype=torch_dtype)
    except Exception as exc:  # transformers raises OSError, ValueError, HTTP errors ...: all mean "not loadable"
        raise GuardModelNotFoundError(
            f"could not load the Llama Guard model {path!r}: {exc}. For a hub id, download it first (the Llama "
            "Guard 3 repositories are gated: accept the license, then `hf download meta-llama/Llama-Guard-3-8B`) "
            "or use a local directory."
        ) from exc
    model.to(resolve_device(device))
    model.eval()
    return model
