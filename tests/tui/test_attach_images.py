"""Images attached in the chat, over the scripted fake session (the real agent and tiny guards:
test_agent_images.py): sniffed by their bytes, checked when attached (the session's rule and the policy's limits),
sent with the message, shown as a thumbnail line with the verdict of the guards that saw them, replayed as a label
line (the chat's store keeps no pixels), refused at send as an error notice."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fake_session import FakeSession, passed
from rich.style import Style
from tui_helpers import SIZE, command, ready, send, wait_until

from assistant.events import Event, Final, GuardVerdict, Refusal, TokenDelta
from assistant.tui.images import HALF_BLOCK, image_verdict, sniff_image, thumbnail
from assistant.tui.screens.pickers import FilePickerScreen
from assistant.tui.session import Approver
from assistant.tui.transcript import export_markdown, fold_turn, visible_texts
from assistant.tui.widgets.messages import AssistantMessage, ImageView, UserMessage
from model.images import ImageLimits, read_image

NO_EYES = "this policy's guards cannot see images (user_input stage guards: prompt_guard, llama_guard)"


def png(path: Path, size: tuple[int, int] = (40, 20), colour: tuple[int, int, int] | None = None) -> Path:
    """A PNG: a solid colour, or a left-to-right red gradient over blue."""
    from PIL import Image

    image = Image.new("RGB", size, colour or (0, 0, 0))
    if colour is None:
        for x in range(size[0]):
            for y in range(size[1]):
                image.putpixel((x, y), (x * 255 // max(size[0] - 1, 1), 0, 200))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


def notifications(app: Any) -> list[str]:
    return [str(n.message) for n in app._notifications]


def judged_turn(decision: str = "allow") -> Any:
    """Llama Guard sees the images and says `decision` (block: S9); Prompt Guard reads the text only."""

    async def turn(text: str, approve: Approver, images: tuple[str, ...]) -> AsyncIterator[Event]:
        yield passed("user_input", "prompt_guard", 0.002)
        if decision == "block":
            yield GuardVerdict(stage="user_input", guard="llama_guard", decision="block", score=0.99,
                               categories=("S9",), images=images)
            yield Refusal(stage="user_input", message="I can't help with that request.")
            return
        yield GuardVerdict(stage="user_input", guard="llama_guard", decision="allow", score=0.01, images=images)
        yield TokenDelta(text="A gradient.")
        yield Final(text="A gradient.")

    return turn


class ImageSession(FakeSession):
    """The fake, with a turn that names the message's images on Llama Guard's verdict (as the agent does)."""

    decision: str = "allow"

    async def stream(self, text: str, **kwargs: Any) -> AsyncIterator[Event]:  # type: ignore[override]
        images = tuple(image.label for image in kwargs.get("images", ()))
        self.turns.append(lambda text, approve: judged_turn(self.decision)(text, approve, images))
        async for event in super().stream(text, **kwargs):
            yield event


def test_images_are_sniffed_by_their_bytes_and_drawn_with_half_blocks(tmp_path: Path) -> None:
    picture = png(tmp_path / "holiday.txt")  # an image whatever its name says
    text = tmp_path / "notes.png"
    text.write_text("not a picture\n", encoding="utf-8")
    webp = tmp_path / "w"
    webp.write_bytes(b"RIFF\x00\x00\x00\x00WEBPVP8 ")
    assert sniff_image(picture) and sniff_image(webp)
    assert not sniff_image(text) and not sniff_image(tmp_path / "missing.png") and not sniff_image(tmp_path)
    link = tmp_path / "link.png"
    link.symlink_to(picture)
    assert not sniff_image(link)  # the text attachment's rule refuses it, naming its target
    image = read_image(picture.read_bytes(), name="holiday.txt", limits=ImageLimits())
    thumb = thumbnail(image)
    assert thumb.plain.split("\n") == [HALF_BLOCK * 16] * 4  # 40x20 -> 16x8 pixels, two a cell
    first, last = (Style.parse(str(thumb.spans[at].style)) for at in (0, 15))  # a style per cell: top on bottom
    assert first.color is not None and first.bgcolor is not None and last.color is not None
    assert first.color.triplet is not None and last.color.triplet is not None
    assert first.color.triplet.red < 40 < 215 < last.color.triplet.red  # the gradient, left to right
    assert first.color.triplet.blue == 200 and first.bgcolor.triplet is not None
    tall = read_image(png(tmp_path / "tall.png", (10, 100)).read_bytes(), name="tall.png", limits=ImageLimits())
    lines = thumbnail(tall).plain.split("\n")
    assert len(lines) == 4 and len(lines[0]) == 1  # the aspect kept: a narrow column
    verdict = GuardVerdict(stage="user_input", guard="llama_guard", decision="block", categories=("S9",))
    assert image_verdict([verdict]) == "✖ blocked S9 (llama_guard)"
    assert image_verdict([]) == "checking…"


async def test_an_image_goes_with_the_message_and_shows_its_verdict(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    picture = png(tmp_path / "gradient.png")
    notes = tmp_path / "notes.txt"
    notes.write_text("Meeting at noon.\n", encoding="utf-8")
    session = ImageSession()
    app = make_app(session)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await command(pilot, f"/attach {picture}")
        await command(pilot, f"/attach {notes}")
        assert [image.label for _, image in app.images] == ["gradient.png (40x20 png)"]
        pending = str(app.query_one("#attachments").render())
        assert "notes.txt" in pending and "gradient.png (40x20 png)" in pending
        await send(pilot, "what is in the picture?")
        assert app.images == [] and not app.query_one("#attachments").display
        [sent] = session.received_images
        assert [(i.name, i.width, i.height, i.data) for i in sent] == [("gradient.png", 40, 20, picture.read_bytes())]
        assert session.received[-1][1][0].name == "notes.txt"  # the text attachment went too
        view = app.query_one(UserMessage).query_one(ImageView)
        assert view.thumb.display and HALF_BLOCK in str(view.thumb.render())
        assert str(view.caption.render()) == "🖼 gradient.png (40x20 png) · ✔ allow (llama_guard)"
        assert [v.guard for v in view.verdicts] == ["llama_guard"]  # Prompt Guard reads no pixels
        assert app.query(AssistantMessage).last().text == "A gradient."
        # replayed: the label line and its verdict, no thumbnail (the store keeps no pixels)
        [(text, events)] = app.store.turns(app.thread_id)
        record = fold_turn(text, events)
        assert "**Attached image `gradient.png (40x20 png)`**" in export_markdown("t", [record])
        assert "gradient.png (40x20 png)" in visible_texts(text, events)
        thread = app.thread_id
        await app.action_new_conversation()
        await app.switch_thread(thread)
        await pilot.pause()
        replayed = app.query_one(UserMessage).query_one(ImageView)
        assert not replayed.thumb.display
        assert str(replayed.caption.render()) == "🖼 gradient.png (40x20 png) · ✔ allow (llama_guard)"


async def test_a_blocked_image_stops_the_message(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    session = ImageSession()
    session.decision = "block"
    app = make_app(session)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await command(pilot, f"/attach {png(tmp_path / 'magenta.png', (8, 8), (255, 0, 255))}")
        await send(pilot, "describe this")
        view = app.query_one(ImageView)
        assert str(view.caption.render()) == "🖼 magenta.png (8x8 png) · ✖ blocked S9 (llama_guard)"
        assert view.has_class("blocked")
        reply = app.query(AssistantMessage).last()
        assert "can't help" in str(reply.notice.render()) and not reply.text


async def test_images_the_session_cannot_take_are_refused_when_attached(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app = make_app(FakeSession(images_refused=NO_EYES))
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await command(pilot, f"/attach {png(tmp_path / 'cat.png')}")
        assert any(f"cat.png: {NO_EYES}" in m for m in notifications(app)), notifications(app)
        assert app.images == [] and not app.query_one("#attachments").display


async def test_images_over_the_limits_are_refused_with_the_limit(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    big = png(tmp_path / "big.png", (300, 300))
    session = FakeSession(image_limits=ImageLimits(max_count=1, max_bytes=big.stat().st_size - 1, max_pixels=5000))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    wide = png(tmp_path / "wide.png", (200, 30))
    app = make_app(session)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        for path, why in ((big, "(images.max_bytes)"), (broken, "broken.png: "), (wide, "(images.max_pixels)")):
            await command(pilot, f"/attach {path}")
            assert any(why in m for m in notifications(app)), (why, notifications(app))
        assert app.images == []
        await command(pilot, f"/attach {png(tmp_path / 'one.png', (4, 4))}")
        await command(pilot, f"/attach {png(tmp_path / 'two.png', (4, 4))}")
        assert any("(images.max_count)" in m for m in notifications(app)), notifications(app)
        assert [image.name for _, image in app.images] == ["one.png"]  # the first stays attached


async def test_images_refused_when_sent_are_an_error_notice(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    session = FakeSession()
    app = make_app(session)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await command(pilot, f"/attach {png(tmp_path / 'cat.png', (6, 6))}")
        assert app.images
        session.images_refused = NO_EYES  # e.g. the agent's own check, on send
        await send(pilot, "look")
        reply = app.query(AssistantMessage).last()
        notice = str(reply.notice.render())
        assert "Error (images): the images were not sent (cat.png (6x6 png))" in notice and NO_EYES in notice
        assert "Traceback" not in notice and session.received == []
        user = app.query_one(UserMessage)
        assert "not sent" in str(user.query_one(ImageView).caption.render())
        assert "its images were refused" in str(user.badge.title)


async def test_the_file_picker_attaches_an_image(make_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    picture = png(tmp_path / "picked.webp.txt", (5, 3))  # a PNG under a misleading name
    app = make_app(FakeSession())
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot)
        await pilot.press("ctrl+o")
        await wait_until(pilot, lambda: isinstance(app.screen, FilePickerScreen), what="the file picker")
        await pilot.press(*str(picture), "enter")
        await wait_until(pilot, lambda: bool(app.images), what="the image")
        assert [image.label for _, image in app.images] == ["picked.webp.txt (5x3 png)"] and app.attachments == []
