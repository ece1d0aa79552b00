"""Prompt Guard (v1 and v2) over the whole text: Meta's whitespace pre-processing, then overlapping windows scored in
batches, the maximum over windows.

Labels come from the checkpoint's own `id2label`: v1 has BENIGN / INJECTION / JAILBREAK; v2 is binary (LABEL_0 /
LABEL_1, or benign / malicious). Scores follow Meta's reference (llama-recipes `prompt_guard/inference.py`,
LlamaFirewall's scanner, the model cards):
- jailbreak: P(JAILBREAK) for v1, P(malicious) for v2;
- injection (third-party text): P(INJECTION) + P(JAILBREAK) for v1, P(malicious) for v2.

Pre-processing is Meta's hot-fix for the spacing bypass (`preprocess_text_for_promptguard` in llama-recipes and
LlamaFirewall): drop all whitespace, tokenize what is left, and rejoin the tokens with one space wherever the
original had whitespace before a token; `j a i l b r e a k` becomes `jailbreak` again. Meta's version falls back
to the raw text when a token's string cannot be found (which reopens the bypass); ours falls back to the token's
offsets instead, so it always normalises.

Windows: the pre-processed text is tokenized once; its ids are cut into windows of `window_tokens` (including
[CLS]/[SEP]) overlapping by `overlap_tokens`, all scored (batch_size at a time), and the maximum wins. Meta's
reference and LlamaFirewall read only the first 512 tokens, so an attack after them passes unseen.

Batch size: on the CPU, small batches are faster (measured on one thread: a 3,255-token text in 12 windows took 0.18 s
in batches of 2 against 0.28 s in batches of 16 with the tiny model; a model of Prompt Guard's real size took 1.97 s
against 2.62 s per window in batches of 2 and 8), and their attention tensors stay in the cache: batches of 16 slowed
the main model's prefill beside them by 32%, batches of 2 by 3%. Accelerators want large batches.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from guards.errors import GuardError, GuardModelNotFoundError
from guards.sources import resolve_device, resolve_source
from model.backends.construction import from_pretrained
from model.hf_import import quiet_hf_progress, transformers_names

ScoreKind = Literal["jailbreak", "injection"]

_V1 = {"BENIGN", "INJECTION", "JAILBREAK"}
_V2_NAMES = ({"LABEL_0", "LABEL_1"}, {"BENIGN", "MALICIOUS"})


@dataclass(frozen=True)
class LabelScheme:
    version: Literal[1, 2]
    jailbreak: tuple[int, ...]  # class indices summed for the jailbreak score
    injection: tuple[int, ...]  # ... and for the injection score


@dataclass(frozen=True)
class PromptGuardResult:
    score: float  # the maximum over windows of the requested score
    kind: ScoreKind
    version: Literal[1, 2]
    windows: int
    tokens: int
    max_window: int  # index of the window that gave the maximum
    latency_ms: float = 0.0


def label_scheme(id2label: dict[int, str]) -> LabelScheme:
    """Detect v1 / v2 from the model's own labels; anything else is an error (we will not guess which is bad)."""
    labels = {int(k): str(v).upper() for k, v in id2label.items()}
    names = set(labels.values())
    index = {name: i for i, name in labels.items()}
    if names == _V1:
        return LabelScheme(1, (index["JAILBREAK"],), (index["INJECTION"], index["JAILBREAK"]))
    if names == _V2_NAMES[0]:
        return LabelScheme(2, (index["LABEL_1"],), (index["LABEL_1"],))
    if names == _V2_NAMES[1]:
        return LabelScheme(2, (index["MALICIOUS"],), (index["MALICIOUS"],))
    raise GuardModelNotFoundError(
        f"not a Prompt Guard model: labels {sorted(names)}; expected BENIGN/INJECTION/JAILBREAK (v1) or "
        "LABEL_0/LABEL_1 or benign/malicious (v2)"
    )


