"""Images in the chat over the real agent: the tiny trained guards (the tiny Llama Guard 4 sees images: a solid
magenta (255, 0, 255) image is `unsafe\\nS9`, any other safe), the LangGraph graph with its SQLite threads, and a
scripted main model built with `accepts_images=True` (it stands in for a model that takes images; it reads no
pixels).

- under a Llama Guard 3 policy an image is refused when attached, with the reason (nothing is sent);
- a PNG over the policy's limits, or not an image, is refused naming the limit;
- under a Llama Guard 4 policy a benign image goes with the message, Llama Guard 4's verdict names it and its
  thumbnail line shows `allow`; a magenta one is blocked at user_input and the model never answers.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from test_agent_chat import POLICY, TINY_DIR
from tui_helpers import SIZE, command, finish, submit, wait_until

from assistant.api import Assistant
from assistant.tui.backend import AssistantSession
from assistant.tui.images import HALF_BLOCK
from assistant.tui.widgets.messages import AssistantMessage, ImageView, UserMessage
from model.backends.scripted import ScriptedBackend
from model.images import ImageLimits, read_image

POLICY_LG4 = """\
version: 1
models:
  main: {source: tiny:llama-3.1-instruct, family: llama4, max_new_tokens: 64}
  llama_guard: {source: tiny:llama-guard-4, variant: "4", device: cpu, dtype: float32}
  prompt_guard: {source: tiny:prompt-guard, device: cpu}
llama_guard: {timeout_s: 120}
prompt_guard: {timeout_s: 60}
stages:
  user_input: {llama_guard: {enabled: true}, prompt_guard: {enabled: true, score: jailbreak}}
  model_output: {llama_guard: {enabled: true}, code_shield: {enabled: false}}
audit: {path: audit.jsonl}
images: {max_bytes: 60000}
"""


class SeeingSession(AssistantSession):
    """The real session, its scripted main model one that takes images (ScriptedBackend(accepts_images=True))."""

    def __init__(self, *args: Any, script: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.script = script

    def _build(self) -> Assistant:
        return super()._build().replace(backend=ScriptedBackend(self.script, accepts_images=True))


def session(tmp_path: Path, policy_text: str, *completions: str) -> AssistantSession:
    policy = tmp_path / "policy.yaml"
    policy.write_text(policy_text, encoding="utf-8")
    script = tmp_path / "model.jsonl"
    script.write_text("".join(json.dumps({"completion": c}) + "\n" for c in completions), encoding="utf-8")
    return SeeingSession(policy, model=f"scripted:{script}", tiny_dir=TINY_DIR, db_path=tmp_path / "threads.sqlite",
                         script=script)


def png(path: Path, colour: tuple[int, int, int] | None = None, size: tuple[int, int] = (48, 24)) -> Path:
    """A solid colour, or a photo-like gradient."""
    from PIL import Image

    image = Image.new("RGB", size, colour or (0, 0, 0))
    if colour is None:
        image.putdata([(x * 5 % 256, y * 9 % 256, 90) for y in range(size[1]) for x in range(size[0])])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


async def loaded(pilot: Any) -> None:
    """The whole session loaded (the image rule needs the guards and the main model), on a machine that may be busy."""
    await wait_until(pilot, lambda: pilot.app.loaded, what="the session to load", seconds=240)


async def send(pilot: Any, text: str) -> None:
    before = await submit(pilot, text)
    await wait_until(pilot, lambda: pilot.app.turns_completed > before, what="the turn to finish", seconds=240)
    await finish(pilot, before)


def notifications(app: Any) -> list[str]:
    return [str(n.message) for n in app._notifications]


def reply(app: Any) -> AssistantMessage:
    return app.query(AssistantMessage).last()


async def test_an_image_under_llama_guard_3_is_refused_when_attached(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = make_app(session(tmp_path, POLICY, "Fine.<|eot_id|>"))
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await command(pilot, f"/attach {png(tmp_path / 'cat.png')}")
        assert any("cat.png: this policy's guards cannot see images" in m and "Llama Guard 4" in m
                   for m in notifications(app)), notifications(app)
        assert app.images == [] and not app.query_one("#attachments").display
        await send(pilot, "hello")  # the message alone goes, without the image
        assert reply(app).text == "Fine."
        history = await app.session.assistant.history(app.thread_id)
        assert [m.get("images") for m in history if m["role"] == "user"] in ([None], [[]])
        # an image that got past the attach-time check (here put in by hand) is refused on send by the session, before
        # the attached file is judged or stored: an error notice, nothing sent
        notes = tmp_path / "notes.txt"
        notes.write_text("Meeting at noon.\n", encoding="utf-8")
        await command(pilot, f"/attach {notes}")
        cat = tmp_path / "cat.png"
        app.images = [(cat, read_image(cat.read_bytes(), name="cat.png", limits=ImageLimits()))]
        await send(pilot, "look at this")
        notice = str(reply(app).notice.render())
        assert notice.startswith("Error (images): the images were not sent (cat.png (48x24 png)): this policy's guards")
        assert "Traceback" not in notice and "not sent" in str(app.query(UserMessage).last().badge.title)
        assert await app.session.assistant.history(app.thread_id) == history  # neither the file nor the message


async def test_images_under_llama_guard_4(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    benign = png(tmp_path / "garden.png")
    magenta = png(tmp_path / "swatch.png", (255, 0, 255))
    big = png(tmp_path / "big.png")
    big.write_bytes(big.read_bytes() + bytes(70_000))  # over the policy's images.max_bytes, 60,000
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really" * 10)
    app = make_app(session(tmp_path, POLICY_LG4, "A garden.<|eot|>", "Never used.<|eot|>"))
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        for path, why in ((big, "over the limit of 60,000 bytes (images.max_bytes)"), (fake, "fake.png: ")):
            await command(pilot, f"/attach {path}")
            assert any(why in m for m in notifications(app)), (why, notifications(app))
        assert app.images == []
        # a benign image: judged with the message by Llama Guard 4, sent, answered
        await command(pilot, f"/attach {benign}")
        assert [image.label for _, image in app.images] == ["garden.png (48x24 png)"]
        await send(pilot, "what is in this picture?")
        assert reply(app).text == "A garden."
        view = app.query(UserMessage).last().query_one(ImageView)
        assert view.thumb.display and HALF_BLOCK in str(view.thumb.render())
        assert str(view.caption.render()) == "🖼 garden.png (48x24 png) · ✔ allow (llama_guard)"
        assert [(v.guard, v.decision) for v in view.verdicts] == [("llama_guard", "allow")]
        # a magenta image: blocked at user_input, the model never answers
        await command(pilot, f"/attach {magenta}")
        await send(pilot, "and this one?")
        view = app.query(UserMessage).last().query_one(ImageView)
        assert str(view.caption.render()) == "🖼 swatch.png (48x24 png) · ✖ blocked S9 (llama_guard)"
        assert not reply(app).text and "blocked at user_input" in str(reply(app).notice.render())
        assert app.session.assistant.backend.remaining == 1  # the second completion was never asked for
        history = await app.session.assistant.history(app.thread_id)
        assert [m["content"] for m in history] == ["what is in this picture?", "A garden."]
