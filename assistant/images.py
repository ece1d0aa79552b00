"""The one rule for images a user attaches (every surface asks it: `run --image`, the chat's `/attach`, `serve`'s
`image_url` parts, the Python API; the agent asks it again before its input guard).

An image is taken only when the policy accepts images (`images.enabled`), every stage that judges the user's message
has a guard that sees images (Llama Guard 4 in process: Prompt Guard reads no pixels, and a Llama Guard 3 or a remote
Llama Guard would judge the text alone), and the main model takes images (a Llama 4 checkpoint with its vision
tower). Otherwise the message is refused before any model sees anything, and the message says which part is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from guards.policy.registry import USER_INPUT
from model.images import ImageData, ImageError, ImageLimits, read_image, read_images

__all__ = ["ImageError", "ImagesRefused", "body_allowance", "image_limits", "images_refusal", "read_image_files",
           "refuse_images"]


class ImagesRefused(ValueError):
    """This policy cannot take the images: the message says why (exit 2 in the CLI, 400 in `serve`)."""


def image_limits(policy: Any) -> ImageLimits:
    section = policy.images
    return ImageLimits(max_count=section.max_count, max_bytes=section.max_bytes, max_pixels=section.max_pixels,
                       formats=tuple(section.formats))


def images_refusal(policy: Any, pipeline: Any, backend: Any) -> str | None:
    """Why this policy cannot take images, or None when it can (see the module docstring)."""
    if not policy.images.enabled:
        return "this policy does not accept images (images.enabled: false)"
    enabled = pipeline.enabled_guards(USER_INPUT)
    seeing = pipeline.image_guards(USER_INPUT)
    if not seeing:
        guards = ", ".join(enabled) or "none"
        return (f"this policy's guards cannot see images (user_input stage guards: {guards}); images need Llama "
                "Guard 4 judging in process (models.llama_guard.variant: \"4\", llama_guard enabled on user_input), "
                "so the image was not sent to any model")
    if not backend.accepts_images:
        return (f"the main model ({backend.name}) does not take images; images need a Llama 4 checkpoint with its "
                "vision tower on the transformers backend (models.main.family: llama4), so the image was not sent "
                "to any model")
    return None


def refuse_images(policy: Any, pipeline: Any, backend: Any, images: Sequence[ImageData]) -> None:
    """Raise ImagesRefused when `images` cannot be taken (count included); nothing when there are none."""
    if not images:
        return
    if (why := images_refusal(policy, pipeline, backend)) is not None:
        raise ImagesRefused(why)
    limits = image_limits(policy)
    if len(images) > limits.max_count:
        raise ImagesRefused(f"{len(images)} images in one message is over the limit of {limits.max_count} "
                            "(images.max_count)")
    for image in images:  # ImageData made by hand (the Python API) passes the same checks as a file or a request
        try:
            checked = read_image(image.data, name=image.name, limits=limits)
        except ImageError as exc:
            raise ImagesRefused(str(exc)) from None
        if checked != image:
            raise ImagesRefused(f"{image.name}: its recorded size, format or digest do not match its bytes")


def read_image_files(policy: Any, paths: Sequence[str | Path]) -> tuple[ImageData, ...]:
    """Image files a user named, read and checked against the policy's limits (ImageError names the file)."""
    items: list[tuple[str, bytes]] = []
    limits = image_limits(policy)
    for path in map(Path, paths):
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise ImageError(f"{path}: cannot read the image ({exc.strerror or exc})") from None
        if size > limits.max_bytes:  # refused unread
            raise ImageError(f"{path.name}: {size:,} bytes is over the limit of {limits.max_bytes:,} bytes "
                             "(images.max_bytes)")
        try:
            items.append((path.name, path.read_bytes()))
        except OSError as exc:
            raise ImageError(f"{path}: cannot read the image ({exc.strerror or exc})") from None
    return read_images(items, limits)


def body_allowance(policy: Any) -> int:
    """The request bytes `serve` admits beyond `server.max_body_bytes` for a message's images where images are
    taken: `images.max_count` images of `images.max_bytes` each, base64-encoded (4 bytes per 3) in data: URLs."""
    section = policy.images
    return section.max_count * (-(-section.max_bytes // 3) * 4 + 64)


def read_one(policy: Any, name: str, data: bytes) -> ImageData:
    """One image's bytes (from a request or a paste), checked against the policy's limits."""
    return read_image(data, name=name, limits=image_limits(policy))
