"""Images a user attaches: read from untrusted bytes under limits, before anything decodes them in full.

An image is checked in this order, each step refusing with an `ImageError` that names the image and the limit:
its size in bytes, its format (sniffed from the bytes by Pillow, never taken from a file name or a media type
someone wrote), then its width x height from the header alone, so that a decompression bomb (a small file that
decodes to billions of pixels) is refused before decoding starts; only then is it decoded, once, to prove it is
whole. What travels on (to the guards, the prompt and the thread store) is `ImageData`: the bytes as received plus
what was learned from them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import warnings
from dataclasses import dataclass
from typing import Any

FORMATS: tuple[str, ...] = ("png", "jpeg", "webp")  # what Llama 4's preprocessing is documented for
MEDIA_TYPES: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


class ImageError(ValueError):
    """The image cannot be used; the message names the image and why."""


@dataclass(frozen=True)
class ImageLimits:
    """Per-image and per-message limits (the policy's `images:` section)."""

    max_count: int = 4
    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000  # width x height: a 12-megapixel phone photo passes, a bomb does not
    formats: tuple[str, ...] = FORMATS


@dataclass(frozen=True)
class ImageData:
    """One image, checked: the bytes as received and what was read from them."""

    name: str  # as shown to people and named in verdicts (a file name, or `image-N` for inline data)
    data: bytes
    format: str  # one of FORMATS
    width: int
    height: int
    sha256: str

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    @property
    def label(self) -> str:
        """How events and messages name it: `cat.png (640x480 png)`."""
        return f"{self.name} ({self.width}x{self.height} {self.format})"

    def to_dict(self) -> dict[str, Any]:
        """The stored form (JSON-safe) of a thread message's image."""
        return {"name": self.name, "format": self.format, "width": self.width, "height": self.height,
                "sha256": self.sha256, "data": base64.b64encode(self.data).decode("ascii")}

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> ImageData:
        """An image read back from the thread store; the bytes must still hash to the stored digest."""
        data = base64.b64decode(stored["data"])
        digest = hashlib.sha256(data).hexdigest()
        if digest != stored["sha256"]:
            raise ImageError(f"{stored['name']}: stored image bytes do not match their sha256")
        return cls(name=str(stored["name"]), data=data, format=str(stored["format"]), width=int(stored["width"]),
                   height=int(stored["height"]), sha256=digest)


def read_image(data: bytes, *, name: str, limits: ImageLimits) -> ImageData:
    """Check untrusted image bytes against `limits` (see the module docstring) and return them as ImageData."""
    from PIL import Image, ImageFile, UnidentifiedImageError

    # Pillow's process-wide switch that decodes truncated files as if whole; some libraries turn it on at import
    # (llama-models' preprocessing does): a damaged image must fail here, whoever imported what.
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    if len(data) > limits.max_bytes:
        raise ImageError(f"{name}: {len(data):,} bytes is over the limit of {limits.max_bytes:,} bytes "
                         "(images.max_bytes)")
    if not data:
        raise ImageError(f"{name}: the image is empty")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))  # reads the header only
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not an image in a format this assistant reads "
                             f"({', '.join(limits.formats)})") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageError(f"{name}: refused before decoding: {exc}") from None
        except (OSError, SyntaxError, ValueError) as exc:  # a header cut short or malformed
            raise ImageError(f"{name}: the image data is damaged ({exc})") from None
        with image:
            fmt = (image.format or "").lower()
            if fmt not in limits.formats:
                raise ImageError(f"{name}: {fmt or 'this'} images are not accepted; accepted formats: "
                                 f"{', '.join(limits.formats)} (images.formats)")
            width, height = image.size
            if width < 1 or height < 1:
                raise ImageError(f"{name}: the image has no pixels ({width}x{height})")
            if width * height > limits.max_pixels:
                raise ImageError(f"{name}: {width}x{height} is {width * height:,} pixels, over the limit of "
                                 f"{limits.max_pixels:,} (images.max_pixels); refused before decoding")
            if getattr(image, "n_frames", 1) > 1:
                raise ImageError(f"{name}: animated images are not accepted")
            try:
                image.load()  # decode once: a truncated or corrupt image fails here, not inside a guard
            except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
                    Image.DecompressionBombWarning) as exc:
                raise ImageError(f"{name}: the image data is damaged ({exc})") from None
    return ImageData(name=name, data=data, format=fmt, width=width, height=height,
                     sha256=hashlib.sha256(data).hexdigest())


def read_images(items: list[tuple[str, bytes]], limits: ImageLimits) -> tuple[ImageData, ...]:
    """Check a message's images: their count first, then each one."""
    if len(items) > limits.max_count:
        raise ImageError(f"{len(items)} images in one message is over the limit of {limits.max_count} "
                         "(images.max_count)")
    return tuple(read_image(data, name=name, limits=limits) for name, data in items)


def decode_rgb(image: ImageData) -> Any:
    """The image as an RGB `PIL.Image` (alpha composited on white, as photos are shown)."""
    from PIL import Image

    with Image.open(io.BytesIO(image.data)) as opened:
        opened.load()
        if opened.mode in ("RGBA", "LA") or (opened.mode == "P" and "transparency" in opened.info):
            rgba = opened.convert("RGBA")
            canvas = Image.new("RGB", rgba.size, (255, 255, 255))
            canvas.paste(rgba, mask=rgba.getchannel("A"))
            return canvas
        return opened.convert("RGB")


def data_url_bytes(url: str, *, name: str) -> bytes:
    """The bytes of a `data:image/...;base64,...` URL. Remote URLs are refused: fetching them would let a request
    make this server reach any address (and the image could change between the guard's look and the model's)."""
    if not url.startswith("data:"):
        scheme = url.split(":", 1)[0] if ":" in url else "no scheme"
        raise ImageError(f"{name}: only data: URLs are accepted for images ({scheme} URL refused: the server does "
                         "not fetch remote images); send the image inline as data:image/png;base64,...")
    header, sep, payload = url[5:].partition(",")
    if not sep or not header.endswith(";base64"):
        raise ImageError(f"{name}: a data: URL for an image must be base64 (data:image/png;base64,...)")
    if not header.startswith("image/"):
        raise ImageError(f"{name}: the data: URL is {header.split(';')[0] or 'untyped'}, not an image")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(f"{name}: the data: URL's base64 is malformed") from None
