"""What an image costs the main model: Llama 4's preprocessing (model.image_tiles) per image size, and the tiny Llama 4
with its vision tower (`tiny:llama4-vision`) answering a prompt with one image, against the same prompt's text alone.

    python bench/vision_main.py [--repeat 5] [--json]

Preprocessing is decode + resize + pad + normalise + split (+ the global tile), on photo-like noise (PNG). The model
figures are the tiny model's (random weights, CPU, float32): they show the pipeline's overhead (tiles through the
vision tower, features merged at the `<|patch|>` positions, a prefill of ~1,000 more tokens), not a real model's.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import random
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from PIL import Image

from model.backends.base import GenerationParams
from model.backends.transformers_backend import TransformersBackend
from model.image_tiles import image_tiles
from model.images import ImageData, ImageLimits, read_image
from model.messages import Message
from model.prompt_format import dialog_images, encode_dialog
from model.tiny import ensure_tiny_llama4_vision
from model.tokenizer import get_tokenizer

SIZES = ((320, 240), (800, 600), (1920, 1080), (4032, 3024))


def photo(width: int, height: int) -> ImageData:
    rng = random.Random(width * height)
    small = Image.frombytes("RGB", (max(width // 8, 1), max(height // 8, 1)),
                            rng.randbytes(max(width // 8, 1) * max(height // 8, 1) * 3))
    buffer = io.BytesIO()
    small.resize((width, height), Image.Resampling.BILINEAR).save(buffer, "PNG")
    return read_image(buffer.getvalue(), name=f"{width}x{height}.png", limits=ImageLimits(max_bytes=64 << 20))


def best_ms(run: Any, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def preprocessing(repeat: int) -> dict[str, Any]:
    rows = {}
    for width, height in SIZES:
        image = photo(width, height)
        tiles = image_tiles(image)
        rows[f"{width}x{height}"] = {"grid": list(tiles.grid), "chunks": tiles.n_chunks,
                                     "ms": round(best_ms(lambda image=image: image_tiles(image), repeat), 1)}
    return rows


def generation(repeat: int) -> dict[str, Any]:
    backend = TransformersBackend(str(ensure_tiny_llama4_vision()), dtype="float32", device="cpu",
                                  context_window=16384, reuse_cache=False)
    backend.load()
    tok = get_tokenizer(family="llama4")
    image = photo(800, 600)
    results = {}
    for name, message in (("text", Message("user", "What is in this picture?")),
                          ("one image 800x600", Message("user", "What is in this picture?", images=(image,)))):
        ids = encode_dialog([message], today=date(2025, 4, 5), tokenizer=tok)
        params = GenerationParams(max_new_tokens=8, images=dialog_images([message]))

        async def run(ids: list[int] = ids, params: GenerationParams = params) -> None:
            async for _ in backend.stream(ids, params):
                pass

        prefill, total = [], []
        for _ in range(repeat):
            asyncio.run(run())
            prefill.append(backend.stats.last_prefill_s or 0.0)
            total.append(backend.stats.last_total_s or 0.0)
        results[name] = {"prompt_tokens": len(ids), "prefill_ms": round(statistics.median(prefill) * 1000, 1),
                         "8_tokens_ms": round(statistics.median(total) * 1000, 1)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = {"preprocessing": preprocessing(args.repeat), "tiny_llama4_vision": generation(args.repeat)}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print("preprocessing (best of runs):")
    for size, row in report["preprocessing"].items():
        print(f"  {size:>10}: grid {row['grid'][0]}x{row['grid'][1]} ({row['chunks']} tiles) {row['ms']:8.1f} ms")
    print("tiny:llama4-vision, CPU float32 (median):")
    for name, row in report["tiny_llama4_vision"].items():
        print(f"  {name:>18}: {row['prompt_tokens']:5d} tokens, prefill {row['prefill_ms']:7.1f} ms, "
              f"8 new tokens {row['8_tokens_ms']:7.1f} ms")


if __name__ == "__main__":
    main()
