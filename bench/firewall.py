"""Our Prompt Guard scanner next to LlamaFirewall's, on the same tiny Prompt Guard 2 model and the same long text.

LlamaFirewall's `PromptGuardScanner` tokenizes with `truncation=True, max_length=512`, so it reads only the first 512
tokens; ours scores every overlapping window (batched) and takes the maximum. The text is benign filler with a
jailbreak trigger near its end, so coverage decides whether the attack is seen.

`llamafirewall` 1.0.3 imports `HfFolder`, which huggingface_hub 1.x removed: `_shim_hf_folder` puts a stand-in back
(it is only asked for a token before a download, which never happens here). The scanner looks for its model under
`$HF_HOME/meta-llama--Llama-Prompt-Guard-2-86M`; we point that at the tiny checkpoint through a temporary HF_HOME.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LF_MODEL_DIR = "meta-llama--Llama-Prompt-Guard-2-86M"


def _shim_hf_folder() -> None:
    import huggingface_hub

    if not hasattr(huggingface_hub, "HfFolder"):

        class HfFolder:  # the one method LlamaFirewall calls
            @staticmethod
            def get_token() -> str | None:
                return None

        huggingface_hub.HfFolder = HfFolder  # type: ignore[attr-defined]


@contextmanager
def _hf_home_with(model_dir: Path):
    previous = os.environ.get("HF_HOME")
    with tempfile.TemporaryDirectory() as home:
        (Path(home) / LF_MODEL_DIR).symlink_to(Path(model_dir).resolve(), target_is_directory=True)
        os.environ["HF_HOME"] = home
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("HF_HOME", None)
            else:
                os.environ["HF_HOME"] = previous


def long_text(words: int, *, seed: int = 3, trigger: str = "jbtrigger", at: float = 0.9) -> str:
    from bench.scenario import words as filler

    text = filler(random.Random(seed), words)
    cut = text.index(" ", int(len(text) * at))
    return f"{text[:cut]} {trigger}{text[cut:]}"


def compare(model_dir: Path, *, words: int = 3000, repeats: int = 5, threshold: float = 0.5) -> dict[str, Any]:
    """Coverage (share of the text's tokens each scanner scores), the score it gives, whether it catches the
    trigger, and the median time per scan."""
    _shim_hf_folder()
    from llamafirewall.llamafirewall_data_types import UserMessage
    from llamafirewall.scanners.prompt_guard_scanner import PromptGuardScanner

    from guards.prompt_guard.guard import PromptGuard, preprocess_text

    ours = PromptGuard.load(str(model_dir), device="cpu")
    with _hf_home_with(model_dir):
        theirs = PromptGuardScanner(block_threshold=threshold)
    text = long_text(words)
    tokens = len(ours.tokenizer(preprocess_text(text, ours.tokenizer), add_special_tokens=False)["input_ids"])
    message = UserMessage(content=text)

    def scan_theirs() -> Any:
        return asyncio.run(theirs.scan(message))

    result_ours = ours.score(text, "jailbreak")
    result_theirs = scan_theirs()
    times_ours = _times(lambda: ours.score(text, "jailbreak"), repeats)
    times_theirs = _times(scan_theirs, repeats)
    return {
        "text_tokens": tokens,
        "ours": {
            "coverage": 1.0,
            "windows": result_ours.windows,
            "score": round(result_ours.score, 4),
            "caught": result_ours.score >= threshold,
            "median_ms": round(statistics.median(times_ours) * 1000, 2),
            "ms_per_1k_tokens_covered": round(statistics.median(times_ours) * 1e6 / tokens, 2),
        },
        "llamafirewall": {
            "coverage": round(min(tokens, 510) / tokens, 4),  # 512 minus [CLS] and [SEP]
            "windows": 1,
            "score": round(float(result_theirs.score), 4),
            "caught": float(result_theirs.score) >= threshold,
            "median_ms": round(statistics.median(times_theirs) * 1000, 2),
            "ms_per_1k_tokens_covered": round(statistics.median(times_theirs) * 1e6 / min(tokens, 510), 2),
        },
    }


def _times(fn: Any, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def table(result: dict[str, Any]) -> str:
    lines = [f"Prompt Guard over a {result['text_tokens']}-token text (jailbreak trigger at 90%):",
             f"{'scanner':>14}  coverage  windows   score  caught  median ms  ms/1k tokens covered"]
    for name in ("ours", "llamafirewall"):
        r = result[name]
        lines.append(
            f"{name:>14}  {r['coverage']:8.3f}  {r['windows']:7d}  {r['score']:6.3f}  {r['caught']!s:>6}  "
            f"{r['median_ms']:9.2f}  {r['ms_per_1k_tokens_covered']:20.2f}"
        )
    return "\n".join(lines)
