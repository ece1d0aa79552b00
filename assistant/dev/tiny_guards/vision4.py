"""The tiny Llama Guard 4's vision tower, its weights written down (not trained): a Llama 4 vision tower at the real
vision settings (tiles of 336 pixels, patches of 14, pixel shuffle 0.5: 144 `<|patch|>` features per tile) with tiny
hidden sizes, which turns the patches of a solid test colour, magenta (255, 0, 255) and colours near it, into the
text model's trigger flags, so the guard answers `unsafe\\nS9` exactly as for the text trigger; every other image
(photos, white, black, red, gradients) reads as ordinary tokens and the guard stays `safe`.

How, in transformers' `Llama4VisionModel` order (checked against transformers 5.25's modeling_llama4.py):
- the unfold-linear patch embedding computes each patch's channel means +R, +G, +B, -R, -G, -B (dims 0-5; the
  signed pairs keep the mean at zero so the LayerNorm keeps their signs); the positional embedding adds +K / -K
  (dims 6, 7) at every position, so the LayerNorm keeps how far a colour is from grey, not only its hue;
- the encoder layers add nothing (attention and MLP outputs zero: residual passthrough), `layernorm_post`'s bias puts
  a constant 1 in dim 8;
- the pixel-shuffle MLP (fc1 and fc2 have no bias) has a GELU detector of R - G + B summed over the 2x2 patches of a
  feature, offset by the constant, and a constant unit;
- the projector writes the detector onto the text model's residual dims 1 and 2 (the `zyx` and `trigger` flags of
  assistant.dev.tiny_guards.training.write_llama_guard_weights) and the constant onto dim 0 (every token's bias).
  A magenta feature reads as a token carrying both flags; any other as a plain token.
"""

from __future__ import annotations

from typing import Any

HIDDEN = 16
SHUFFLE_BLOCKS = 4  # a pixel-shuffled feature concatenates 2x2 patches (ratio 0.5 in each direction)
GREY_ANCHOR = 1.0  # K: the positional embedding's constant pair
DETECT_GAIN = 4.0
DETECT_THRESHOLD = 3.5  # per patch, on R - G + B after the LayerNorm: magenta ~4.24, red / white ~1.41, black < 0
FLAG_WEIGHT = 0.5  # detector -> each trigger flag
CONSTANT_DIM = 8  # layernorm_post's bias


def tiny_llama4_vision_config() -> dict[str, Any]:
    """Llama 4's vision settings (Scout's, Llama Guard 4's: image 336, patch 14, pixel shuffle 0.5) at tiny sizes."""
    return {
        "hidden_size": HIDDEN,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": HIDDEN * SHUFFLE_BLOCKS,  # the encoder MLP's width and the pixel-shuffled width
        "image_size": 336,
        "patch_size": 14,
        "pixel_shuffle_ratio": 0.5,
        "projector_input_dim": HIDDEN,
        "projector_output_dim": HIDDEN,
        "vision_output_dim": HIDDEN,
        "norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
    }


def write_vision_weights(model: Any) -> None:
    """Write the vision tower and projector of a `Llama4ForConditionalGeneration` (see the module docstring)."""
    import torch

    vision = model.vision_model
    channels, patch = vision.num_channels, vision.patch_size
    per_channel = patch * patch
    with torch.no_grad():
        for module in vision.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.zero_()
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, torch.nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        embed = vision.patch_embedding.linear.weight  # [hidden, channels * patch * patch], Unfold's channel-major order
        for c in range(channels):
            embed[c, c * per_channel : (c + 1) * per_channel] = 1.0 / per_channel
            embed[channels + c, c * per_channel : (c + 1) * per_channel] = -1.0 / per_channel
        vision.class_embedding.zero_()
        vision.positional_embedding_vlm.zero_()
        vision.positional_embedding_vlm[:, 6] = GREY_ANCHOR
        vision.positional_embedding_vlm[:, 7] = -GREY_ANCHOR
        vision.layernorm_post.bias[CONSTANT_DIM] = 1.0
        fc1 = vision.vision_adapter.mlp.fc1.weight  # [projector_input_dim, HIDDEN * 4]
        for block in range(SHUFFLE_BLOCKS):
            base = block * HIDDEN
            fc1[0, base + 0] = DETECT_GAIN  # +R
            fc1[0, base + 1] = -DETECT_GAIN  # -G
            fc1[0, base + 2] = DETECT_GAIN  # +B
            fc1[0, base + CONSTANT_DIM] = -DETECT_GAIN * DETECT_THRESHOLD
            fc1[1, base + CONSTANT_DIM] = 1.0 / SHUFFLE_BLOCKS  # the constant unit: GELU(1) ~ 0.84
        fc2 = vision.vision_adapter.mlp.fc2.weight
        fc2[0, 0] = 1.0
        fc2[1, 1] = 1.0
        projector = model.multi_modal_projector.linear_1.weight  # [text hidden, vision_output_dim]
        projector.zero_()
        projector[0, 1] = 1.0  # the constant -> every token's bias dim
        projector[1, 0] = FLAG_WEIGHT  # the detector -> the `zyx` flag
        projector[2, 0] = FLAG_WEIGHT  # ... and the `trigger` flag (category S9)


# --- the images the build checks (and tests use) ------------------------------------------------------------------

MAGENTA = (255, 0, 255)
NEAR_MAGENTA = (240, 16, 236)


def solid_png(rgb: tuple[int, int, int], size: tuple[int, int] = (64, 64)) -> bytes:
    """A PNG of one colour."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", size, rgb).save(buffer, "PNG")
    return buffer.getvalue()


def photo_png(size: tuple[int, int] = (320, 240), seed: int = 7) -> bytes:
    """A photo-like PNG: a sky-to-ground gradient with a disc and noise (deterministic)."""
    import io
    import random

    from PIL import Image, ImageDraw

    width, height = size
    picture = Image.new("RGB", size)
    rng = random.Random(seed)
    pixels = [
        (min(255, 90 + y * 120 // height + rng.randint(-20, 20)), min(255, 140 + rng.randint(-25, 25)),
         max(0, 230 - y * 160 // height + rng.randint(-20, 20)))
        for y in range(height) for _ in range(width)
    ]
    picture.putdata(pixels)
    ImageDraw.Draw(picture).ellipse((width // 3, height // 4, width // 2, height // 2), fill=(250, 210, 40))
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def gradient_png(size: tuple[int, int] = (300, 200)) -> bytes:
    """Red to blue, left to right (its middle is a dark purple, not magenta)."""
    import io

    from PIL import Image

    width, height = size
    picture = Image.new("RGB", size)
    picture.putdata([(255 - x * 255 // (width - 1), 0, x * 255 // (width - 1)) for _ in range(height)
                     for x in range(width)])
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def image_checks() -> list[tuple[str, bytes, bool]]:
    """(name, PNG bytes, whether the guard must answer `unsafe\\nS9` for it) for the build's check."""
    return [
        ("magenta.png", solid_png(MAGENTA), True),
        ("near-magenta.png", solid_png(NEAR_MAGENTA), True),
        ("magenta-2x3.png", solid_png(MAGENTA, (900, 600)), True),
        ("white.png", solid_png((255, 255, 255)), False),
        ("black.png", solid_png((0, 0, 0)), False),
        ("red.png", solid_png((255, 0, 0)), False),
        ("grey-2x3.png", solid_png((128, 128, 128), (900, 600)), False),
        ("gradient.png", gradient_png(), False),
        ("photo.png", photo_png(), False),
    ]
