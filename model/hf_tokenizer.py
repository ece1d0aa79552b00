"""The Llama 3 (or Llama 4) tokenizer in Hugging Face form, built from llama-models' `tokenizer.model`.

Used to save tiny checkpoints that load with `AutoTokenizer` exactly like a real Llama 3.1 repository. The special
tokens must be added after conversion, one by one in id order (128000...): handing them to the converter assigns
wrong ids (`<|eot_id|>` came out as 128001). Note that a Hugging Face tokenizer always matches special-token text,
so it must never encode untrusted text; `model/tokenizer.py` is the encoder for prompts.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

from model.hf_import import transformers_names
from model.tokenizer import (  # one definition of Meta's specials and split pattern (re-exported)
    NUM_BASE_TOKENS as NUM_BASE_TOKENS,
)
from model.tokenizer import PAT_STR as PAT_STR
from model.tokenizer import STOP_TOKENS as STOP_TOKENS
from model.tokenizer import VOCAB_SIZE as VOCAB_SIZE
from model.tokenizer import default_tokenizer_model as family_tokenizer_model
from model.tokenizer import special_token_names as special_token_names
from model.tokenizer_specs import spec_for

BOS = "<|begin_of_text|>"
# `eos_token` is the end of an assistant turn, as in Meta's HF repository.
EOS = "<|eot_id|>"
PAD = "<|finetune_right_pad_id|>"
PADS = {"llama3": PAD, "llama4": "<|finetune_right_pad|>"}  # each family's pad token, as in Meta's repositories


def default_tokenizer_model() -> Path:
    """The tiktoken ranks file shipped with the `llama-models` package."""
    import llama_models.llama3.tokenizer as meta_tokenizer

    return Path(meta_tokenizer.__file__).parent / "tokenizer.model"


def build_hf_tokenizer(tokenizer_model: Path | None = None, family: str = "llama3") -> PreTrainedTokenizerFast:
    """Convert Meta's tiktoken ranks into a fast tokenizer with the family's special tokens after the ranks (Llama 3:
    256 at 128000..128255; Llama 4: 2,048 at 200000..202047)."""
    from tokenizers import AddedToken, processors
    from transformers.convert_slow_tokenizer import TikTokenConverter

    (PreTrainedTokenizerFast,) = transformers_names("PreTrainedTokenizerFast")

    spec = spec_for(family)
    path = Path(tokenizer_model) if tokenizer_model is not None else family_tokenizer_model(family)
    if not path.is_file():
        raise FileNotFoundError(f"{family} tokenizer ranks not found: {path}")
    backend = TikTokenConverter(vocab_file=str(path), pattern=spec.pat_str).converted()
    base_size = backend.get_vocab_size()
    if base_size != spec.num_base_tokens:
        raise ValueError(f"{path}: expected {spec.num_base_tokens} BPE ranks, found {base_size}")
    specials = list(spec.special_names)
    backend.add_special_tokens([AddedToken(name, normalized=False, special=True) for name in specials])
    for offset, name in enumerate(specials):
        token_id = backend.token_to_id(name)
        if token_id != spec.num_base_tokens + offset:
            raise ValueError(f"special token {name} got id {token_id}, expected {spec.num_base_tokens + offset}")
    # Like Meta's Hugging Face repositories: tokenizer(text) prepends <|begin_of_text|>.
    bos_id = spec.num_base_tokens
    backend.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{BOS}:0 $A:0",
                pair=f"{BOS}:0 $A:0 {BOS}:1 $B:1",
                special_tokens=[(BOS, bos_id)],
            ),
        ]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=spec.eot,
        pad_token=PADS[family],
        model_max_length=131_072,
        clean_up_tokenization_spaces=False,
    )


@cache
def _cached_tokenizer(tokenizer_model: str, family: str) -> PreTrainedTokenizerFast:
    return build_hf_tokenizer(Path(tokenizer_model), family)


def save_hf_tokenizer(directory: Path, tokenizer_model: Path | None = None, family: str = "llama3") -> None:
    """Write tokenizer.json and tokenizer_config.json, loadable by `AutoTokenizer` (conversion cached per process)."""
    path = Path(tokenizer_model) if tokenizer_model is not None else family_tokenizer_model(family)
    _cached_tokenizer(str(path.resolve()), family).save_pretrained(str(directory))
    _set_tokenizer_class(Path(directory) / "tokenizer_config.json")


def _set_tokenizer_class(config_path: Path) -> None:
    """Name the class as Meta's repositories do, so transformers 4.x loads the files as well as 5.x."""
    import json

    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
