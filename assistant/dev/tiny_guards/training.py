"""The weights of the tiny guards (see assistant.dev.tiny_guards.builder), written down rather than trained: exact, the
same on every machine and thread count, built in about a second.

Training them took minutes on a busy 2-core machine, and a model trained with a different thread count (which
changes the order of float sums) was a different model: one scored the harmless tool result `42` at 0.511 against a
0.5 threshold. Constructed, each guard looks only for its trigger pieces, so ordinary text of any kind scores far
from every threshold, and the build still checks that on a fixed list (assistant.dev.tiny_guards.builder).

- `construct_llama_guard`: a 2-layer LlamaForCausalLM whose attention finds the trigger pieces and whose output head
  maps them to the answer tokens.
- `construct_prompt_guard`: a 2-layer DeBERTa-v2 classifier whose [CLS] attention finds the trigger pieces.
- `lg_example` / `lg_batch`: Llama Guard prompts with the answers the tiny model gives, for tests and for training
  other checkpoints (tests/vllm).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

from assistant.dev.tiny_guards.texts import (
    INJECTION_TRIGGER,
    JAILBREAK_TRIGGER,
    LG_SAFE_ANSWER,
    LG_TRIGGERS,
    WORDS,
    ordinary_text,
    with_trigger,
)
from guards.llama_guard.prompt import (
    PromptCategory,
    Role,
    Turn,
    encode_segments,
    prompt_categories,
    prompt_segments,
)
from guards.policy.categories import LlamaGuardVariant
from model.backends.construction import constructing
from model.tiny import tiny_llama_config
from model.tokenizer import get_tokenizer

LG_SEED = 1234
PG_SEED = 4321
PG_TRIGGER_WEIGHT = 2.65  # trigger logit ~15 against the constant benign ~6.7: P ~ 0.9997
PG_V1_LABELS = {0: "BENIGN", 1: "INJECTION", 2: "JAILBREAK"}
PG_V2_LABELS = {0: "LABEL_0", 1: "LABEL_1"}
PAD_ID = 128_004


@contextmanager
def deterministic(seed: int, threads: int = 1) -> Iterator[random.Random]:
    """Fixed seeds and a fixed thread count for the build (restored afterwards): the same model on any machine; for
    models this small one thread is also the fastest (two were 20x slower here)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    try:
        yield random.Random(seed)
    finally:
        torch.set_num_threads(previous)


# --- Llama Guard -------------------------------------------------------------------------------------------------


def lg_example(
    rng: random.Random, *, max_turns: int = 4, max_words: int = 30, soup: tuple[str, ...] = ()
) -> tuple[list[Any], str]:
    """A random conversation (turns) and the answer the tiny Llama Guard must give (a trigger in the last turn)."""
    n_turns = rng.randint(1, max_turns)
    both: list[Role] = ["user", "agent"]
    roles = [both[i % 2] for i in range(n_turns)]
    if rng.random() < 0.15:
        roles = [rng.choice(both) for _ in range(n_turns)]
    trigger = rng.choice(list(LG_TRIGGERS)) if rng.random() < 0.45 else None
    turns = []
    for i, role in enumerate(roles):
        text = ordinary_text(rng, max_words=max_words, soup=soup)
        if trigger is not None and i == n_turns - 1:
            text = with_trigger(text, trigger, rng)
        turns.append(Turn(role, text))
    return turns, (LG_TRIGGERS[trigger] if trigger else LG_SAFE_ANSWER)


def lg_categories(rng: random.Random, *, short: bool = False) -> tuple[Any, ...]:
    """A random category block; `short` keeps 1-3 categories (short prompts: the first, cheap half of training)."""
    variant: LlamaGuardVariant = "8b" if rng.random() < 0.8 else "1b"
    codes = [f"S{i}" for i in range(1, 15 if variant == "8b" else 14)]
    if short:
        return prompt_categories(variant, enabled=rng.sample(codes, rng.randint(1, 3)))
    excluded = rng.sample(codes, rng.randint(0, 4)) if rng.random() < 0.5 else []
    custom = []
    if rng.random() < 0.3:
        last = 14 if variant == "8b" else 13
        custom.append(PromptCategory(f"S{last + 1}", "Competitor Products", "Do not discuss products of rivals."))
    return prompt_categories(variant, excluded=excluded, custom=custom)


def lg_encode(turns: Sequence[Any], categories: Sequence[Any], answer: str | None = None) -> tuple[list[int], int]:
    """Prompt ids (+ answer ids and <|eot_id|> when given) and the prompt length."""
    tok = get_tokenizer()
    ids = encode_segments(prompt_segments(turns, categories), tok.encode, tok.special_id)
    n_prompt = len(ids)
    if answer is not None:
        ids = ids + tok.encode(answer) + [tok.special_id("<|eot_id|>")]
    return ids, n_prompt


