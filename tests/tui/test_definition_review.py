"""`on_change: ask` in the chat: an MCP tool definition new or changed since it was pinned is shown to the user as a
diff (after the guards passed it), and only the tools the user offers reach the model. Real stdio MCP server
(tests/tools/mcp/servers/shifty_server.py), tiny trained guards, scripted main model."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tui_helpers import SIZE, ready, wait_until

from assistant.tui.backend import AssistantSession
from assistant.tui.commands import tools_markdown
from assistant.tui.screens.definition_review import DefinitionReviewScreen

REPO = Path(__file__).resolve().parents[2]
TINY_DIR = REPO / ".cache" / "tiny-models"
SHIFTY = REPO / "tests" / "tools" / "mcp" / "servers" / "shifty_server.py"
POLICY = """\
version: 1
models:
  main: {{source: tiny:llama-3.1-instruct, max_new_tokens: 64}}
  llama_guard: {{source: tiny:llama-guard, variant: 8b, device: cpu, dtype: float32}}
  prompt_guard: {{source: tiny:prompt-guard, device: cpu}}
llama_guard: {{timeout_s: 60}}
prompt_guard: {{timeout_s: 60}}
stages:
  user_input: {{llama_guard: {{enabled: false}}, prompt_guard: {{enabled: false}}}}
  model_output: {{llama_guard: {{enabled: true}}, code_shield: {{enabled: false}}}}
  tool_result: {{prompt_guard: {{enabled: true, score: injection}}}}
audit: {{path: audit.jsonl}}
tools:
  mcp:
    - {{name: shifty, command: {python}, args: [{server}, {texts}], on_change: ask}}
"""


async def test_new_definitions_are_shown_as_a_diff_and_only_offered_ones_reach_the_model(
    make_app: Any, tmp_path: Path
) -> None:
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps({"weather": "The weather in a city."}), encoding="utf-8")
    policy = tmp_path / "policy.yaml"  # never pinned: every tool is new, so the user is asked about each
    policy.write_text(POLICY.format(python=sys.executable, server=SHIFTY, texts=texts), encoding="utf-8")
    script = tmp_path / "model.jsonl"
    script.write_text("", encoding="utf-8")
    session = AssistantSession(policy, model=f"scripted:{script}", tiny_dir=TINY_DIR, db_path=tmp_path / "t.sqlite")
    app = make_app(session)
    asked: list[str] = []
    async with app.run_test(size=SIZE) as pilot:
        for _ in range(3):  # weather, notes, reload: one dialog each, in whatever order the vetting reaches them
            await wait_until(pilot, lambda: isinstance(app.screen, DefinitionReviewScreen) and app.screen.focused
                             is not None, what="a review dialog, mounted")  # keys pressed before are lost
            review = app.screen.review  # type: ignore[attr-defined]
            assert review.server == "shifty" and review.status == "new" and "(not pinned)" in review.diff
            asked.append(review.tool)
            if review.tool == "weather":
                assert '+  "description": "The weather in a city.",' in review.diff
                await pilot.press("a")
            else:
                await pilot.press("escape")
            await wait_until(pilot, lambda: not isinstance(app.screen, DefinitionReviewScreen) or
                             app.screen.review.tool not in asked, what="the dialog closed")  # type: ignore[attr-defined]
        await ready(pilot)
        assert sorted(asked) == ["notes", "reload", "weather"]
        tools = app.session.assistant.deps.tools
        assert "weather" in tools and "notes" not in tools and "reload" not in tools
        withheld = {w.tool: w.reason for w in app.session.assistant.mcp.withheld}
        assert "the user declined it" in withheld["notes"]
        listed = tools_markdown(app.session.tools())  # what /tools shows
        assert "| `weather` | no | by policy |" in listed and "| `shifty.notes` | - | blocked |" in listed
