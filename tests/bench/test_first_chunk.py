"""`agent.streaming_moderation.first_chunk_chars`: the first check comes after fewer characters, the later ones
`chunk_chars` apart (each at a word boundary)."""

from __future__ import annotations

import asyncio
import itertools

from assistant.agent.answer_stream import AnswerStream


async def test_first_chunk_is_smaller_then_chunk_chars_apart() -> None:
    checked: list[str] = []

    async def check(text: str) -> object:
        checked.append(text)
        return type("J", (), {"passed": True, "results": ()})()

    stream = AnswerStream(check, lambda event: None, lambda judgement: None, moderated=True, streaming=True,
                          code_shield=False, chunk_chars=40, first_chunk_chars=12)  # fmt: skip
    text = " ".join(["word"] * 30)  # 149 characters
    stream._advance(text, final=False)
    await asyncio.sleep(0)
    ends = [len(t) for t in checked]
    assert ends[0] <= 12 and all(b - a <= 40 for a, b in itertools.pairwise(ends))
    assert all(t.endswith(" ") for t in checked) and len(ends) == 4
    await stream.abandon()


def test_first_chunk_defaults_to_chunk_chars() -> None:
    stream = AnswerStream(lambda text: None, lambda e: None, lambda j: None, moderated=True, streaming=True,  # type: ignore[arg-type,return-value]
                          code_shield=False, chunk_chars=40)  # fmt: skip
    assert stream.first_chunk_chars == 40