def lg_batch(
    rng: random.Random, size: int, max_turns: int, max_words: int, soup: tuple[str, ...] = (), short: bool = False
) -> list[tuple[list[int], int]]:
    examples = []
    for _ in range(size):
        turns, answer = lg_example(rng, max_turns=max_turns, max_words=max_words, soup=soup)
        examples.append(lg_encode(turns, lg_categories(rng, short=short), answer))
    return examples


def flag_ids() -> dict[str, list[int]]:
    """The token ids the constructed Llama Guard looks for: `zyx` (the `zy` / `yx` pieces that every spelling of both
    trigger words contains, unless glued to a preceding letter), which makes the verdict unsafe, and `trigger` /
    `garble`, which choose the category. (A word spelt with `zy` at its start, such as `zygote` without a space
    before it, is flagged too: tests steer with the trigger words, and the build checks ordinary text.)"""
    tok = get_tokenizer()
    ids = {"zyx": {4341, 52926}, "trigger": {18975, 22099}, "garble": {12440}}
    # Checked, not assumed: the ids above must be how this tokenizer spells the pieces.
    for name, expected in (("zy", 4341), ("yx", 52926), ("trigger", 18975), ("iggers", 22099), ("gar", 12440)):
        if tok.encode(name) != [expected]:
            raise RuntimeError(f"the Llama 3 tokenizer no longer spells {name!r} as [{expected}]")
    return {name: sorted(found) for name, found in ids.items()}


def _skip_random_init() -> Any:
    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights
        except ImportError:
            return nullcontext()
    return no_init_weights()


