"""Images for the local backend: which checkpoints see them, where each image sits in a prompt, and how much of a
cached prefix can be reused when the prompt carries images.

A Llama 4 checkpoint with its vision tower (`Llama4ForConditionalGeneration`, config `model_type: llama4` with a
`vision_config`) takes `pixel_values` on a forward pass and puts the vision features, in order, at the prompt's
`<|patch|>` positions. So the prompt's `<|patch|>` tokens must be exactly the images' (tiles x 144 each, in the
order of `GenerationParams.images`); anything else is an error, never a guess. The KV cache of an earlier call is
reused only up to the first image that is not the same image at the same place, wholly inside the reused prefix:
the same ids with another image's pixels would otherwise answer about the wrong picture.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.backends.errors import BackendError
from model.image_tiles import VisionSpec, image_grid, image_tiles
from model.images import ImageData

VISION_MODEL_TYPE = "llama4"  # Llama4ForConditionalGeneration; `llama4_text` is a text-only checkpoint


@dataclass(frozen=True)
class VisionInfo:
    """What the backend needs of a loaded model's vision side."""

    spec: VisionSpec
    image_token_id: int  # `<|patch|>`: the positions the features replace


@dataclass(frozen=True)
class ImageBlock:
    """One image's `<|patch|>` tokens in a prompt: positions [start, end) hold all of them (and separators)."""

    image: ImageData
    start: int
    end: int
    chunks: int


def config_has_vision(config: Any) -> bool:
    """Whether a checkpoint's config.json (as a dict) describes a Llama 4 model with its vision tower."""
    return isinstance(config, dict) and config.get("model_type") == VISION_MODEL_TYPE and isinstance(
        config.get("vision_config"), dict)


def directory_has_vision(directory: Path) -> bool:
    """`config_has_vision` of a local checkpoint directory; False when its config cannot be read."""
    try:
        return config_has_vision(json.loads((Path(directory) / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return False


def vision_info(model: Any) -> VisionInfo | None:
    """The vision side of a loaded transformers model; None for a text-only model."""
    config = model.config
    if getattr(model, "vision_model", None) is None or getattr(config, "vision_config", None) is None:
        return None
    return VisionInfo(spec=VisionSpec.from_config(config.vision_config.to_dict()),
                      image_token_id=int(config.image_token_id))


def image_blocks(prompt_ids: Sequence[int], images: Sequence[ImageData], info: VisionInfo) -> list[ImageBlock]:
    """Where each image's features go; BackendError when the `<|patch|>` count is not exactly the images'."""
    positions = [i for i, token in enumerate(prompt_ids) if token == info.image_token_id]
    chunks = [_chunks(image, info.spec) for image in images]
    expected = sum(chunks) * info.spec.patches_per_tile
    if len(positions) != expected:
        names = ", ".join(image.name for image in images) or "no images"
        raise BackendError(f"the prompt has {len(positions)} <|patch|> tokens but its images ({names}) need "
                           f"{expected}: the images must be the prompt's, in prompt order")
    blocks: list[ImageBlock] = []
    offset = 0
    for image, count in zip(images, chunks, strict=True):
        patches = count * info.spec.patches_per_tile
        blocks.append(ImageBlock(image, positions[offset], positions[offset + patches - 1] + 1, count))
        offset += patches
    return blocks


def _chunks(image: ImageData, spec: VisionSpec) -> int:
    rows, cols = image_grid(image.width, image.height, spec)
    return 1 if rows * cols == 1 else rows * cols + 1


def reusable_prefix(common: int, blocks: Sequence[ImageBlock], cached_images: Sequence[str]) -> int:
    """How much of a `common` id prefix the cache may serve: it stops before the first image that is not the cached
    image at the same place (by sha256) and wholly inside the prefix."""
    for index, block in enumerate(blocks):
        if block.start >= common:
            break
        same = index < len(cached_images) and cached_images[index] == block.image.sha256
        if not same or block.end > common:
            return block.start
    return common


def pixel_values(blocks: Sequence[ImageBlock], spec: VisionSpec) -> Any:
    """The tiles of these images, one tensor [sum of chunks, 3, tile, tile] in prompt order; None for none."""
    if not blocks:
        return None
    import torch

    return torch.cat([image_tiles(block.image, spec).pixels for block in blocks], dim=0)
