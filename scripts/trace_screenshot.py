"""A guarded tool turn as a trace in Arize Phoenix's UI, photographed by headless Chromium (docs/OBSERVABILITY.md).

    python scripts/trace_screenshot.py docs/images/trace_phoenix.png     # needs make test-phoenix's virtualenv

Starts Phoenix (tests/telemetry/phoenix.py), runs the end-to-end scenario of tests/telemetry/test_phoenix_e2e.py in a
process of its own configured by OTEL_EXPORTER_OTLP_ENDPOINT, then opens the trace's page in Debian's chromium.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.agent.conftest import TINY_DIR, write_script  # noqa: E402
from tests.telemetry.phoenix import start_phoenix  # noqa: E402
from tests.telemetry.test_phoenix_e2e import POLICY, SCRIPT, TURN  # noqa: E402


def main(out: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix="trace-shot-"))
    phoenix = start_phoenix(work)
    try:
        (work / "policy.yaml").write_text(POLICY, encoding="utf-8")
        script = write_script(work, *SCRIPT)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env.update(ASSISTANT_HOME=str(work / "home"), PYTHONPATH=str(REPO), OTEL_EXPORTER_OTLP_ENDPOINT=phoenix.url)
        subprocess.run([sys.executable, "-c", TURN, str(work / "policy.yaml"), str(script), str(work / "t.sqlite"),
                        str(TINY_DIR)], env=env, cwd=REPO, check=True, timeout=600)
        turn = next(s for s in phoenix.spans(least=20) if s["name"] == "invoke_agent assistant")
        shoot(f"{phoenix.url}/projects/UHJvamVjdDox/traces/{turn['context']['trace_id']}", out)
    finally:
        phoenix.stop()
        shutil.rmtree(work, ignore_errors=True)


def shoot(url: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium is missing (make chromium)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(url, wait_until="networkidle")
        time.sleep(3)  # the trace tree renders after its query
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out))
        browser.close()
    print(f"wrote {out} ({url})")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/trace_phoenix.png"))
