"""`images`: pictures a user attaches to a message (docs/POLICY_SPEC.md, "images").

Images are accepted only where they can be judged and used: the user_input stage must have a guard that sees images
(Llama Guard 4, in process) and the main model must take them (a Llama 4 checkpoint with its vision tower); else every
image is refused before any model sees it, with a message that says which of the two is missing. `enabled: false`
refuses images whatever the models can do. The limits are checked on the bytes before any decoding (a decompression
bomb is refused from its header).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from guards.policy.base import Flag, PolicyModel, PositiveInt

ImageFormat = Literal["png", "jpeg", "webp"]


class ImagesConfig(PolicyModel):
    enabled: Flag = True  # false: refuse every image; true: accept them where the guards and the model can take them
    max_count: PositiveInt = 4  # images in one message
    max_bytes: PositiveInt = 10 * 1024 * 1024  # per image, as received (before base64 in `serve`)
    max_pixels: PositiveInt = 40_000_000  # width x height, read from the header before decoding
    formats: tuple[ImageFormat, ...] = Field(default=("png", "jpeg", "webp"), min_length=1)


__all__ = ["ImageFormat", "ImagesConfig"]
