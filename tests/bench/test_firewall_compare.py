"""Our Prompt Guard scanner against LlamaFirewall's (through the HfFolder shim) on a text longer than 512 tokens."""

from __future__ import annotations

from bench.firewall import compare


def test_whole_text_versus_first_512_tokens(bench_models) -> None:
    result = compare(bench_models.prompt_guard_2, words=600, repeats=1)
    assert result["text_tokens"] > 600
    ours, theirs = result["ours"], result["llamafirewall"]
    assert ours["coverage"] == 1.0 and ours["windows"] > 1
    assert theirs["coverage"] < 1.0 and theirs["windows"] == 1
    assert ours["caught"] and not theirs["caught"]  # the trigger sits at 90% of the text
