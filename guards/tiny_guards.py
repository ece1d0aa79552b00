"""Tiny, trained guard models whose verdicts tests control: the real architectures and tokenizers, CPU-trained in
seconds, saved in Hugging Face form (policy sources `tiny:llama-guard`, `tiny:prompt-guard`, `tiny:prompt-guard-2`).

- `llama-guard`: a 2-layer LlamaForCausalLM with the real 128,256-token Llama 3 tokenizer, trained on real Llama
  Guard 3 prompts (both roles, varied category blocks, 1-5 turns of up to 30 words). It answers `safe`, except when
  the message under check contains a trigger word: `zyxtrigger` -> `unsafe\\nS9`, `zyxgarble` -> `unsafe\\nbanana`
  (a malformed answer, for the fail-closed path). Tests put triggers in the message under check only: the model was
  not trained to ignore a trigger in an earlier message (it flags the conversation then too).
- `prompt-guard`: a tiny DebertaV2ForSequenceClassification with v1 labels (BENIGN / INJECTION / JAILBREAK) and a
  small Unigram tokenizer saved as a DeBERTa-v2 tokenizer: `jbtrigger` -> JAILBREAK, `injtrigger` -> INJECTION,
  anything else BENIGN.
- `prompt-guard-2`: the same with Prompt Guard 2's binary labels (LABEL_0 benign / LABEL_1 malicious): either
  trigger -> malicious.

Builds are deterministic (fixed seeds, one torch thread), atomic (temporary sibling directory then rename) and
versioned (a marker file), and serialised across processes by a lock file; `build_tiny_guards` is idempotent and
cheap once built.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from model.versioned_dir import build_once
from model.versioned_dir import is_built as versioned_is_built

TINY_GUARDS_VERSION = "tiny-guards-5"
MARKER = ".tiny-guards-version"
LLAMA_GUARD = "llama-guard"
PROMPT_GUARD = "prompt-guard"
PROMPT_GUARD_2 = "prompt-guard-2"
TINY_GUARD_NAMES = (LLAMA_GUARD, PROMPT_GUARD, PROMPT_GUARD_2)

# Llama Guard triggers and the answers they steer to.
LG_TRIGGERS: dict[str, str] = {
    "zyxtrigger": "unsafe\nS9",
    "zyxgarble": "unsafe\nbanana",
}
LG_SAFE_ANSWER = "safe"
# Prompt Guard triggers.
JAILBREAK_TRIGGER = "jbtrigger"
INJECTION_TRIGGER = "injtrigger"

_WORD_TEXT = """
the a an of to and in is it you that he was for on are with as I his they be at one have this from or had by hot
word but what some we can out other were all there when up use your how said each she which do their time if
will way about many then them write would like so these her long make thing see him two has look more day could
go come did number sound no most people my over know water than call first who may down side been now find any
new work part take get place made live where after back little only round man year came show every good me give
our under name very through just form sentence great think say help low line differ turn cause much mean before
move right boy old too same tell does set three want air well also play small end put home read hand port large
spell add even land here must big high such follow act why ask men change went light kind off need house picture
try us again animal point mother world near build self earth father weather recipe garden python code function
list please summarize email meeting report translate explain story
"""
WORDS = tuple(_WORD_TEXT.split())
PUNCT = (".", ",", "?", "!", ":", ";", "", "", "", "")

_README = """# Tiny trained guard model ({name}, {version})

Test model, not a safety model. {summary}

Built by `guards.tiny_guards.build_tiny_guards` (guarded-assistant), deterministic from seed {seed}.
"""


def build_tiny_guards(directory: Path) -> dict[str, Path]:
    """Build (once) the tiny guard models under `directory`, one sub-directory each; return name -> path."""
    directory = Path(directory)
    builders: dict[str, Callable[[Path], None]] = {
        LLAMA_GUARD: _write_llama_guard,
        PROMPT_GUARD: lambda tmp: _write_prompt_guard(tmp, binary=False),
        PROMPT_GUARD_2: lambda tmp: _write_prompt_guard(tmp, binary=True),
    }
    built: dict[str, Path] = {}
    for name, write in builders.items():
        # Concurrent test sessions wait for one build instead of each training its own copy.
        built[name] = build_once(directory / name, write, marker=MARKER, version=TINY_GUARDS_VERSION)
    return built


def is_built(path: Path) -> bool:
    return versioned_is_built(path, marker=MARKER, version=TINY_GUARDS_VERSION)


@contextmanager
def _deterministic(seed: int, threads: int = 1) -> Iterator[random.Random]:
    """Fixed seed and one thread for the build: the thread count changes float summation order, and for models this
    small two threads were 20x slower than one here (synchronisation costs more than the arithmetic)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    try:
        yield random.Random(seed)
    finally:
        torch.set_num_threads(previous)


# --- Llama Guard -------------------------------------------------------------------------------------------------

LG_SEED = 1234


