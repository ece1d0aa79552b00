"""Llama 4 image preprocessing (model/image_tiles.py) against Meta's code (tests/model/image_oracle.py says what
stands in for torchvision) and against Meta's documented layout."""

from __future__ import annotations

import itertools
import random
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from model.image_tiles import (
    IMAGE_TOKENS,
    LLAMA4_VISION,
    ImageTiles,
    VisionSpec,
    image_grid,
    image_tiles,
    image_token_strings,
    supported_canvases,
)
from model.images import decode_rgb

sys.path.insert(0, str(Path(__file__).parent))
from image_oracle import meta_transform, meta_vision_format, noise_image

SIZES = sorted({(w, h) for w, h in itertools.product((1, 2, 13, 100, 335, 336, 337, 500, 671, 672, 673, 1000, 1344,
                                                      2000, 4032, 6000), repeat=2)}
               | {(random.Random(i).randrange(1, 9000), random.Random(-i).randrange(1, 9000)) for i in range(400)}
               | {(1, 40_000_000), (40_000_000, 1), (16_777_217, 2), (3024, 4032), (1920, 1080), (5376, 5376)})


def meta_grid(width: int, height: int, spec: VisionSpec = LLAMA4_VISION) -> tuple[int, int]:
    transform = meta_transform(spec)
    resolutions = torch.tensor(transform.find_supported_resolutions(spec.max_chunks, spec.tile_size))
    canvas_w, canvas_h = transform.get_best_fit((width, height), resolutions)
    return canvas_h // spec.tile_size, canvas_w // spec.tile_size


