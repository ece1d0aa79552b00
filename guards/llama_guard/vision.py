"""Llama Guard 4 judging an image with its message: the checkpoint's vision tower, the image's place in the prompt and
the forward pass that merges the image's features into it.

Llama Guard 4 is published as a `Llama4ForConditionalGeneration` (a vision tower, a projector and the text model).
An image check renders the prompt as Meta's reference places a vision shield's image: llama-stack's Llama Guard
shield (`LlamaGuardShield.build_vision_shield_input`, llama_stack/providers/inline/safety/llama_guard/llama_guard.py)
sends one user message whose content is the image, then the guard prompt's text, and
`llama_models.llama4.chat_format` encodes that as the image's special tokens (`_encode_image`: `<|image_start|>`,
`<|patch|>` x 144 per tile, tile separators, `<|image|>` before the global tile, `<|image_end|>`) right after the
user header, before `Task: ...`. The shield judges one image (the most recent) per check; so do we, one check per
image, each with the whole conversation (the runner keeps the most severe).

The image is preprocessed by model.image_tiles (Llama 4's tiling, our own code), its tiles run through the vision
tower and the projector (`get_image_features`), and the features replace the `<|patch|>` embeddings in order (as
`Llama4ForConditionalGeneration.forward` does with `masked_scatter`); the text model then scores the prompt as for
text. The head of an image prompt differs from the text head (the image comes first), so image checks use no
prefix cache. Only special tokens of the layout are special ids: every text is still encoded as plain text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guards.errors import GuardError
from model.image_tiles import ImageTiles, VisionSpec, image_tiles, image_token_strings
from model.images import ImageData

VISION_MODEL_TYPE = "llama4"  # Llama4ForConditionalGeneration: Llama Guard 4's layout


@dataclass(frozen=True)
class VisionTower:
    """The image side of a loaded Llama Guard 4: the full model (its `vision_model` and `multi_modal_projector`
    run here), its vision settings and the id its features replace."""

    model: Any
    spec: VisionSpec
    image_token_id: int


@dataclass(frozen=True)
class PreparedImage:
    """An image ready to be judged: its tiles and its special tokens in the prompt."""

    image: ImageData
    tiles: ImageTiles
    layout: tuple[str, ...]


def config_sees_images(config: dict[str, Any]) -> bool:
    """Whether a checkpoint's config.json describes Llama Guard 4's layout with a vision tower."""
    return config.get("model_type") == VISION_MODEL_TYPE and isinstance(config.get("vision_config"), dict)


def checkpoint_sees_images(path: str) -> bool:
    """Whether the checkpoint at `path` (a folder, or a hub id whose config is cached or reachable) has a vision
    tower, read from its config alone (no weights loaded). A config that cannot be read sees nothing."""
    local = Path(path).expanduser()
    if local.is_dir():
        try:
            config = json.loads((local / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(config, dict) and config_sees_images(config)
    try:
        from transformers import AutoConfig

        return config_sees_images(AutoConfig.from_pretrained(path).to_dict())
    except Exception:  # offline, gated, not a model: transformers raises many kinds; the load will say which
        return False


def split_vision(model: Any) -> tuple[Any, VisionTower | None]:
    """(the causal LM that scores text, the vision tower or None): a `Llama4ForConditionalGeneration` is scored
    through its `language_model` (text checks exactly as a text-only checkpoint's), its vision tower kept aside."""
    if not (hasattr(model, "vision_model") and hasattr(model, "language_model")):
        return model, None
    config = model.config
    spec = VisionSpec.from_config(config.vision_config.to_dict())
    return model.language_model, VisionTower(model=model, spec=spec, image_token_id=int(config.image_token_id))


def prepare_image(image: ImageData, spec: VisionSpec) -> PreparedImage:
    tiles = image_tiles(image, spec)
    return PreparedImage(image=image, tiles=tiles, layout=tuple(image_token_strings(tiles.grid, spec)))


def image_forward(text_model: Any, tower: VisionTower, ids: list[int], pixels: Any, cache_kw: str) -> tuple[Any, Any]:
    """One prefill of `ids` with the image's features at its `<|patch|>` positions: (last position's logits, cache).
    Run under torch.inference_mode by the caller."""
    import torch

    device = next(text_model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    vision_dtype = next(tower.model.vision_model.parameters()).dtype
    features = tower.model.get_image_features(pixel_values=pixels.to(device=device, dtype=vision_dtype),
                                              return_dict=True).pooler_output
    embeds = text_model.get_input_embeddings()(input_ids)
    flat = features.reshape(-1, features.size(-1)).to(embeds.dtype)
    mask = input_ids == tower.image_token_id
    if int(mask.sum()) != flat.shape[0]:
        raise GuardError(f"the image gives {flat.shape[0]} vision features for {int(mask.sum())} <|patch|> tokens")
    embeds = embeds.masked_scatter(mask.unsqueeze(-1), flat)
    out = text_model(inputs_embeds=embeds, use_cache=True, logits_to_keep=1)
    return out.logits[0, -1], getattr(out, cache_kw)
