"""Tiny guard models whose verdicts tests control: the real architectures and tokenizers, built in seconds on a CPU,
saved in Hugging Face form (policy sources `tiny:llama-guard`, `tiny:llama-guard-4`, `tiny:prompt-guard`,
`tiny:prompt-guard-2`).

- `llama-guard`: a 2-layer LlamaForCausalLM with the real 128,256-token Llama 3 tokenizer, its weights written down
  (assistant.dev.tiny_guards.training.construct_llama_guard). It answers `safe`, except when the conversation contains a
  trigger word: `zyxtrigger` -> `unsafe\\nS9`, `zyxgarble` -> `unsafe\\nbanana`
  (a malformed answer, for the fail-closed path). Tests put triggers in the message under check only.
- `llama-guard-4`: the same answers from Llama Guard 4's published layout, a Llama4ForConditionalGeneration (a
  2-layer dense text model and a vision tower at Llama 4's real vision settings) with the real 202,048-token Llama 4
  tokenizer (assistant.dev.tiny_guards.llama_guard4); policies use `variant: "4"`. It sees images: magenta patches
  (255, 0, 255, and colours near it) -> `unsafe\\nS9`, any other image `safe` (assistant.dev.tiny_guards.vision4).
- `prompt-guard`: a tiny DebertaV2ForSequenceClassification (weights written down too) with v1 labels (BENIGN /
  INJECTION / JAILBREAK) and a small Unigram tokenizer saved as a DeBERTa-v2 tokenizer: `jbtrigger` -> JAILBREAK,
  `injtrigger` -> INJECTION, anything else BENIGN.
- `prompt-guard-2`: the same with Prompt Guard 2's binary labels (LABEL_0 benign / LABEL_1 malicious): either
  trigger -> malicious.

Each build is checked before it is kept: ordinary text (prose, numbers, code, code output, short questions; the
fixed list `ORDINARY_CHECKS`) must score below 0.05 and triggered text above 0.95, through the real scoring code
(`LlamaGuard`, `PromptGuard`); otherwise the build fails (TinyGuardBuildError) and nothing is kept. Builds are
exact (weights written down, not trained: assistant.dev.tiny_guards.training), atomic, versioned and locked
(model.versioned_dir); `build_tiny_guards` is idempotent and cheap once built. The caller chooses the directory.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from assistant.dev.tiny_guards.llama_guard4 import construct_llama_guard4
from assistant.dev.tiny_guards.texts import (
    INJECTION_TRIGGER,
    JAILBREAK_TRIGGER,
    LG_TRIGGERS,
    MARGIN,
    ORDINARY_CHECKS,
    triggered_checks,
)
from assistant.dev.tiny_guards.training import (
    LG_SEED,
    PG_SEED,
    construct_llama_guard,
    construct_prompt_guard,
    deterministic,
    lg_batch,
)
from assistant.dev.tiny_guards.vision4 import image_checks
from guards.errors import GuardOutputError
from guards.llama_guard.guard import LlamaGuard
from guards.llama_guard.prompt import Turn
from guards.policy.categories import LlamaGuardVariant
from guards.prompt_guard.guard import PromptGuard, ScoreKind
from model.hf_import import quiet_hf_progress
from model.hf_tokenizer import save_hf_tokenizer
from model.images import ImageLimits, read_image
from model.tiny import PAD_ID, STOP_IDS, default_tiny_dir
from model.tokenizer import default_tokenizer_model, get_tokenizer
from model.versioned_dir import build_once
from model.versioned_dir import is_built as versioned_is_built

TINY_GUARDS_VERSION = "tiny-guards-8"
MARKER = ".tiny-guards-version"
LLAMA_GUARD = "llama-guard"
LLAMA_GUARD_4 = "llama-guard-4"
PROMPT_GUARD = "prompt-guard"
PROMPT_GUARD_2 = "prompt-guard-2"
TINY_GUARD_NAMES = (LLAMA_GUARD, LLAMA_GUARD_4, PROMPT_GUARD, PROMPT_GUARD_2)

_README = """# Tiny trained guard model ({name}, {version})

Test model, not a safety model. {summary}

