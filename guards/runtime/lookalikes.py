"""Look-alike text: the form of a text the guards also judge when it differs from the original.

Fullwidth letters (`ｚｙｘ`), compatibility forms (ligatures, circled or styled letters) and invisible characters
(zero-width spaces and joiners, bidi controls, Unicode tag characters) let a flagged text pass a guard that reads
it literally while a reader - or the model - reads the same words. `fold_lookalikes` maps a text to its NFKC form
without any format (Cf) character: every zero-width and bidi control, the soft hyphen and the tag characters.
"""

from __future__ import annotations

import unicodedata


def fold_lookalikes(text: str) -> str:
    """NFKC-normalised `text` with every format character (zero-width, bidi controls, tags) removed."""
    folded = unicodedata.normalize("NFKC", text)
    if not folded.isascii():
        folded = "".join(char for char in folded if unicodedata.category(char) != "Cf")
    return folded
