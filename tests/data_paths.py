"""Where the tests' public data sets live: `tests/data/<set>/<file>`, each set with its licence and a SOURCE file.

The repository is self-contained: no data is read from outside it. A missing file raises (the test fails, never skips).
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"


def data_file(*parts: str) -> Path:
    """The path of one data file under tests/data; FileNotFoundError naming it when it is absent."""
    path = DATA.joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"test data missing: {path} (see tests/data/README.md)")
    return path
