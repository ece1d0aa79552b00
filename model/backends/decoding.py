"""The steps of local decoding, as small functions (the way gpt-fast splits them): `prefill` a prompt, `decode_one`
token, `pick_token` from the logits, and `IncrementalDecoder` for the ids-to-text stream.

`TransformersBackend` composes them in its loop; the benchmark's teacher-forced backend swaps only the token choice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from model.backends.base import GenerationParams
from model.completion import SpecialToken

TokenChooser = Callable[[Any], int]  # logits of the last position -> the next token id

# A UTF-8 character is at most 4 bytes and every byte-level token holds at least one, so text still ending in an
# incomplete character after this many pending tokens is invalid bytes, not a character waiting for its rest.
MAX_PENDING_TOKENS = 4


def prefill(model: Any, cache_arg: str, ids: list[int], cache: Any, pixel_values: Any = None) -> tuple[Any, Any]:
    """Run the prompt ids the cache does not cover; returns (model output with last-position logits, cache).
    `pixel_values`: the tiles of the images whose `<|patch|>` tokens are among `ids` (a vision model only)."""
    import torch

    device = model.get_input_embeddings().weight.device
    images: dict[str, Any] = {}
    if pixel_values is not None:
        images["pixel_values"] = pixel_values.to(device=device, dtype=model.vision_model.dtype)
    out = model(input_ids=torch.tensor([ids], device=device), use_cache=True, logits_to_keep=1, **{cache_arg: cache},
                **images)
    return out, output_cache(out)


def decode_one(model: Any, cache_arg: str, token: int, cache: Any) -> Any:
    """One decode step: feed `token`, extend the cache in place; returns the model output (next logits)."""
    import torch

    device = model.get_input_embeddings().weight.device
    return model(input_ids=torch.tensor([[token]], device=device), use_cache=True, logits_to_keep=1,
                 **{cache_arg: cache})


def output_cache(out: Any) -> Any:
    cache = out.get("cache") if hasattr(out, "get") else None
    return cache if cache is not None else out.past_key_values


def sampler(params: GenerationParams) -> TokenChooser:
    """The token choice of ordinary generation: greedy, or seeded temperature + top-p sampling."""
    generator = None
    if params.seed is not None:
        import torch

        generator = torch.Generator(device="cpu").manual_seed(params.seed)
    return lambda logits: pick_token(logits, params, generator)


def pick_token(logits: Any, params: GenerationParams, generator: Any) -> int:
    """Greedy, or temperature + nucleus (top-p) sampling by inverse CDF (torch.multinomial is slow on CPU here)."""
    import torch

    if params.greedy:
        return int(torch.argmax(logits).item())
    probs = torch.softmax(logits.float().cpu() / params.temperature, dim=-1)
    candidates = torch.arange(probs.shape[-1])
    if params.top_p < 1.0:
        # The nucleus of a trained model almost always lies in its top 1,024 tokens; sort everything only if not.
        top, order = torch.topk(probs, min(1024, probs.shape[-1]))
        if float(top.sum()) < params.top_p:
            top, order = torch.sort(probs, descending=True)
        before = torch.cumsum(top, dim=-1) - top  # mass strictly above each token
        keep = before < params.top_p  # always keeps the most likely token
        probs, candidates = top[keep], order[keep]
    cdf = torch.cumsum(probs, dim=-1)
    draw = torch.rand((), generator=generator) * cdf[-1]
    index = int(torch.searchsorted(cdf, draw, right=True).clamp(max=cdf.shape[-1] - 1).item())
    return int(candidates[index].item())


def special_token_ids(tokenizer: Any) -> dict[int, str]:
    """Id -> text of every special token of a Hugging Face tokenizer (Llama 3: the 256 ids from 128000)."""
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    specials = {int(i): str(t.content) for i, t in added.items() if getattr(t, "special", False)}
    for token_id in getattr(tokenizer, "all_special_ids", ()) or ():
        specials.setdefault(int(token_id), tokenizer.convert_ids_to_tokens(int(token_id)))
    return specials


class IncrementalDecoder:
    """Generated ids to text deltas in constant work per token.

    Plain ids are decoded over a small window - the ids of the last emitted delta (context, for tokenizers whose
    decoding depends on the previous token) plus the pending ones - and text is emitted once it no longer ends in an
    incomplete UTF-8 character (at most `MAX_PENDING_TOKENS` held). A special id is emitted as a `SpecialToken`
    delta of its own, so consumers know the model generated it as a control token.
    """

    def __init__(self, tokenizer: Any) -> None:
        self._tokenizer = tokenizer
        self._specials = special_token_ids(tokenizer)
        self._ids: list[int] = []  # window: context ids, then pending ids
        self._read = 0  # ids before this index in the window were already emitted
        self.decoded_ids = 0  # ids passed to the tokenizer's decode so far (the cost; tests bound it)

    def _decode(self, ids: list[int]) -> str:
        self.decoded_ids += len(ids)
        return self._tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def push(self, token: int, *, final: bool = False) -> list[str]:
        """The deltas this token completes (possibly none; everything pending when `final`)."""
        if token in self._specials:
            return [*self.flush(), SpecialToken(self._specials[token])]
        self._ids.append(token)
        context = self._decode(self._ids[: self._read]) if self._read else ""
        text = self._decode(self._ids)
        pending = len(self._ids) - self._read
        if not final and text.endswith("\ufffd") and pending < MAX_PENDING_TOKENS:
            return []
        if not text.startswith(context):  # a tokenizer that rewrites earlier text: emit this token's text alone
            context, text = "", self._decode(self._ids[self._read :])
        delta = text[len(context) :]
        self._ids, self._read = self._ids[self._read :], len(self._ids) - self._read
        return [delta] if delta else []

    def flush(self) -> list[str]:
        """Whatever is pending, even an incomplete character (written as U+FFFD)."""
        if len(self._ids) == self._read:
            self._ids, self._read = [], 0
            return []
        context = self._decode(self._ids[: self._read]) if self._read else ""
        text = self._decode(self._ids)
        delta = text[len(context) :] if text.startswith(context) else self._decode(self._ids[self._read :])
        self._ids, self._read = [], 0
        return [delta] if delta else []