def preprocess_text(text: str, tokenizer: Any) -> str:
    """Meta's whitespace pre-processing (see the module docstring)."""
    kept = [(i, ch) for i, ch in enumerate(text) if not ch.isspace()]
    cleaned = "".join(ch for _, ch in kept)
    if not cleaned:
        return ""
    index_map = [i for i, _ in kept]
    tokens = tokenizer.tokenize(cleaned)
    pieces: list[str] = []
    last_end = 0
    try:
        for token in tokens:
            token_str = tokenizer.convert_tokens_to_string([token])
            start = cleaned.index(token_str, last_end)
            original = index_map[start]
            if original > 0 and text[original - 1].isspace():
                pieces.append(" ")
            pieces.append(token_str)
            last_end = start + len(token_str)
        return "".join(pieces)
    except ValueError:
        return _preprocess_by_offsets(text, cleaned, index_map, tokenizer)


def _preprocess_by_offsets(text: str, cleaned: str, index_map: list[int], tokenizer: Any) -> str:
    encoding = tokenizer(cleaned, add_special_tokens=False, return_offsets_mapping=True, split_special_tokens=True)
    pieces: list[str] = []
    for start, end in encoding["offset_mapping"]:
        if end <= start:
            continue
        original = index_map[start]
        if original > 0 and text[original - 1].isspace():
            pieces.append(" ")
        pieces.append(cleaned[start:end])
    return "".join(pieces)


CPU_BATCH_SIZE = 2  # windows per forward pass on the CPU (see the module docstring)
ACCELERATOR_BATCH_SIZE = 16


def default_batch_size(device: Any) -> int:
    """Windows per forward pass when the policy leaves `prompt_guard.batch_size` unset."""
    return CPU_BATCH_SIZE if str(device).split(":")[0] == "cpu" else ACCELERATOR_BATCH_SIZE


def windows(ids: Sequence[int], window: int, overlap: int) -> list[list[int]]:
    """Cut content ids into windows of `window` ids overlapping by `overlap`; always at least one window."""
    if window <= 0 or not 0 <= overlap < window:
        raise ValueError(f"bad windowing: window {window}, overlap {overlap} (need 0 <= overlap < window)")
    step = window - overlap
    out = [list(ids[start : start + window]) for start in range(0, max(len(ids) - overlap, 1), step)]
    return out or [[]]


