"""Tiny random Llama checkpoints: real architecture and files, idempotent and atomic builds."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from model import tiny, versioned_dir


def test_checkpoint_is_a_real_llama_31_layout(tiny_llama_dir: Path) -> None:
    config = json.loads((tiny_llama_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert config["vocab_size"] == 128_256
    assert config["eos_token_id"] == [128_001, 128_008, 128_009]
    assert config["tiny_note"] == "random weights, smoke tests only"
    assert "random weights, smoke tests only" in (tiny_llama_dir / "README.md").read_text().lower()
    assert (tiny_llama_dir / "original" / "tokenizer.model").is_file()
    assert (tiny_llama_dir / "model.safetensors").stat().st_size < 64 * 2**20
    assert tiny.is_built(tiny_llama_dir)


def test_loads_with_from_pretrained(tiny_llama_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers <= 4
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([[128000, 9906]]), logits_to_keep=1).logits
    assert logits.shape == (1, 1, 128_256)


def test_build_is_idempotent(tiny_llama_dir: Path) -> None:
    weights = tiny_llama_dir / "model.safetensors"
    before = weights.stat().st_mtime_ns
    started = time.perf_counter()
    assert tiny.build_tiny_llama(tiny_llama_dir) == tiny_llama_dir
    assert time.perf_counter() - started < 0.5  # skipped, not rebuilt
    assert weights.stat().st_mtime_ns == before
    assert tiny.ensure_tiny_model(tiny.MAIN_MODEL_NAME, tiny_llama_dir.parent) == tiny_llama_dir


def _atomic_build(target: Path, write) -> None:
    """The rename-into-place step alone (no lock), as racing builders would run it."""
    versioned_dir._atomic_build(target, write, marker=tiny.MARKER, version=tiny.TINY_VERSION)


def test_concurrent_builders_never_expose_partial_files(tmp_path: Path) -> None:
    target = tmp_path / "model"
    seen_partial: list[bool] = []

    def slow_writer(directory: Path) -> None:
        (directory / "part1").write_text("1")
        time.sleep(0.2)
        (directory / "part2").write_text("2")

    def watcher() -> None:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if target.exists():
                seen_partial.append(not (target / "part2").exists() or not tiny.is_built(target))
            time.sleep(0.005)

    threads = [threading.Thread(target=_atomic_build, args=(target, slow_writer)) for _ in range(3)]
    threads.append(threading.Thread(target=watcher))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tiny.is_built(target)
    assert sorted(p.name for p in target.iterdir()) == [tiny.MARKER, "part1", "part2"]
    assert seen_partial and not any(seen_partial)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary directories left behind


def test_stale_version_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / tiny.MARKER).write_text("tiny-llama-0\n")
    (target / "old").write_text("stale")
    _atomic_build(target, lambda d: (d / "new").write_text("fresh"))
    assert sorted(p.name for p in target.iterdir()) == [tiny.MARKER, "new"]


def test_unknown_tiny_model_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"llama-3\.1-instruct"):
        tiny.ensure_tiny_model("no-such-model", tmp_path)


def test_dev_tiny_models_command(tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    import assistant.dev.tiny_models
    from assistant.cli.main import cli

    # The guard models are another package's (tests/guards covers them); this checks the command's wiring only.
    calls: list[Path] = []
    monkeypatch.setattr(assistant.dev.tiny_models, "build_tiny_guards", lambda d: calls.append(d) or {})
    result = CliRunner().invoke(cli, ["dev", "tiny-models", str(tiny_llama_dir.parent), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {tiny.MAIN_MODEL_NAME: str(tiny_llama_dir),
                                         tiny.LLAMA4_VISION_NAME: str(tiny_llama_dir.parent / tiny.LLAMA4_VISION_NAME)}
    assert calls == [tiny_llama_dir.parent]