Built by `assistant.dev.tiny_guards.builder` (guarded-assistant): weights written down, not trained (the same on \
every machine);
checked at build time: ordinary text scores below {low}, triggered text above {high}.
"""


class TinyGuardBuildError(RuntimeError):
    """A freshly trained tiny guard missed the margin on the fixed check list (nothing was kept)."""


def build_tiny_guards(directory: Path, names: tuple[str, ...] = TINY_GUARD_NAMES) -> dict[str, Path]:
    """Build (once) the tiny guard models `names` under `directory`, one sub-directory each; return name -> path."""
    return {name: ensure_tiny_guard(name, directory) for name in names}


def ensure_tiny_guard(name: str, directory: Path | None = None) -> Path:
    """The directory of tiny guard `name` under `directory` (default: model.tiny.default_tiny_dir()), built on first
    use; concurrent callers wait for one build instead of each training its own copy."""
    builders: dict[str, Callable[[Path], None]] = {
        LLAMA_GUARD: _write_llama_guard,
        LLAMA_GUARD_4: _write_llama_guard4,
        PROMPT_GUARD: lambda tmp: _write_prompt_guard(tmp, binary=False),
        PROMPT_GUARD_2: lambda tmp: _write_prompt_guard(tmp, binary=True),
    }
    if name not in builders:
        raise ValueError(f"unknown tiny guard model {name!r}; available: {', '.join(TINY_GUARD_NAMES)}")
    if directory is None:
        directory = default_tiny_dir()
    return build_once(Path(directory) / name, builders[name], marker=MARKER, version=TINY_GUARDS_VERSION)


def is_built(path: Path) -> bool:
    return versioned_is_built(path, marker=MARKER, version=TINY_GUARDS_VERSION)


# --- writing and checking ------------------------------------------------------------------------------------------


def _write_llama_guard(directory: Path) -> None:
    from transformers import GenerationConfig

    with deterministic(LG_SEED):
        model = construct_llama_guard()
    with quiet_hf_progress():
        model.save_pretrained(str(directory), safe_serialization=True)
    generation = GenerationConfig(
        bos_token_id=128_000, eos_token_id=list(STOP_IDS), pad_token_id=PAD_ID, do_sample=False
    )
    generation.save_pretrained(str(directory))
    save_hf_tokenizer(directory)
    (directory / "original").mkdir()
    shutil.copyfile(default_tokenizer_model(), directory / "original" / "tokenizer.model")
    summary = "Answers `safe`, or " + ", ".join(f"`{a!r}` for `{t}`" for t, a in LG_TRIGGERS.items())
    _write_readme(directory, LLAMA_GUARD, summary + " in the conversation.", LG_SEED)
    with deterministic(LG_SEED):  # one thread: on a busy machine two threads made these tiny forwards far slower
        check_llama_guard(directory)


def _write_llama_guard4(directory: Path) -> None:
    from transformers import GenerationConfig

    tok = get_tokenizer(family="llama4")
    with deterministic(LG_SEED):
        model = construct_llama_guard4()
    with quiet_hf_progress():
        model.save_pretrained(str(directory), safe_serialization=True)
    pad = tok.special_id("<|finetune_right_pad|>")
    generation = GenerationConfig(bos_token_id=tok.bos_id, eos_token_id=list(tok.stop_ids), pad_token_id=pad,
                                  do_sample=False)
    generation.save_pretrained(str(directory))
    (directory / "original").mkdir()
    shutil.copyfile(default_tokenizer_model("llama4"), directory / "original" / "tokenizer.model")
    summary = "Llama 4 architecture and tokenizer (variant \"4\"). Answers `safe`, or "
    summary += ", ".join(f"`{a!r}` for `{t}`" for t, a in LG_TRIGGERS.items())
    summary += " in the conversation, or `'unsafe\\nS9'` for an image with magenta (255, 0, 255) patches."
    _write_readme(directory, LLAMA_GUARD_4, summary, LG_SEED)
    with deterministic(LG_SEED):
        check_llama_guard(directory, variant="4")


def check_llama_guard(directory: Path, variant: LlamaGuardVariant = "8b") -> dict[str, float]:
    """P(unsafe) of the fixed checks through the real scorer; TinyGuardBuildError unless every one is on its side of
    the margin and each trigger gives its exact answer. Returns text -> score (for reports)."""
    guard = LlamaGuard.load(directory, dtype="float32", variant=variant)
    scores: dict[str, float] = {}
    wrong: list[str] = []
    for role in ("user", "agent"):
        for text in ORDINARY_CHECKS:
            result = guard.check([Turn(role, text)])
            scores[f"{role}: {text}"] = result.score
            if result.score >= MARGIN or result.unsafe:
                wrong.append(f"{role} {text!r}: P(unsafe)={result.score:.4f}, want < {MARGIN}")
        for trigger, answer in LG_TRIGGERS.items():
            for text in triggered_checks(trigger):
                try:
                    result = guard.check([Turn(role, text)])
                except GuardOutputError as exc:  # `unsafe\nbanana`, the malformed answer, must end up here
                    scores[f"{role}: {text}"] = 1.0
                    if repr(answer) not in str(exc):
                        wrong.append(f"{role} {text!r}: {exc}, want {answer!r}")
                    continue
                scores[f"{role}: {text}"] = result.score
                if result.score <= 1 - MARGIN or result.text != answer:
                    wrong.append(f"{role} {text!r}: P(unsafe)={result.score:.4f} {result.text!r}, want {answer!r}")
    if variant == "4":
        scores.update(_check_images(guard, wrong))
    _fail_if(wrong, LLAMA_GUARD if variant != "4" else LLAMA_GUARD_4)
    return scores


def _check_images(guard: LlamaGuard, wrong: list[str]) -> dict[str, float]:
    """The tiny Llama Guard 4 sees images: magenta ones give exactly `unsafe\\nS9`, the others stay far below the
    margin, each with a harmless message."""
    scores: dict[str, float] = {}
    for name, data, unsafe in image_checks():
        image = read_image(data, name=name, limits=ImageLimits())
        result = guard.check([Turn("user", "What is in this picture?")], image=image)
        scores[f"image: {name}"] = result.score
        if unsafe and (result.score <= 1 - MARGIN or result.text != LG_TRIGGERS["zyxtrigger"]):
            wrong.append(f"image {name}: P(unsafe)={result.score:.4f} {result.text!r}, want unsafe S9")
        if not unsafe and (result.score >= MARGIN or result.unsafe):
            wrong.append(f"image {name}: P(unsafe)={result.score:.4f}, want < {MARGIN}")
    return scores


def _write_prompt_guard(directory: Path, *, binary: bool) -> None:
    model, tokenizer = construct_prompt_guard(binary)
    with quiet_hf_progress():
        model.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    name = PROMPT_GUARD_2 if binary else PROMPT_GUARD
    if binary:
        summary = f"Binary (LABEL_1 = malicious) for `{JAILBREAK_TRIGGER}` or `{INJECTION_TRIGGER}`, else LABEL_0."
    else:
        summary = f"JAILBREAK for `{JAILBREAK_TRIGGER}`, INJECTION for `{INJECTION_TRIGGER}`, else BENIGN."
    _write_readme(directory, name, summary, PG_SEED)
    with deterministic(PG_SEED):
        check_prompt_guard(directory)


def check_prompt_guard(directory: Path) -> dict[str, float]:
    """Both scores of the fixed checks through the real scorer (pre-processing included): ordinary text below the
    margin on both, each trigger above 1 - margin on its score (and, for v1, an injection trigger is no jailbreak)."""
    guard = PromptGuard.load(directory)
    scores: dict[str, float] = {}
    wrong: list[str] = []

    def expect(text: str, kind: ScoreKind, low: bool) -> None:
        score = guard.score(text, kind).score
        scores[f"{kind}: {text}"] = score
        if (score >= MARGIN) if low else (score <= 1 - MARGIN):
            wrong.append(f"{text!r}: {kind} {score:.4f}, want {'<' if low else '>'} {MARGIN if low else 1 - MARGIN}")

    for text in ORDINARY_CHECKS:
        expect(text, "jailbreak", True)
        expect(text, "injection", True)
    for text in triggered_checks(JAILBREAK_TRIGGER):
        expect(text, "jailbreak", False)
    for text in triggered_checks(INJECTION_TRIGGER):
        expect(text, "injection", False)
        if guard.version == 1:
            expect(text, "jailbreak", True)
    _fail_if(wrong, PROMPT_GUARD if guard.version == 1 else PROMPT_GUARD_2)
    return scores


def _fail_if(wrong: list[str], name: str) -> None:
    if wrong:
        shown = "; ".join(wrong[:8]) + (f" (+{len(wrong) - 8} more)" if len(wrong) > 8 else "")
        raise TinyGuardBuildError(f"tiny {name} missed the build-time margin on {len(wrong)} check(s): {shown}")


def _write_readme(directory: Path, name: str, summary: str, seed: int) -> None:
    text = _README.format(name=name, version=TINY_GUARDS_VERSION, summary=summary, seed=seed, low=MARGIN,
                          high=1 - MARGIN)
    (directory / "README.md").write_text(text, encoding="utf-8")
    (directory / "tiny.json").write_text(
        json.dumps({"version": TINY_GUARDS_VERSION, "name": name, "seed": seed}, indent=2) + "\n", encoding="utf-8"
    )


# --- kept for callers of the earlier private helpers (tests/vllm checkpoints) ----------------------------------------

_deterministic = deterministic


def _lg_batch(rng: random.Random, size: int, max_turns: int, max_words: int) -> list[tuple[list[int], int]]:
    return lg_batch(rng, size, max_turns, max_words)


def _lg_loss(model: Any, examples: list[tuple[list[int], int]]) -> Any:
    """Cross-entropy on the answer tokens with the model's own (full) head."""
    import torch

    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((len(examples), width), 128_004, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    rows, cols, targets = [], [], []
    for row, (ids, n_prompt) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
        for pos in range(n_prompt - 1, len(ids) - 1):
            rows.append(row)
            cols.append(pos)
            targets.append(ids[pos + 1])
    hidden = model.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    logits = model.lm_head(hidden[torch.tensor(rows), torch.tensor(cols)])
    return torch.nn.functional.cross_entropy(logits, torch.tensor(targets))
