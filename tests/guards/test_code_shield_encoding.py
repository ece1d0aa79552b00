"""Code Shield refuses Python whose source encoding is not UTF-8: Python would run other text than was scanned."""

from __future__ import annotations

import codecs
import subprocess
import sys
from pathlib import Path

import pytest

from guards.code_shield.guard import CodeShieldGuard, to_verdict
from guards.code_shield.source_encoding import python_source_encoding_problem

# Python decodes `+AG0AZAA1-` under UTF-7 as `md5`: the scanner sees no hashlib.md5, Python runs it (and an eval).
UTF7_MD5 = "# coding: utf-7\nimport hashlib\nprint(hashlib.+AG0AZAA1-(b'x').hexdigest())\neval('1')\n"
ALL_ALLOW = {"block": "allow", "warn": "allow", "ignore": "allow"}


def test_the_utf7_example_really_runs_md5(tmp_path: Path) -> None:
    path = tmp_path / "main.py"
    path.write_text(UTF7_MD5, encoding="utf-8")  # as the sandbox writes code
    ran = subprocess.run([sys.executable, "-I", str(path)], capture_output=True, text=True, timeout=30)
    assert ran.stdout.strip() == "9dd4e461268c8034f5c8564e155c67a6"  # md5(b"x")


async def test_utf7_code_is_refused_before_scanning_whatever_the_actions() -> None:
    guard = CodeShieldGuard(actions=ALL_ALLOW, on_error="allow")
    result = await guard.scan_code(UTF7_MD5, "python")
    assert result.refusal is not None and "utf-7" in result.refusal and result.treatment == "block"
    verdict = to_verdict(result, stage="code", actions=ALL_ALLOW, on_error="allow")
    assert verdict.decision == "block" and verdict.error is None
    assert "declares the source encoding 'utf-7'" in verdict.reasons[0]
    tool = await guard.scan_tool_call("code_interpreter", {"code": UTF7_MD5})
    assert tool is not None and tool.refusal is not None


async def test_fenced_python_and_untagged_blocks_are_refused_too() -> None:
    guard = CodeShieldGuard()
    answer = "Here:\n\n```python\n# -*- coding: latin-1 -*-\nx = 1\n```\n"
    result = await guard.scan_text(answer)
    assert result.refusal is not None and result.findings[0].line == 4
    untagged = await guard.scan_text("```\n# vim: set fileencoding=utf-16 :\nx = 1\n```\n")
    assert untagged.refusal is not None
    javascript = await guard.scan_text("```javascript\n# coding: utf-7\n```\n")
    assert javascript.refusal is None  # not Python: no coding cookie applies


@pytest.mark.parametrize(
    ("source", "phrase"),
    [
        ("# coding: utf-7\nx = 1\n", "'utf-7'"),
        ("#!/usr/bin/env python3\n# -*- coding: latin-1 -*-\n", "'iso-8859-1'"),
        ("\n# vim: set fileencoding=cp1252 :\n", "'cp1252'"),
        ("# coding: no-such-codec\n", "unknown encoding"),
        ("\ufeff# coding: latin-1\n", "not usable"),  # a UTF-8 BOM contradicting its cookie
        (codecs.BOM_UTF16_LE + "x = 1\n".encode("utf-16-le"), "UTF-16 LE byte-order mark"),
        (codecs.BOM_UTF32_BE + "x = 1\n".encode("utf-32-be"), "UTF-32 BE byte-order mark"),
    ],
)
def test_non_utf8_declarations_and_boms(source: str | bytes, phrase: str) -> None:
    problem = python_source_encoding_problem(source)
    assert problem is not None and phrase in problem


@pytest.mark.parametrize(
    "source",
    [
        "x = 1\n",
        "# coding: utf-8\n",
        "# -*- coding: UTF8 -*-\n",
        "\ufeffprint('bom')\n",
        "import os\n\n# coding: utf-7\n",  # line 3: Python ignores it
        "x = 1\n# coding: utf-7\n",  # line 2 after code: Python ignores it
        "print('ÿþ')\n",
    ],
)
def test_utf8_sources_are_fine(source: str) -> None:
    assert python_source_encoding_problem(source) is None