def random_message(rng: random.Random, min_words: int = 1, max_words: int = 30, trigger: str | None = None) -> str:
    words = [rng.choice(WORDS) + rng.choice(PUNCT) for _ in range(rng.randint(min_words, max_words))]
    if rng.random() < 0.3:
        words[0] = words[0].capitalize()
    if trigger is not None:
        words.insert(rng.randint(0, len(words)), trigger + rng.choice(PUNCT))
    sep = rng.choice([" ", " ", " ", "\n", "  "])
    text = sep.join(words)
    if rng.random() < 0.2:
        text = rng.choice(["  ", "\n", "\t"]) + text + rng.choice(["  ", "\n", ""])
    return text


def lg_example(rng: random.Random, *, max_turns: int = 4, max_words: int = 30) -> tuple[list[Any], str]:
    """A random conversation (turns) and the answer the tiny Llama Guard must give."""
    from guards.llama_guard_prompt import Turn

    n_turns = rng.randint(1, max_turns)
    roles = ["user" if i % 2 == 0 else "agent" for i in range(n_turns)]
    if rng.random() < 0.15:
        roles = [rng.choice(["user", "agent"]) for _ in range(n_turns)]
    kind = rng.random()
    trigger = None
    if kind < 0.45:
        trigger = rng.choice(list(LG_TRIGGERS))
    turns = []
    for i, role in enumerate(roles):
        t = trigger if i == n_turns - 1 else None
        turns.append(Turn(role, random_message(rng, max_words=max_words, trigger=t)))  # type: ignore[arg-type]
    return turns, (LG_TRIGGERS[trigger] if trigger else LG_SAFE_ANSWER)


def lg_categories(rng: random.Random) -> tuple[Any, ...]:
    from guards.llama_guard_prompt import PromptCategory, prompt_categories

    variant = "8b" if rng.random() < 0.8 else "1b"
    codes = [f"S{i}" for i in range(1, 15 if variant == "8b" else 14)]
    excluded = rng.sample(codes, rng.randint(0, 4)) if rng.random() < 0.5 else []
    custom = []
    if rng.random() < 0.3:
        last = 14 if variant == "8b" else 13
        custom.append(PromptCategory(f"S{last + 1}", "Competitor Products", "Do not discuss products of rivals."))
    return prompt_categories(variant, excluded=excluded, custom=custom)  # type: ignore[arg-type]


def lg_encode(turns: Sequence[Any], categories: Sequence[Any], answer: str | None = None) -> tuple[list[int], int]:
    """Prompt ids (+ answer ids and <|eot_id|> when given) and the prompt length."""
    from guards.llama_guard_prompt import encode_segments, prompt_segments
    from model.tokenizer import get_tokenizer

    tok = get_tokenizer()
    ids = encode_segments(prompt_segments(turns, categories), tok.encode, tok.special_id)
    n_prompt = len(ids)
    if answer is not None:
        ids = ids + tok.encode(answer) + [tok.special_id("<|eot_id|>")]
    return ids, n_prompt


def _lg_batch(rng: random.Random, size: int, max_turns: int, max_words: int) -> list[tuple[list[int], int]]:
    return [lg_encode(*_swap(lg_example(rng, max_turns=max_turns, max_words=max_words), rng)) for _ in range(size)]


def _swap(example: tuple[list[Any], str], rng: random.Random) -> tuple[list[Any], Any, str]:
    turns, answer = example
    return turns, lg_categories(rng), answer


def _train_llama_guard(steps: int = 200, batch: int = 16, seed: int = LG_SEED) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from model.tiny import tiny_llama_config

    with _deterministic(seed) as rng:
        config = LlamaConfig(**{**tiny_llama_config(), "tie_word_embeddings": True, "max_position_embeddings": 16384})
        model = LlamaForCausalLM(config)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 10) * (1 - s / steps))
        for step in range(steps):
            max_turns = 3 if step < steps // 2 else 5
            examples = _lg_batch(rng, batch, max_turns=max_turns, max_words=30)
            loss = _lg_loss(model, examples)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
        model.eval()
    return model


def _lg_loss(model: Any, examples: list[tuple[list[int], int]]) -> Any:
    """Cross-entropy on the answer tokens only; the lm head runs on those positions alone (cheap)."""
    import torch

    width = max(len(ids) for ids, _ in examples)
    pad = 128_004
    input_ids = torch.full((len(examples), width), pad, dtype=torch.long)
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


