"""Untrusted image bytes: every limit refuses with a message naming the image and the limit, a decompression bomb
before any decoding, and what passes round-trips through the thread store unchanged."""

from __future__ import annotations

import base64
import io
import time

import pytest
from PIL import Image

from model.images import ImageData, ImageError, ImageLimits, data_url_bytes, decode_rgb, read_image, read_images

LIMITS = ImageLimits()


def encoded(size: tuple[int, int] = (64, 48), colour: tuple[int, ...] = (255, 0, 255), fmt: str = "PNG",
            mode: str = "RGB", **save: object) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, colour).save(out, fmt, **save)
    return out.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_each_accepted_format_is_read_with_its_size_and_digest(fmt: str) -> None:
    data = encoded(fmt=fmt)
    image = read_image(data, name="photo", limits=LIMITS)
    assert (image.format, image.width, image.height) == (fmt.lower(), 64, 48)
    assert image.media_type == f"image/{fmt.lower()}"
    assert image.label == f"photo (64x48 {fmt.lower()})"
    assert decode_rgb(image).size == (64, 48)


def test_a_decompression_bomb_is_refused_from_its_header_before_decoding() -> None:
    # 20,000 x 20,000 one-bit pixels compress to ~50 kB and would decode to 400 million pixels
    bomb = encoded((20_000, 20_000), 0, mode="1")
    assert len(bomb) < 100_000
    started = time.perf_counter()
    with pytest.raises(ImageError, match=r"bomb.png: refused before decoding|over the limit"):
        read_image(bomb, name="bomb.png", limits=LIMITS)
    assert time.perf_counter() - started < 0.5  # the header only: decoding it takes seconds
    with pytest.raises(ImageError, match=r"4,000x4,000|16,000,000 pixels, over the limit of 1,000,000 "
                                         r"\(images.max_pixels\); refused before decoding"):
        read_image(encoded((4000, 4000), 0, mode="1"), name="big.png", limits=ImageLimits(max_pixels=1_000_000))


@pytest.mark.parametrize(("data", "limits", "problem"), [
    (b"", LIMITS, "the image is empty"),
    (b"not an image at all", LIMITS, "not an image in a format this assistant reads"),
    (encoded(fmt="GIF", mode="P", colour=1), LIMITS, "not an image in a format|gif images are not accepted"),
    (encoded(fmt="JPEG"), ImageLimits(formats=("png",)), "jpeg images are not accepted; accepted formats: png "
                                                         r"\(images.formats\)"),
    (encoded(), ImageLimits(max_bytes=50), r"bytes is over the limit of 50 bytes \(images.max_bytes\)"),
    (encoded((300, 300), colour=(1, 2, 3))[:-40], LIMITS, "the image data is damaged"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", LIMITS, "the image data is damaged"),
    (b"\x89PNG\r\n\x1a\n" + b"junk" * 10, LIMITS, "the image data is damaged|not an image"),
])
def test_bad_images_are_refused_naming_the_problem(data: bytes, limits: ImageLimits, problem: str) -> None:
    with pytest.raises(ImageError, match=problem):
        read_image(data, name="x.img", limits=limits)


def test_an_animated_image_is_refused() -> None:
    out = io.BytesIO()
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(out, "WEBP", save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError, match="animated images are not accepted"):
        read_image(out.getvalue(), name="anim.webp", limits=LIMITS)


def test_the_count_limit_is_checked_first() -> None:
    items = [(f"i{n}.png", encoded()) for n in range(3)]
    assert len(read_images(items, ImageLimits(max_count=3))) == 3
    with pytest.raises(ImageError, match=r"3 images in one message is over the limit of 2 \(images.max_count\)"):
        read_images(items, ImageLimits(max_count=2))


def test_the_stored_form_round_trips_and_tampered_bytes_are_refused() -> None:
    image = read_image(encoded(), name="m.png", limits=LIMITS)
    stored = image.to_dict()
    assert ImageData.from_dict(stored) == image
    other = base64.b64encode(encoded(colour=(0, 0, 0))).decode()
    with pytest.raises(ImageError, match="do not match their sha256"):
        ImageData.from_dict({**stored, "data": other})


def test_transparent_images_are_composited_on_white() -> None:
    image = read_image(encoded(mode="RGBA", colour=(0, 0, 0, 0)), name="clear.png", limits=LIMITS)
    assert decode_rgb(image).getpixel((0, 0)) == (255, 255, 255)


def test_data_urls_only_and_well_formed() -> None:
    png = encoded()
    assert data_url_bytes("data:image/png;base64," + base64.b64encode(png).decode(), name="image-1") == png
    for url, problem in [
        ("https://example.com/cat.png", "only data: URLs are accepted for images \\(https URL refused"),
        ("file:///etc/passwd", "file URL refused"),
        ("data:image/png,rawbytes", "must be base64"),
        ("data:text/plain;base64,aGk=", "is text/plain, not an image"),
        ("data:image/png;base64,@@@", "base64 is malformed"),
    ]:
        with pytest.raises(ImageError, match=problem):
            data_url_bytes(url, name="image-1")
