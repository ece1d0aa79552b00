"""Images attached to the next message in the chat (`/attach PATH`, ctrl+o), as the chat tells and shows them.

A file is an image when its first bytes say so (PNG, JPEG, WebP; GIF too, so that the policy's format rule names it),
never because of its name. Its checks are the agent's (`assistant.images`: the policy's limits and the rule that
only guards that see images may judge them), asked through the session when it is attached and again when it is
sent. The user's message shows one line per image: a small colour thumbnail drawn with half blocks (`▀`, the top
pixel as the foreground and the bottom one as the background) and the image's label with the verdict of the guards
that saw it. Pure functions; no textual import.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.text import Text

from assistant.events import GuardVerdict
from assistant.tui.transcript import summarize
from model.images import ImageData, decode_rgb

THUMB_COLS = 16  # cells
THUMB_ROWS = 4  # cells: two pixels each
HALF_BLOCK = "▀"
_MAGIC: tuple[tuple[int, bytes], ...] = ((0, b"\x89PNG\r\n\x1a\n"), (0, b"\xff\xd8\xff"), (0, b"GIF87a"),
                                         (0, b"GIF89a"), (8, b"WEBP"))


def sniff_image(path: Path) -> bool:
    """Whether the file's first bytes are an image's (a WebP is `RIFF....WEBP`). A link, a folder or an unreadable
    file is not: the text attachment's checks refuse it with the reason."""
    try:
        if path.is_symlink() or not path.is_file():
            return False
        with path.open("rb") as file:
            head = file.read(12)
    except OSError:
        return False
    if head[8:12] == b"WEBP" and not head.startswith(b"RIFF"):
        return False
    return any(head[at:at + len(magic)] == magic for at, magic in _MAGIC)


def thumbnail(image: ImageData, cols: int = THUMB_COLS, rows: int = THUMB_ROWS) -> Text:
    """The image downscaled into at most `cols` x `rows` cells of `▀` (aspect kept: a cell is about as tall as two
    columns are wide, so each cell holds two square pixels, one above the other)."""
    from PIL import Image

    rgb = decode_rgb(image)
    scale = min(cols / rgb.width, rows * 2 / rgb.height)
    width = max(1, min(cols, round(rgb.width * scale)))
    height = max(2, min(rows * 2, round(rgb.height * scale)))
    height += height % 2  # whole cells
    small = rgb.resize((width, height), Image.Resampling.BOX)
    pixels = small.load()
    text = Text(no_wrap=True, overflow="crop")
    for y in range(0, height, 2):
        if y:
            text.append("\n")
        for x in range(width):
            top, bottom = pixels[x, y], pixels[x, y + 1]
            text.append(HALF_BLOCK, style=f"rgb({top[0]},{top[1]},{top[2]}) on rgb({bottom[0]},{bottom[1]},"
                                          f"{bottom[2]})")
    return text


def image_verdict(verdicts: Sequence[GuardVerdict]) -> str:
    """What the guards that saw an image said: `✔ allow (llama_guard)`, `✖ blocked S9 (llama_guard)`."""
    state = summarize(verdicts)
    guards = ", ".join(dict.fromkeys(v.guard for v in verdicts))
    if state == "none":
        return "checking…"
    if state == "blocked":
        categories = " ".join(dict.fromkeys(c for v in verdicts for c in v.categories))
        errors = "guard error" if any(v.error for v in verdicts) and not categories else ""
        detail = " ".join(part for part in (categories, errors) if part)
        return f"✖ blocked{' ' + detail if detail else ''} ({guards})"
    if state == "warned":
        return f"⚠ {'/'.join(dict.fromkeys(v.decision for v in verdicts if v.decision != 'allow'))} ({guards})"
    return f"✔ allow ({guards})"


def pending_line(names: Sequence[str], images: Sequence[ImageData]) -> str:
    """The line above the input: what goes with the next message."""
    items = [*names, *(f"🖼 {image.label}" for image in images)]
    return f"📎 attached to your next message: {', '.join(items)}" if items else ""
