"""Guard models load side by side in worker threads (as a policy's stage runners do), round after round, in a fresh
process per Llama Guard checkpoint kind.

Two races this covers, both of which failed every check closed:
- transformers resolves its classes lazily and that is not thread-safe: before model.hf_import, one of the first two
  loads in a process could fail with `ImportError: cannot import name 'AutoModelForCausalLM'` (round 1 of each fresh
  process).
- transformers 5.x builds a model under process-wide patches (`tie_weights` a no-op, torch's default dtype switched):
  a tied checkpoint (Llama Guard 3 1B, Llama 3.2) loaded beside another model kept `lm_head.weight` on the `meta`
  device and failed with `NotImplementedError: Cannot copy out of meta tensor` in 2 fresh processes of 3, before
  model.backends.construction.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROUNDS = 10

# Each round: two Llama Guard loads (checkpoint dtype and bfloat16) and a Prompt Guard load start at one barrier.
# Every model must come back complete: no parameter or buffer on `meta`, tied heads tied, its own dtype, a forward.
SCRIPT = """
import json, sys, threading
import torch
from guards.llama_guard.guard import LlamaGuard
from guards.prompt_guard.guard import PromptGuard

llama_guard_dir, prompt_guard_dir, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
problems = []

def model_problems(name, model, dtype):
    tensors = [*model.named_parameters(remove_duplicate=False), *model.named_buffers()]
    found = [f"{name}: {key} on meta" for key, tensor in tensors if tensor.is_meta]
    found += [f"{name}: {key} is {tensor.dtype}, want {dtype}" for key, tensor in model.named_parameters()
              if tensor.dtype != dtype]
    head = model.get_output_embeddings()
    if model.config.tie_word_embeddings and head is not None and head.weight is not model.get_input_embeddings().weight:
        found.append(f"{name}: lm_head is not tied to the embeddings")
    return found

def llama_guard(dtype):
    guard = LlamaGuard.load(llama_guard_dir, dtype="auto" if dtype == torch.float32 else "bfloat16")
    found = model_problems(f"Llama Guard ({dtype})", guard.model, dtype)
    if not found:
        with torch.inference_mode():
            logits = guard.model(input_ids=torch.tensor([[128000, 9906, 1917]])).logits
        found += [] if torch.isfinite(logits).all() else [f"Llama Guard ({dtype}): non-finite logits"]
    return found

def prompt_guard():
    guard = PromptGuard.load(prompt_guard_dir)
    found = model_problems("Prompt Guard", guard.model, torch.float32)
    score = None if found else guard.score("What is the capital of France?").score
    return found + ([] if score is None or 0.0 <= score <= 1.0 else [f"Prompt Guard: score {score}"])

def run(start, check, round_no):
    start.wait()
    try:
        problems.extend(f"round {round_no}: {p}" for p in check())
    except Exception as exc:  # the test reports any failure of any load
        problems.append(f"round {round_no}: {exc!r}"[:500])

for round_no in range(1, rounds + 1):
    start = threading.Barrier(3)
    checks = [lambda: llama_guard(torch.float32), lambda: llama_guard(torch.bfloat16), prompt_guard]
    threads = [threading.Thread(target=run, args=(start, check, round_no)) for check in checks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
if torch.get_default_dtype() != torch.float32:
    problems.append(f"the default dtype was left at {torch.get_default_dtype()}")
print("RESULT:" + json.dumps(problems))
"""


@pytest.fixture(scope="module")
def tied_llama_guard_dir(tiny_guard_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Llama Guard checkpoint with tied embeddings, as Llama Guard 3 1B ships (no `lm_head.weight` in the file):
    random weights in the tiny architecture, with the tiny guard's tokenizer files."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from model.tiny import tiny_llama_config

    source = tiny_guard_dirs["llama-guard"]
    directory = tmp_path_factory.mktemp("tied-llama-guard")
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(**{**tiny_llama_config(), "tie_word_embeddings": True})).save_pretrained(directory)
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copyfile(source / name, directory / name)
    shutil.copytree(source / "original", directory / "original")
    return directory


@pytest.fixture(scope="module")
def untied_llama_guard_dir(tiny_guard_dirs: dict[str, Path]) -> Path:
    """The tiny Llama Guard (its own output head, as Llama Guard 3 8B ships)."""
    return tiny_guard_dirs["llama-guard"]


@pytest.mark.parametrize("kind", ["tied", "untied"])
def test_guards_load_side_by_side_round_after_round_in_a_fresh_process(
    kind: str, tiny_guard_dirs: dict[str, Path], request: pytest.FixtureRequest
) -> None:
    llama_guard: Path = request.getfixturevalue(f"{kind}_llama_guard_dir")  # built only for its own case
    assert json.loads((llama_guard / "config.json").read_text())["tie_word_embeddings"] == (kind == "tied")
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(llama_guard), str(tiny_guard_dirs["prompt-guard-2"]), str(ROUNDS)],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = [line for line in done.stdout.splitlines() if line.startswith("RESULT:")]
    assert result, done.stdout[-2000:] + done.stderr[-2000:]
    problems = json.loads(result[0].removeprefix("RESULT:"))
    assert problems == [], f"{len(problems)} problems in {ROUNDS} rounds: {problems[:5]}"
