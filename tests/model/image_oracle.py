"""Meta's Llama 4 image code (`llama_models.llama4.preprocess` and `chat_format`) run here, with a torchvision
stand-in.

torchvision cannot be installed here (no build works with the project's CPU torch). Meta's preprocessing calls only
four torchvision pieces, each on a PIL image or on the tensor made from one: `Resize` / `functional.resize` (which
for a PIL image is PIL's own `resize` with the same filter), `ToTensor` (uint8 HWC -> float32 CHW / 255) and
`Normalize` (in place, `sub_(mean).div_(std)`). The stand-in below implements those four as torchvision documents
them for PIL input. Everything else - the canvas choice, the resize target, the padding, the split order, the global
tile, the token layout - is Meta's code as installed. So these oracles check our pipeline against Meta's, with the
torchvision primitives taken on trust (said in docs/AGENT.md).
"""

from __future__ import annotations

import io
import random
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from PIL import Image
from prompt_oracles_pythonic import meta_chat_format_llama4

from model.image_tiles import LLAMA4_VISION, VisionSpec
from model.images import ImageData, ImageLimits, read_image


def _to_tensor(picture: Image.Image) -> Any:
    width, height = picture.size
    raw = torch.frombuffer(bytearray(picture.tobytes()), dtype=torch.uint8).view(height, width, len(picture.getbands()))
    return raw.permute(2, 0, 1).contiguous().to(torch.float32).div(255)


class _Normalize:
    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], inplace: bool = False) -> None:
        self.mean, self.std = mean, std

    def __call__(self, tensor: Any) -> Any:
        mean = torch.tensor(self.mean, dtype=tensor.dtype)[:, None, None]
        std = torch.tensor(self.std, dtype=tensor.dtype)[:, None, None]
        return tensor.sub_(mean).div_(std)


def _resize(picture: Image.Image, size: tuple[int, int], interpolation: Any = None) -> Image.Image:
    height, width = size  # torchvision takes (height, width)
    return picture.resize((width, height), Image.Resampling.BILINEAR)


class _Resize:
    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size

    def __call__(self, picture: Image.Image) -> Image.Image:
        return _resize(picture, self.size)


class _Compose:
    def __init__(self, steps: list[Any]) -> None:
        self.steps = steps

    def __call__(self, value: Any) -> Any:
        for step in self.steps:
            value = step(value)
        return value


def _stand_in() -> tuple[types.SimpleNamespace, types.SimpleNamespace]:
    tv = types.SimpleNamespace(ToTensor=lambda: _to_tensor, Normalize=_Normalize, Resize=_Resize, Compose=_Compose,
                               InterpolationMode=types.SimpleNamespace(BILINEAR="bilinear"))
    return tv, types.SimpleNamespace(resize=_resize)


def meta_preprocess() -> Any:
    """`llama_models.llama4.preprocess` (imported through the text oracle's stand-in)."""
    meta_chat_format_llama4()
    from llama_models.llama4 import preprocess

    return preprocess


def meta_transform(spec: VisionSpec = LLAMA4_VISION) -> Any:
    """A `VariableSizeImageTransform` without its torchvision members: for its pure methods."""
    transform = object.__new__(meta_preprocess().VariableSizeImageTransform)
    transform.size = spec.tile_size
    return transform


@contextmanager
def meta_vision_format(spec: VisionSpec = LLAMA4_VISION) -> Iterator[Any]:
    """Meta's vision-enabled `ChatFormat` with the real tokenizer, torchvision replaced by the stand-in while open."""
    preprocess = meta_preprocess()
    from llama_models.llama4.args import Size, VisionArgs
    from llama_models.llama4.chat_format import ChatFormat

    saved = preprocess.tv, preprocess.F
    preprocess.tv, preprocess.F = _stand_in()
    try:
        args = VisionArgs(image_size=Size(height=spec.tile_size, width=spec.tile_size),
                          patch_size=Size(height=spec.patch_size, width=spec.patch_size), dim=8, n_layers=1, n_heads=1,
                          mlp_ratio=1.0, output_dim=8, pixel_shuffle_ratio=spec.pixel_shuffle_ratio)
        yield ChatFormat(meta_chat_format_llama4().tokenizer, args, max_num_chunks=spec.max_chunks)
    finally:
        preprocess.tv, preprocess.F = saved


def noise_image(width: int, height: int, *, seed: int = 0, fmt: str = "PNG", mode: str = "RGB",
                name: str = "noise.png") -> ImageData:
    """A checked image of random pixels (every pixel differs, so any misplaced tile shows)."""
    rng = random.Random(seed)
    bands = len(mode)
    picture = Image.frombytes(mode, (width, height), rng.randbytes(width * height * bands))
    buffer = io.BytesIO()
    picture.save(buffer, format=fmt)
    return read_image(buffer.getvalue(), name=name, limits=ImageLimits(max_bytes=64 << 20))
