"""A side-effect tool that counts its runs, for tests/server/test_approval_binding.py: each run appends one line to
`notes.log` in the server's ASSISTANT_HOME (`tests.server.approval_tools:record_note`, approval required)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tools.custom import tool


def notes_file(home: Path) -> Path:
    return home / "notes.log"


@tool(side_effects=True)
def record_note(text: str) -> str:
    """Write a note.

    Args:
        text: the note
    """
    time.sleep(0.3)  # long enough that two concurrent approvals would overlap, had they both been let through
    path = notes_file(Path(os.environ["ASSISTANT_HOME"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(text + "\n")
    return f"noted {text}"
