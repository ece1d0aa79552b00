"""Llama 4's image preprocessing, our own (PIL and torch: torchvision cannot be installed here), after
`llama_models.llama4.preprocess.VariableSizeImageTransform` and `chat_format.ChatFormat._encode_image`.

An image becomes tiles of `tile_size` x `tile_size` pixels:
1. the canvas: of every grid of at most `max_chunks` tiles, the one the image fits best without distortion
   (`image_grid`: the smallest upscale if any canvas needs no downscaling, else the least downscaling; among equal
   scales the smallest area, first in Meta's order);
2. the image resized into it keeping its aspect ratio (bilinear, as PIL resizes; never upscaled past one tile side),
   padded with black on the right and at the bottom;
3. values scaled to [0, 1] and normalised with mean 0.5 and std 0.5 (so to [-1, 1]);
4. cut into tiles row by row; when there is more than one, a global tile (the whole image squeezed to one tile) last.

In the prompt each tile is `patches_per_tile` `<|patch|>` tokens ((336 / 14)^2 patches, pixel-shuffled by 0.5 in
each direction: 144), laid out as `image_token_strings` says. torchvision resizes a PIL image with PIL itself, so
steps 2-4 are the same operations Meta's code runs; that could not be checked against Meta's code here, only
against its documented layout (tests/model/test_image_tiles.py).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from model.images import ImageData, decode_rgb

IMAGE_START = "<|image_start|>"
IMAGE_END = "<|image_end|>"
IMAGE = "<|image|>"  # opens the global tile (or the only tile)
PATCH = "<|patch|>"  # one per vision feature: the model puts the image's features at these positions
TILE_X_SEPARATOR = "<|tile_x_separator|>"
TILE_Y_SEPARATOR = "<|tile_y_separator|>"
IMAGE_TOKENS: tuple[str, ...] = (IMAGE_START, IMAGE_END, IMAGE, PATCH, TILE_X_SEPARATOR, TILE_Y_SEPARATOR)


@dataclass(frozen=True)
class VisionSpec:
    """Llama 4's vision settings; the defaults are the real ones (Scout, Maverick, Llama Guard 4)."""

    tile_size: int = 336  # vision_config.image_size
    patch_size: int = 14
    pixel_shuffle_ratio: float = 0.5
    max_chunks: int = 16  # max_num_chunks (Meta) / max_patches (Hugging Face's preprocessor)

    def __post_init__(self) -> None:
        if self.tile_size < 1 or self.patch_size < 1 or self.tile_size % self.patch_size:
            raise ValueError(f"tile size {self.tile_size} must be a positive multiple of the patch size "
                             f"{self.patch_size}")
        if not 0 < self.pixel_shuffle_ratio <= 1:
            raise ValueError(f"pixel_shuffle_ratio must be in (0, 1], got {self.pixel_shuffle_ratio}")
        if self.max_chunks < 1:
            raise ValueError(f"max_chunks must be >= 1, got {self.max_chunks}")
        if self.patches_per_tile < 1:
            raise ValueError("these vision settings leave no patch token per tile")

    @classmethod
    def from_config(cls, vision_config: Mapping[str, Any]) -> VisionSpec:
        """From a checkpoint's `vision_config` (Hugging Face) or Meta's `vision_args` (sizes as {height, width})."""
        def side(key: str, default: int) -> int:
            value = vision_config.get(key, default)
            if isinstance(value, Mapping):
                if value.get("height") != value.get("width"):
                    raise ValueError(f"vision {key} must be square, got {dict(value)}")
                value = value["width"]
            return int(value)

        chunks = next((vision_config[k] for k in ("max_num_chunks", "max_patches", "max_num_tiles")
                       if vision_config.get(k) is not None), cls.max_chunks)
        return cls(tile_size=side("image_size", cls.tile_size), patch_size=side("patch_size", cls.patch_size),
                   pixel_shuffle_ratio=float(vision_config.get("pixel_shuffle_ratio", cls.pixel_shuffle_ratio)),
                   max_chunks=int(chunks))

    @property
    def patches_per_tile(self) -> int:
        """`<|patch|>` tokens per tile: Meta's `n_patches_per_chunk`."""
        downsample = round(1.0 / (self.pixel_shuffle_ratio**2))
        return (self.tile_size // self.patch_size) ** 2 // downsample


LLAMA4_VISION = VisionSpec()


@dataclass(frozen=True)
class ImageTiles:
    """One image ready for the vision tower."""

    pixels: Any  # torch.float32 [n_chunks, 3, tile, tile], normalised; with more than one local tile the global last
    grid: tuple[int, int]  # (rows, cols) of the local tiles

    @property
    def n_chunks(self) -> int:
        rows, cols = self.grid
        return 1 if rows * cols == 1 else rows * cols + 1


def _f32(value: float) -> float:
    """`value` rounded to float32. Meta compares its scales as float32 tensors; a float32 quotient of two float32
    numbers equals the double quotient rounded to float32 (double has more than twice float32's precision)."""
    return float(struct.unpack("f", struct.pack("f", value))[0])


def _factors(n: int) -> list[int]:
    return sorted({d for i in range(1, int(n**0.5) + 1) if n % i == 0 for d in (i, n // i)})


def supported_canvases(spec: VisionSpec = LLAMA4_VISION) -> list[tuple[int, int]]:
    """Every canvas (width, height) of at most `max_chunks` tiles, in the order Meta's `find_supported_resolutions`
    lists them (grouped by aspect ratio in first-seen order): the order breaks ties in `image_grid`."""
    by_ratio: dict[float, list[tuple[int, int]]] = {}
    for chunks in range(spec.max_chunks, 0, -1):
        for first in _factors(chunks):
            by_ratio.setdefault(first / (chunks // first), []).append((first, chunks // first))
    return [(a * spec.tile_size, b * spec.tile_size) for pairs in by_ratio.values() for a, b in pairs]


def image_grid(width: int, height: int, spec: VisionSpec = LLAMA4_VISION) -> tuple[int, int]:
    """(rows, cols) of tiles for an image of this size: Meta's `get_best_fit` (without `resize_to_max_canvas`)."""
    if width < 1 or height < 1:
        raise ValueError(f"an image of {width}x{height} has no pixels")
    canvases = supported_canvases(spec)
    w32, h32 = _f32(width), _f32(height)
    scales = [min(_f32(cw / w32), _f32(ch / h32)) for cw, ch in canvases]
    upscales = [s for s in scales if s >= 1]
    chosen = min(upscales) if upscales else max(s for s in scales if s < 1)
    candidates = [c for c, s in zip(canvases, scales, strict=True) if s == chosen]
    canvas_w, canvas_h = min(candidates, key=lambda c: c[0] * c[1])  # min keeps the first of equal areas
    return canvas_h // spec.tile_size, canvas_w // spec.tile_size


def resized_size(width: int, height: int, grid: tuple[int, int], spec: VisionSpec = LLAMA4_VISION) -> tuple[int, int]:
    """(width, height) of the image inside its canvas: Meta's `resize_without_distortion` with upscaling limited to
    one tile side (`get_max_res_without_distortion` of the limited target)."""
    rows, cols = grid
    target_w = min(max(width, spec.tile_size), cols * spec.tile_size)
    target_h = min(max(height, spec.tile_size), rows * spec.tile_size)
    scale_w, scale_h = target_w / width, target_h / height
    if scale_w < scale_h:
        new_w, new_h = target_w, min(math.floor(height * scale_w), target_h)
    else:
        new_w, new_h = min(math.floor(width * scale_h), target_w), target_h
    return max(new_w, 1), max(new_h, 1)


def _normalised(picture: Any) -> Any:
    """A PIL RGB image as torchvision's ToTensor + Normalize(0.5, 0.5) make it: float32 [3, H, W] in [-1, 1]."""
    import torch

    width, height = picture.size
    raw = torch.frombuffer(bytearray(picture.tobytes()), dtype=torch.uint8)
    tensor = raw.view(height, width, 3).permute(2, 0, 1).contiguous().to(torch.float32).div(255)
    return tensor.sub_(0.5).div_(0.5)


def split_tiles(pixels: Any, grid: tuple[int, int]) -> Any:
    """[3, rows*T, cols*T] -> [rows*cols, 3, T, T], row by row (Meta's `_split`)."""
    rows, cols = grid
    channels, height, width = pixels.shape
    tiles = pixels.view(channels, rows, height // rows, cols, width // cols).permute(1, 3, 0, 2, 4).contiguous()
    return tiles.view(rows * cols, channels, height // rows, width // cols)


def image_tiles(image: ImageData, spec: VisionSpec = LLAMA4_VISION) -> ImageTiles:
    """The image's tiles for the vision tower (see the module docstring)."""
    import torch
    from PIL import Image

    picture = decode_rgb(image)
    width, height = picture.size
    grid = image_grid(width, height, spec)
    rows, cols = grid
    resized = picture.resize(resized_size(width, height, grid, spec), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", (cols * spec.tile_size, rows * spec.tile_size), (0, 0, 0))
    canvas.paste(resized)
    tiles = split_tiles(_normalised(canvas), grid)
    if rows * cols > 1:
        whole = picture.resize((spec.tile_size, spec.tile_size), Image.Resampling.BILINEAR)
        tiles = torch.cat([tiles, _normalised(whole).unsqueeze(0)], dim=0)
    return ImageTiles(pixels=tiles, grid=grid)


def image_token_strings(grid: tuple[int, int], spec: VisionSpec = LLAMA4_VISION) -> list[str]:
    """The image's special tokens in the prompt, as Meta's `_encode_image` lays them out:
    one tile: `<|image_start|><|image|>` + patches + `<|image_end|>`;
    more: each row's tiles' patches separated by `<|tile_x_separator|>`, each row ended by `<|tile_y_separator|>`,
    then `<|image|>` + the global tile's patches + `<|image_end|>`."""
    rows, cols = grid
    if rows < 1 or cols < 1 or rows * cols > spec.max_chunks:
        raise ValueError(f"a {rows}x{cols} tile grid is not one these vision settings make (at most "
                         f"{spec.max_chunks} tiles)")
    patches = [PATCH] * spec.patches_per_tile
    tokens = [IMAGE_START]
    if rows * cols > 1:
        for _ in range(rows):
            for col in range(cols):
                tokens += patches
                if col < cols - 1:
                    tokens.append(TILE_X_SEPARATOR)
            tokens.append(TILE_Y_SEPARATOR)
    tokens += [IMAGE, *patches, IMAGE_END]
    return tokens