class PromptGuard:
    """A loaded Prompt Guard classifier. Thread-safe; CPU by default."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        window_tokens: int = 512,
        overlap_tokens: int = 256,
        batch_size: int | None = None,
        preprocess: bool = True,
        source: str = "",
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self._special_ids = frozenset(getattr(tokenizer, "all_special_ids", ()) or ())
        self.scheme = label_scheme(dict(model.config.id2label))
        limit = int(getattr(model.config, "max_position_embeddings", window_tokens) or window_tokens)
        if window_tokens > limit:
            raise ValueError(f"window_tokens {window_tokens} exceeds the model's {limit} positions")
        if window_tokens < 3:
            raise ValueError("window_tokens must leave room for [CLS] and [SEP]")
        self.content_tokens = window_tokens - 2
        if not 0 <= overlap_tokens < self.content_tokens:
            raise ValueError(f"overlap_tokens must be within 0..{self.content_tokens - 1}")
        if batch_size is not None and batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.overlap = overlap_tokens
        self.preprocess = preprocess
        self.source = source
        self.device = next(model.parameters()).device
        self.batch_size = batch_size or default_batch_size(self.device)  # None: by device
        self._lock = threading.Lock()
        cls_id, sep_id, pad_id = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id
        if cls_id is None or sep_id is None or pad_id is None:
            raise GuardModelNotFoundError("the Prompt Guard tokenizer lacks [CLS]/[SEP]/[PAD] tokens")
        self._cls, self._sep, self._pad = int(cls_id), int(sep_id), int(pad_id)

    @property
    def version(self) -> Literal[1, 2]:
        return self.scheme.version

    @classmethod
    def load(
        cls,
        source: str | Path,
        *,
        device: str = "cpu",
        window_tokens: int = 512,
        overlap_tokens: int = 256,
        batch_size: int | None = None,
        preprocess: bool = True,
        dtype: str = "auto",
    ) -> PromptGuard:
        """`dtype` (`models.prompt_guard.dtype`): auto keeps the checkpoint's, else float32, bfloat16 or float16."""
        import torch

        if dtype != "auto" and dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"unknown dtype {dtype!r} for the Prompt Guard model (auto, float32, bfloat16, float16)")
        path = resolve_source(source)
        model, tokenizer = _load_classifier(path)
        model.to(resolve_device(device))
        if dtype != "auto":
            model.to(getattr(torch, dtype))
        model.eval()
        return cls(
            model,
            tokenizer,
            window_tokens=window_tokens,
            overlap_tokens=overlap_tokens,
            batch_size=batch_size,
            preprocess=preprocess,
            source=str(source),
        )

    def score(self, text: str, kind: ScoreKind = "jailbreak") -> PromptGuardResult:
        if kind not in ("jailbreak", "injection"):
            raise ValueError(f"unknown Prompt Guard score {kind!r} (jailbreak or injection)")
        start = time.perf_counter()
        prepared = preprocess_text(text, self.tokenizer) if self.preprocess else text
        # Untrusted text must not place the classifier's own control tokens ([CLS], [SEP], [MASK]...) inside a
        # window: they are split as text, and any special id a vocabulary still yields is dropped.
        ids = self.tokenizer(prepared, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        ids = [i for i in ids if i not in self._special_ids]
        chunks = windows(ids, self.content_tokens, self.overlap)
        indices = list(self.scheme.jailbreak if kind == "jailbreak" else self.scheme.injection)
        scores: list[float] = []
        with self._lock:
            for first in range(0, len(chunks), self.batch_size):
                scores.extend(self._score_batch(chunks[first : first + self.batch_size], indices))
        best = max(range(len(scores)), key=scores.__getitem__)
        return PromptGuardResult(
            score=scores[best],
            kind=kind,
            version=self.version,
            windows=len(chunks),
            tokens=len(ids),
            max_window=best,
            latency_ms=(time.perf_counter() - start) * 1000,
        )

    async def ascore(self, text: str, kind: ScoreKind = "jailbreak") -> PromptGuardResult:
        return await asyncio.to_thread(self.score, text, kind)

    def _score_batch(self, chunks: list[list[int]], indices: list[int]) -> list[float]:
        import torch

        rows = [[self._cls, *chunk, self._sep] for chunk in chunks]
        width = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), width), self._pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        with torch.inference_mode():
            logits = self.model(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)).logits
        probs = torch.softmax(logits.float(), dim=-1)
        if not torch.isfinite(probs).all():
            raise GuardError("Prompt Guard produced non-finite scores")
        return probs[:, indices].sum(dim=1).tolist()


def _load_classifier(path: str) -> tuple[Any, Any]:
    AutoModelForSequenceClassification, AutoTokenizer = transformers_names(
        "AutoModelForSequenceClassification", "AutoTokenizer"
    )

    local = Path(path).expanduser()
    looks_local = local.is_absolute() or path.startswith(".") or local.exists()
    if looks_local and not (local / "config.json").is_file():
        raise GuardModelNotFoundError(
            f"Prompt Guard model not found at {local}: no config.json there. Point models.prompt_guard.source at a "
            "checkpoint directory, a hub id (meta-llama/Prompt-Guard-86M, meta-llama/Llama-Prompt-Guard-2-86M) or "
            "tiny:prompt-guard."
        )
    name = str(local) if looks_local else path
    try:
        with quiet_hf_progress():
            model = from_pretrained(AutoModelForSequenceClassification, name)
            tokenizer = AutoTokenizer.from_pretrained(name)
    except Exception as exc:  # OSError, ValueError, HTTP errors: all mean "not loadable"
        raise GuardModelNotFoundError(
            f"could not load the Prompt Guard model {path!r}: {exc}. For a hub id, download it first (gated: "
            "accept the license, then `hf download meta-llama/Prompt-Guard-86M`) or use a local directory."
        ) from exc
    return model, tokenizer
