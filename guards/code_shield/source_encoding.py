"""Python source that Python would not read as the UTF-8 text the scanners see is refused, not scanned.

A PEP 263 cookie (`# coding: utf-7` on line 1 or 2) makes Python decode the file differently: `hashlib.+AG0AZAA1-`
runs as `hashlib.md5`, while a scanner reading the text sees no such call. So code whose source declares any encoding
other than UTF-8, or starts with a byte-order mark other than UTF-8's, is not run at all. The detection is Python's
own (`tokenize.detect_encoding`: the same cookie rules, the same name normalisation), on the bytes the sandbox writes
(the code encoded as UTF-8).
"""

from __future__ import annotations

import codecs
import io
import tokenize

# Longest first: UTF-32 LE's BOM starts with UTF-16 LE's.
_FOREIGN_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32 LE"),
    (codecs.BOM_UTF32_BE, "UTF-32 BE"),
    (codecs.BOM_UTF16_LE, "UTF-16 LE"),
    (codecs.BOM_UTF16_BE, "UTF-16 BE"),
)
_UTF8_NAMES = frozenset({"utf-8", "utf-8-sig"})


def python_source_encoding_problem(source: str | bytes) -> str | None:
    """Why Python would not read `source` as UTF-8 (a sentence for the user), or None when it would."""
    data = source.encode("utf-8", "surrogatepass") if isinstance(source, str) else source
    for bom, name in _FOREIGN_BOMS:
        if data.startswith(bom):
            return f"the code starts with a {name} byte-order mark; only UTF-8 source code is run"
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as exc:  # an unknown encoding, or a cookie that contradicts the UTF-8 BOM
        return f"the code's encoding declaration is not usable ({exc.msg}); only UTF-8 source code is run"
    if codecs.lookup(encoding).name not in _UTF8_NAMES:  # `utf8`, `UTF_8` and `utf-8` are all UTF-8
        return (
            f"the code declares the source encoding {encoding!r} (a `coding:` comment on line 1 or 2), so Python "
            "would run different text from what was checked; only UTF-8 source code is run"
        )
    return None
