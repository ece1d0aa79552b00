"""`assistant run TEXT --image FILE` and `assistant guard check --image FILE` on the offline policies: the Llama 4
one (tiny Llama 4 with its vision tower, tiny Llama Guard 4 that sees images) and the Llama 3 one (whose guards
cannot see images, so every image is refused before any model sees it: exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from assistant.cli import exit_codes
from assistant.cli.main import cli

REPO = Path(__file__).resolve().parents[2]
LLAMA4 = REPO / "examples" / "policies" / "offline-smoke-llama4.yaml"
LLAMA3 = REPO / "examples" / "policies" / "offline-smoke.yaml"


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    paths = {"sky": tmp_path / "sky.png", "magenta": tmp_path / "magenta.jpg", "text": tmp_path / "notes.png"}
    Image.new("RGB", (300, 200), (90, 160, 220)).save(paths["sky"])
    Image.new("RGB", (64, 64), (255, 0, 255)).save(paths["magenta"], "JPEG", quality=95)
    paths["text"].write_text("not an image", encoding="utf-8")
    return paths


def run(*args: str) -> tuple[int, list[dict], str]:
    result = CliRunner().invoke(cli, ["run", "--json", *args])
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, events, result.stderr


def test_a_policy_whose_guards_cannot_see_images_exits_2_before_any_model(images: dict[str, Path]) -> None:
    code, events, err = run("--policy", str(LLAMA3), "--image", str(images["sky"]), "What is this?")
    assert code == exit_codes.BAD_INPUT
    assert "guards cannot see images" in err and "Llama Guard 4" in err
    assert [e["type"] for e in events] == ["error"] and events[0]["kind"] == "bad_input"


def test_a_file_that_is_not_an_acceptable_image_exits_2_naming_it(images: dict[str, Path]) -> None:
    code, _, err = run("--policy", str(LLAMA4), "--image", str(images["text"]), "What is this?")
    assert code == exit_codes.BAD_INPUT and "notes.png: not an image" in err
    code, _, err = run("--policy", str(LLAMA4), "--image", str(images["sky"]), "--image", str(images["sky"]),
                       "--image", str(images["sky"]), "x")
    assert code == exit_codes.BAD_INPUT and "images.max_count" in err  # the Llama 4 policy allows 2


def test_an_unsafe_image_is_refused_before_the_model(images: dict[str, Path]) -> None:
    code, events, _ = run("--policy", str(LLAMA4), "--image", str(images["magenta"]), "A harmless question.")
    assert code == exit_codes.REFUSED
    verdict = next(e for e in events if e["type"] == "verdict" and e["guard"] == "llama_guard")
    assert verdict["decision"] == "block" and verdict["categories"] == ["S9"]
    assert verdict["images"] == ["magenta.jpg (64x64 jpeg)"]
    assert not any(e["type"] == "token" for e in events) and events[-1]["type"] == "refusal"


def test_a_benign_image_is_answered_by_the_llama4_model(images: dict[str, Path]) -> None:
    code, events, _ = run("--policy", str(LLAMA4), "--image", str(images["sky"]), "What is this?")
    assert code == exit_codes.OK, events[-3:]
    verdict = next(e for e in events if e["type"] == "verdict" and e["guard"] == "llama_guard")
    assert verdict["decision"] == "allow" and verdict["images"] == ["sky.png (300x200 png)"]
    assert events[-1]["type"] == "final"


def check(policy: Path, *args: str) -> tuple[int, dict | None, str]:
    result = CliRunner().invoke(cli, ["guard", "check", "--policy", str(policy), "--stage", "user_input", *args])
    return result.exit_code, (json.loads(result.stdout) if result.stdout.strip() else None), result.stderr


def test_guard_check_judges_the_image_with_the_text(images: dict[str, Path]) -> None:
    code, out, _ = check(LLAMA4, "--image", str(images["magenta"]), "hello")
    assert code == exit_codes.REFUSED and out is not None and out["decision"] == "block"
    code, out, _ = check(LLAMA4, "--image", str(images["sky"]), "hello")
    assert code == exit_codes.OK and out is not None and out["decision"] == "allow"
    code, out, err = check(LLAMA3, "--image", str(images["sky"]), "hello")
    assert code == exit_codes.BAD_INPUT and out is None and "no guard of the user_input stage sees images" in err
