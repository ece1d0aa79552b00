"""Fenced code blocks and language names in model output (pure)."""

from __future__ import annotations

import pytest

from guards.code_shield.fences import CODESHIELD_LANGUAGES, CodeBlock, extract_code_blocks, normalize_language


@pytest.mark.parametrize(
    ("tag", "language"),
    [
        ("python", "python"), ("py", "python"), ("Python3", "python"), ("js", "javascript"), ("ts", "javascript"),
        ("c++", "cpp"), ("C#", "csharp"), ("objective-c", "objective_c"), ("rs", "rust"), ("kt", "kotlin"),
        ("language-py", "python"), ("{.python}", "python"), ("bash", None), ("", None), (None, None),
    ],
)
def test_language_aliases(tag: str | None, language: str | None) -> None:
    assert normalize_language(tag) == language


def test_every_codeshield_language_is_its_own_name() -> None:
    from codeshield.insecure_code_detector.languages import Language

    assert {lang.value for lang in Language} - {"language_agnostic"} == CODESHIELD_LANGUAGES
    assert all(normalize_language(name) == name for name in CODESHIELD_LANGUAGES)


def test_blocks_with_tags_info_strings_and_line_numbers() -> None:
    text = 'Intro\n```py title="a.py"\nimport os\n```\ntext\n~~~~ c++\nint x;\n```\nstill c++\n~~~~\n'
    assert extract_code_blocks(text) == [
        CodeBlock("py", "python", "import os", 3),
        CodeBlock("c++", "cpp", "int x;\n```\nstill c++", 7),
    ]


def test_untagged_and_unknown_blocks_have_no_language() -> None:
    blocks = extract_code_blocks("```\nx\n```\n```zig\ny\n```")
    assert [(b.tag, b.language, b.code) for b in blocks] == [("", None, "x"), ("zig", None, "y")]


def test_unclosed_fence_runs_to_the_end_so_truncated_code_is_still_scanned() -> None:
    assert extract_code_blocks("ok\n```python\nimport pickle\npickle.loads(x)") == [
        CodeBlock("python", "python", "import pickle\npickle.loads(x)", 3, closed=False)
    ]


def test_inline_triple_backticks_and_indented_code_are_not_fences() -> None:
    assert extract_code_blocks("use ```eval(x)``` here\n    ```py\n    x\n") == []


def test_a_shorter_fence_does_not_close_a_longer_one() -> None:
    assert extract_code_blocks("````md\n```py\nx\n```\n````") == [CodeBlock("md", None, "```py\nx\n```", 2)]
