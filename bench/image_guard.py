"""Cost of judging an image with Llama Guard 4 on the tiny model: one image check (preprocessing, the vision tower,
the prefill with the image's features) at a one-tile size and a multi-tile size, against the same message checked as
text alone (which reuses the prompt head's KV cache). Prints one JSON object.

    .venv/bin/python bench/image_guard.py [--repeats 10] [--threads 1]

The tiny Llama Guard 4 has the real vision settings (tiles of 336 pixels, 144 `<|patch|>` tokens a tile) and tiny
hidden sizes, so what this measures is the image's share of the prompt (144 tokens per tile, plus the global tile
when there is more than one) and the fixed costs around it, not a 12B model's vision tower. Torch threads default to
1 (on a shared 2-core machine two intra-op threads made tiny forwards slower).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _median_ms(run: Callable[[], Any], repeats: int) -> float:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    from assistant.dev.tiny_guards.builder import TINY_GUARDS_VERSION, build_tiny_guards
    from assistant.dev.tiny_guards.vision4 import MAGENTA, photo_png, solid_png
    from guards.llama_guard.guard import LlamaGuard
    from guards.llama_guard.prompt import Turn
    from guards.llama_guard.vision import prepare_image
    from model.images import ImageLimits, read_image

    models = build_tiny_guards(REPO / ".cache" / "tiny-models" / TINY_GUARDS_VERSION, ("llama-guard-4",))
    guard = LlamaGuard.load(models["llama-guard-4"], dtype="float32", variant="4")
    assert guard.vision is not None
    spec = guard.vision.spec
    turns = [Turn("user", "What is in this picture? Tell me what you see, please.")]
    images = {
        "photo 320x240 (1x1 grid)": read_image(photo_png((320, 240)), name="photo.png", limits=ImageLimits()),
        "photo 900x600 (2x3 grid)": read_image(photo_png((900, 600)), name="wide.png", limits=ImageLimits()),
        "magenta 900x600 (2x3 grid, unsafe)": read_image(solid_png(MAGENTA, (900, 600)), name="m.png",
                                                         limits=ImageLimits()),
    }
    text_ms = _median_ms(lambda: guard.check(turns), args.repeats)
    figures: dict[str, Any] = {}
    for name, image in images.items():
        prepared = prepare_image(image, spec)
        result = guard.check(turns, image=image)
        check_ms = _median_ms(lambda image=image: guard.check(turns, image=image), args.repeats)
        figures[name] = {
            "grid": list(prepared.tiles.grid),
            "tiles": prepared.tiles.n_chunks,
            "prompt_tokens": len(guard.prompt_ids(turns, image=image)),
            "verdict": result.text,
            "preprocess_ms": _median_ms(lambda image=image: prepare_image(image, spec), args.repeats),
            "check_ms": check_ms,
            "vs_text_only": round(check_ms / text_ms, 1),
        }
    out = {
        "model": f"tiny llama-guard-4 (vision: 2 layers, hidden 16, 336-pixel tiles; text: 2 layers, hidden 64, "
                 f"202,048 vocab), CPU, {args.threads} thread(s)",
        "text_only": {"prompt_tokens": len(guard.prompt_ids(turns)), "check_ms": text_ms},
        "per_image": figures,
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