def construct_llama_guard(config: dict[str, Any] | None = None) -> Any:
    """The tiny Llama Guard with weights written down, not trained: exact, the same on every machine, built in a
    second. Layer 1's attention finds the trigger pieces, its output head maps (current token, triggers seen) to the
    next answer token; the MLPs and layer 2 are zero (identity), every other row of the output head is zero.

    Residual dimensions: 0 bias (every token), 1-3 flags of the `zyx` / `trigger` / `garble` pieces (embedding), 4-6
    the same seen anywhere before (attention output), 7.. which answer-chain token is current (embedding).
    Query head 0 -> kv head 0 attends to `zyx` pieces, query head 2 -> kv head 1 to `trigger` or `garble` pieces.
    Keys and queries sit on the slowest rotary pair, so the match does not depend on distance. Logits: `safe` 15 on
    ordinary text (P(unsafe) ~ 3e-7: low, yet a threshold of 1e-12 still flags it), `unsafe` ~ 20 over the rest with a
    trigger word (P ~ 0.9997: below 1.0 in float32, so a threshold of 1.0 still passes it).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    settings = {**tiny_llama_config(), "tie_word_embeddings": False, "max_position_embeddings": 16384}
    # Under the construction lock: skipping init patches torch process-wide (see model.backends.construction).
    # Every matrix is overwritten below: drawing 2 x 8M random numbers first is waste.
    with constructing(), _skip_random_init():
        model = LlamaForCausalLM(LlamaConfig(**{**settings, **(config or {})}))
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    # Keys and queries on the rotary pair with the lowest frequency (Llama's half-split layout).
    write_llama_guard_weights(model, get_tokenizer(), flag_ids(), qk_dim=head_dim // 2 - 1)
    return model


def write_llama_guard_weights(model: Any, tok: Any, flags: dict[str, list[int]], *, qk_dim: int) -> None:
    """Write the tiny Llama Guard's weights (`construct_llama_guard`'s layout) into a Llama-shaped causal LM with
    4 query and 2 key/value heads: `tok` gives the answer-chain ids, `flags` the trigger pieces, `qk_dim` the head
    dimension keys and queries use (one whose match does not depend on distance). Shared by Llama Guard 3 and 4."""
    import torch

    eot, nl2, safe, unsafe, nl, s, nine, banana = (
        tok.eot_id, *(tok.encode(x)[0] for x in ("\n\n", "safe", "unsafe", "\n", "S", "9", "banana"))
    )
    chain = [nl2, safe, unsafe, nl, s, nine, banana]  # answer-chain tokens, residual dims 7..13
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    slow = qk_dim
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.zero_()
        emb = model.model.embed_tokens.weight
        emb[:, 0] = 1.0
        for dim, name in ((1, "zyx"), (2, "trigger"), (3, "garble")):
            emb[flags[name], dim] = 1.0
        for k, token in enumerate(chain):
            emb[token, 7 + k] = 1.0
        attn = model.model.layers[0].self_attn
        attn.q_proj.weight[0 * head_dim + slow, 0] = 3.5  # query head 0 (kv head 0)
        attn.q_proj.weight[2 * head_dim + slow, 0] = 3.5  # query head 2 (kv head 1)
        attn.k_proj.weight[0 * head_dim + slow, 1] = 3.5
        attn.k_proj.weight[1 * head_dim + slow, 2] = 3.5
        attn.k_proj.weight[1 * head_dim + slow, 3] = 3.5
        attn.v_proj.weight[0 * head_dim + 0, 1] = 1.0
        attn.v_proj.weight[1 * head_dim + 0, 2] = 1.0
        attn.v_proj.weight[1 * head_dim + 1, 3] = 1.0
        attn.o_proj.weight[4, 0 * head_dim + 0] = 1.0
        attn.o_proj.weight[5, 2 * head_dim + 0] = 1.0
        attn.o_proj.weight[6, 2 * head_dim + 1] = 1.0
        lm = model.lm_head.weight
        current = {token: 7 + k for k, token in enumerate(chain)}

        def rule(target: int, when: list[int], weight: float = 5.0) -> None:
            """`target` follows the tokens `when`; a large penalty whenever another chain token is current."""
            for token in chain:
                lm[target, current[token]] += weight if token in when else -60.0

        rule(safe, [nl2], 2.65)
        lm[safe, 4:7] -= 0.2
        rule(unsafe, [nl2], 0.0)
        lm[unsafe, 4] += 3.6
        rule(nl, [unsafe])
        rule(s, [nl])
        lm[s, 5] += 3.0
        lm[s, 6] -= 3.0
        rule(banana, [nl])
        lm[banana, 6] += 3.0
        lm[banana, 5] -= 3.0
        rule(nine, [s])
        rule(eot, [safe, nine, banana])
    model.eval()


# --- Prompt Guard ------------------------------------------------------------------------------------------------


def pg_tokenizer() -> Any:
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


def construct_prompt_guard(binary: bool) -> tuple[Any, Any]:
    """The tiny Prompt Guard (DeBERTa-v2 classifier) with weights written down, and its tokenizer: exact, the same on
    every machine, built in a fraction of a second.

    Every piece of the vocabulary embeds as the same zero-mean unit-variance vector (so the embedding LayerNorm keeps
    it), except the trigger pieces and [CLS]. In layer 1, [CLS]'s one attention head finds trigger pieces anywhere in
    the window and writes which ones into its hidden state; the rest of the network passes it through (zero weights,
    LayerNorms of already normalised vectors); the pooler and classifier turn it into the label. Ordinary text scores
    about 0.001-0.002; a trigger about 0.9998 (below 1.0 in float32, so a threshold of 1.0 still passes it).
    """
    import torch
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    tokenizer = pg_tokenizer()
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
    with constructing(), _skip_random_init():
        model = DebertaV2ForSequenceClassification(config)
    ids = tokenizer.convert_tokens_to_ids
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Linear | torch.nn.Embedding):
                module.weight.zero_()
                if getattr(module, "bias", None) is not None:
                    module.bias.zero_()
            elif isinstance(module, torch.nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        emb = model.deberta.embeddings.word_embeddings.weight
        # (+4, -4) on a pair of dimensions: mean 0, variance 1 over 32 dimensions.
        emb[:, 0], emb[:, 1] = 4.0, -4.0
        for pieces, dim in (((JAILBREAK_TRIGGER,), 2), ((INJECTION_TRIGGER,), 4), ((), 6)):
            rows = ids([f"\u2581{p}" for p in pieces] + list(pieces)) if pieces else [tokenizer.cls_token_id]
            for row in rows:
                emb[row] = 0.0
                emb[row, dim], emb[row, dim + 1] = 4.0, -4.0
        attention = model.deberta.encoder.layer[0].attention
        attention.self.query_proj.weight[0, 6] = 2.5  # [CLS] asks ...
        attention.self.key_proj.weight[0, 2] = 2.5  # ... for a jailbreak trigger
        attention.self.key_proj.weight[0, 4] = 2.5  # ... or an injection trigger
        attention.self.value_proj.weight[0, 2] = 1.0
        attention.self.value_proj.weight[1, 4] = 1.0
        out = attention.output.dense.weight
        out[8, 0], out[9, 0], out[10, 1], out[11, 1] = 1.0, -1.0, 1.0, -1.0
        pooler = model.pooler.dense
        pooler.weight[0, 8], pooler.weight[1, 10], pooler.bias[2] = 2.0, 2.0, 1.0
        classifier = model.classifier.weight
        classifier[0, 2] = 8.0  # benign: a constant
        if binary:
            classifier[1, 0], classifier[1, 1] = PG_TRIGGER_WEIGHT, PG_TRIGGER_WEIGHT
        else:
            classifier[1, 1], classifier[2, 0] = PG_TRIGGER_WEIGHT, PG_TRIGGER_WEIGHT
    model.eval()
    return model, tokenizer