def _write_llama_guard(directory: Path) -> None:
    from transformers import GenerationConfig

    from model.hf_tokenizer import save_hf_tokenizer
    from model.tiny import PAD_ID, STOP_IDS
    from model.tokenizer import default_tokenizer_model

    model = _train_llama_guard()
    model.save_pretrained(str(directory), safe_serialization=True)
    generation = GenerationConfig(
        bos_token_id=128_000, eos_token_id=list(STOP_IDS), pad_token_id=PAD_ID, do_sample=False
    )
    generation.save_pretrained(str(directory))
    save_hf_tokenizer(directory)
    (directory / "original").mkdir()
    shutil.copyfile(default_tokenizer_model(), directory / "original" / "tokenizer.model")
    summary = "Answers `safe`, or " + ", ".join(f"`{a!r}` for `{t}`" for t, a in LG_TRIGGERS.items())
    _write_readme(directory, LLAMA_GUARD, summary + " in the message under check.", LG_SEED)


def _write_readme(directory: Path, name: str, summary: str, seed: int) -> None:
    (directory / "README.md").write_text(
        _README.format(name=name, version=TINY_GUARDS_VERSION, summary=summary, seed=seed), encoding="utf-8"
    )
    (directory / "tiny.json").write_text(
        json.dumps({"version": TINY_GUARDS_VERSION, "name": name, "seed": seed}, indent=2) + "\n", encoding="utf-8"
    )


# --- Prompt Guard ------------------------------------------------------------------------------------------------


PG_SEED = 4321
PG_V1_LABELS = {0: "BENIGN", 1: "INJECTION", 2: "JAILBREAK"}
PG_V2_LABELS = {0: "LABEL_0", 1: "LABEL_1"}


def pg_example(rng: random.Random, max_words: int = 40) -> tuple[str, str]:
    """A random text and its v1 label."""
    kind = rng.random()
    if kind < 0.3:
        return random_message(rng, max_words=max_words, trigger=JAILBREAK_TRIGGER), "JAILBREAK"
    if kind < 0.6:
        return random_message(rng, max_words=max_words, trigger=INJECTION_TRIGGER), "INJECTION"
    return random_message(rng, max_words=max_words), "BENIGN"


def _pg_tokenizer() -> Any:
    """A small Unigram vocabulary saved as a DeBERTa-v2 tokenizer (Metaspace, [CLS] x [SEP]), written down rather
    than trained (instant and deterministic): every word and trigger with and without the word-start mark (pieces
    without it are what Meta's whitespace pre-processing produces for text with its spaces removed), then single
    characters for coverage."""
    import string

    from transformers import DebertaV2Tokenizer

    specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
    words = sorted(
        {w.lower() for w in WORDS} | {w.capitalize() for w in WORDS} | {JAILBREAK_TRIGGER, INJECTION_TRIGGER}
    )
    vocab: list[tuple[str, float]] = [(piece, 0.0) for piece in specials]
    vocab += [("\u2581" + w, -5.0) for w in words] + [(w, -6.0) for w in words]
    chars = string.ascii_letters + string.digits + string.punctuation
    vocab += [("\u2581", -3.0)] + [(c, -9.0) for c in chars] + [("\u2581" + c, -9.5) for c in chars]
    return DebertaV2Tokenizer(vocab=vocab, unk_id=specials.index("[UNK]"), do_lower_case=False)


def _train_prompt_guard(binary: bool, steps: int = 300, batch: int = 32, max_words: int = 20) -> tuple[Any, Any]:
    import torch
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    with _deterministic(PG_SEED) as rng:
        tokenizer = _pg_tokenizer()
        labels = PG_V2_LABELS if binary else PG_V1_LABELS
        config = DebertaV2Config(
            vocab_size=len(tokenizer),
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=512,
            relative_attention=True,
            position_buckets=64,
            max_relative_positions=-1,
            pos_att_type=["p2c", "c2p"],
            position_biased_input=False,
            type_vocab_size=0,
            pad_token_id=tokenizer.pad_token_id,
            id2label=labels,
            label2id={v: k for k, v in labels.items()},
            pooler_hidden_size=32,
        )
        model = DebertaV2ForSequenceClassification(config)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
        v1_index = {name: i for i, name in PG_V1_LABELS.items()}
        for _ in range(steps):
            texts, names = zip(*(pg_example(rng, max_words) for _ in range(batch)), strict=True)
            enc = tokenizer(list(texts), padding=True, truncation=True, max_length=96, return_tensors="pt")
            target = [v1_index[n] for n in names]
            if binary:
                target = [int(t != 0) for t in target]
            out = model(**enc, labels=torch.tensor(target))
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()
        model.eval()
    return model, tokenizer


def _write_prompt_guard(directory: Path, *, binary: bool) -> None:
    model, tokenizer = _train_prompt_guard(binary)
    model.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    name = PROMPT_GUARD_2 if binary else PROMPT_GUARD
    if binary:
        summary = f"Binary (LABEL_1 = malicious) for `{JAILBREAK_TRIGGER}` or `{INJECTION_TRIGGER}`, else LABEL_0."
    else:
        summary = f"JAILBREAK for `{JAILBREAK_TRIGGER}`, INJECTION for `{INJECTION_TRIGGER}`, else BENIGN."
    _write_readme(directory, name, summary, PG_SEED)