def test_canvases_are_meta_list_in_meta_order() -> None:
    for chunks in (1, 4, 5, 16):
        spec = VisionSpec(max_chunks=chunks)
        assert supported_canvases(spec) == meta_transform(spec).find_supported_resolutions(chunks, spec.tile_size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_grid_is_meta_best_fit(size: tuple[int, int]) -> None:
    assert image_grid(*size) == meta_grid(*size)


@pytest.mark.parametrize("spec", [VisionSpec(max_chunks=1), VisionSpec(max_chunks=5), VisionSpec(tile_size=448,
                                                                                                  max_chunks=9)])
def test_grid_follows_the_spec(spec: VisionSpec) -> None:
    for size in SIZES[::7]:
        assert image_grid(*size, spec) == meta_grid(*size, spec)


def test_documented_example() -> None:
    # preprocess.py's docstring: 300x800 with 224 tiles and 8 chunks -> a canvas of 2 x 4 tiles (448 x 896)
    assert image_grid(300, 800, VisionSpec(tile_size=224, patch_size=14, max_chunks=8)) == (4, 2)


def meta_encoded(image: Any, spec: VisionSpec = LLAMA4_VISION) -> tuple[list[str], Any, tuple[int, int]]:
    from llama_models.datatypes import RawMediaItem

    with meta_vision_format(spec) as fmt:
        ids, transformed = fmt._encode_content([RawMediaItem(data=image.data)])
        names = {v: k for k, v in fmt.tokenizer.special_tokens.items()}
        return [names[i] for i in ids], transformed[0].image_tiles, transformed[0].aspect_ratio


@pytest.mark.parametrize("size", [(336, 336), (200, 120), (800, 600), (1000, 300), (90, 1400), (3000, 2000),
                                  (337, 336), (1, 1)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_pixels_and_tokens_equal_meta_pipeline(size: tuple[int, int]) -> None:
    image = noise_image(*size, seed=sum(size))
    ours = image_tiles(image)
    tokens, pixels, aspect = meta_encoded(image)
    assert ours.grid == aspect
    assert ours.pixels.dtype == torch.float32 and ours.pixels.shape == pixels.shape
    assert torch.equal(ours.pixels, pixels)
    assert image_token_strings(ours.grid) == tokens


def test_alpha_and_other_formats_equal_meta() -> None:
    for image in (noise_image(500, 400, mode="RGBA", name="a.png"), noise_image(640, 480, fmt="JPEG", name="a.jpg"),
                  noise_image(300, 700, fmt="WEBP", name="a.webp")):
        ours = image_tiles(image)
        _, pixels, aspect = meta_encoded(image)
        assert ours.grid == aspect and torch.equal(ours.pixels, pixels)


def test_documented_layout() -> None:
    """Shapes, padding, normalisation and tile order, from Meta's docstrings, without Meta's code."""
    image = noise_image(1000, 300)
    tiles = image_tiles(image)
    assert tiles.grid == (1, 3)  # 1000x300 fits best on a canvas 3 tiles wide and 1 tall
    assert tuple(tiles.pixels.shape) == (4, 3, 336, 336) == (tiles.n_chunks, 3, 336, 336)
    assert float(tiles.pixels.min()) >= -1.0 and float(tiles.pixels.max()) <= 1.0
    # resized without distortion to 1000x300 (no upscaling needed: 1000 <= 1008), padded with black (-1 after
    # normalisation) on the right of the last tile and below the image in every tile
    assert torch.all(tiles.pixels[2, :, :, 1000 - 672:] == -1.0)
    assert torch.all(tiles.pixels[:3, :, 300:, :] == -1.0)
    assert not torch.all(tiles.pixels[2, :, :300, : 1000 - 672] == -1.0)
    # the tiles are the canvas cut left to right; the global tile is the whole image at 336x336, last
    whole = decode_rgb(image)
    assert torch.equal(tiles.pixels[0, :, :300, :], as_tensor(whole.crop((0, 0, 336, 300))).div(255).sub(0.5).div(0.5))
    squeezed = whole.resize((336, 336), Image.Resampling.BILINEAR)
    assert torch.equal(tiles.pixels[3], as_tensor(squeezed).div(255).sub(0.5).div(0.5))


def as_tensor(picture: Any) -> Any:
    width, height = picture.size
    return torch.tensor(list(picture.tobytes()), dtype=torch.float32).view(height, width, 3).permute(2, 0, 1)


def test_one_tile_has_no_global_tile() -> None:
    tiles = image_tiles(noise_image(300, 200))
    assert tiles.grid == (1, 1) and tuple(tiles.pixels.shape) == (1, 3, 336, 336)
    # 300x200 is upscaled to 336x224 (to one tile side, not past it), then padded below
    assert torch.all(tiles.pixels[0, :, 224:, :] == -1.0) and not torch.all(tiles.pixels[0, :, 223, :] == -1.0)


def test_small_image_upscaled_to_one_tile_side() -> None:
    tiles = image_tiles(noise_image(100, 50))  # 100x50 -> 336x168 (Meta limits upscaling to one tile side)
    assert tiles.grid == (1, 1)
    assert not torch.all(tiles.pixels[0, :, 167, :] == -1.0) and torch.all(tiles.pixels[0, :, 168:, :] == -1.0)


def count(tokens: list[str], name: str) -> int:
    return sum(1 for t in tokens if t == name)


@pytest.mark.parametrize("grid", [(1, 1), (1, 2), (2, 1), (2, 3), (4, 4), (1, 16)])
def test_token_layout_equals_meta_encode_image(grid: tuple[int, int]) -> None:
    from llama_models.llama4.chat_format import TransformedImage

    rows, cols = grid
    chunks = 1 if rows * cols == 1 else rows * cols + 1
    with meta_vision_format() as fmt:
        ids = fmt._encode_image(TransformedImage(image_tiles=torch.zeros(chunks, 3, 336, 336), aspect_ratio=grid))
        names = {v: k for k, v in fmt.tokenizer.special_tokens.items()}
    tokens = image_token_strings(grid)
    assert tokens == [names[i] for i in ids]
    assert count(tokens, "<|patch|>") == chunks * LLAMA4_VISION.patches_per_tile == chunks * 144
    assert count(tokens, "<|tile_y_separator|>") == (rows if chunks > 1 else 0)
    assert count(tokens, "<|tile_x_separator|>") == (rows * (cols - 1) if chunks > 1 else 0)
    assert set(tokens) <= set(IMAGE_TOKENS)


def test_spec_from_configs() -> None:
    hf = {"image_size": 336, "patch_size": 14, "pixel_shuffle_ratio": 0.5, "hidden_size": 1408}
    assert VisionSpec.from_config(hf) == LLAMA4_VISION
    meta = {"image_size": {"height": 336, "width": 336}, "patch_size": {"height": 14, "width": 14},
            "pixel_shuffle_ratio": 0.5, "max_num_chunks": 9}
    assert VisionSpec.from_config(meta) == VisionSpec(max_chunks=9)
    assert LLAMA4_VISION.patches_per_tile == 144
    with pytest.raises(ValueError, match="multiple of the patch size"):
        VisionSpec(tile_size=300)
    with pytest.raises(ValueError, match="square"):
        VisionSpec.from_config({"image_size": {"height": 336, "width": 448}})
    with pytest.raises(ValueError, match="no pixels"):
        image_grid(0, 10)
    with pytest.raises(ValueError, match="at most 16 tiles"):
        image_token_strings((5, 4))


def test_tiles_value_type() -> None:
    tiles = image_tiles(noise_image(672, 672))
    assert isinstance(tiles, ImageTiles) and tiles.grid == (2, 2) and tiles.n_chunks == 5
    assert image_grid(700, 700) == (3, 3)  # the smallest upscale: 1008 / 700, not a downscale to 672
