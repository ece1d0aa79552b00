"""`agent.streaming_moderation.first_chunk_chars`: the first check comes after fewer characters, the later ones
`chunk_chars` apart (each at a word boundary)."""

from __future__ import annotations

import asyncio
import itertools

from assistant.agent.answer_stream import AnswerStream
from guards.runtime.gate import Judgement


class Gate:
    """An AnswerGate that passes everything and remembers what it checked."""

    def __init__(self) -> None:
        self.checked: list[str] = []

    async def check(self, text: str) -> Judgement:
        self.checked.append(text)
        return Judgement("completion", text, "pass", ())

    def on_judgement(self, judgement: Judgement) -> None:
        pass

    def release(self, text: str) -> None:
        pass


async def test_first_chunk_is_smaller_then_chunk_chars_apart() -> None:
    gate = Gate()
    checked = gate.checked
    stream = AnswerStream(gate, moderated=True, streaming=True, code_shield=False, chunk_chars=40,
                          first_chunk_chars=12)
    text = " ".join(["word"] * 30)  # 149 characters
    stream._advance(text, final=False)
    await asyncio.sleep(0)
    ends = [len(t) for t in checked]
    assert ends[0] <= 12 and all(b - a <= 40 for a, b in itertools.pairwise(ends))
    assert all(t.endswith(" ") for t in checked) and len(ends) == 4
    await stream.abandon()


def test_first_chunk_defaults_to_chunk_chars() -> None:
    stream = AnswerStream(Gate(), moderated=True, streaming=True, code_shield=False, chunk_chars=40)
    assert stream.first_chunk_chars == 40
