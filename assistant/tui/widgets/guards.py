"""The guard verdicts of one message: a badge at a glance (passed / warned / blocked), details on demand."""

from __future__ import annotations

from textual.widgets import Collapsible, Static

from assistant.events import GuardVerdict
from assistant.tui.transcript import summarize, verdict_line

_ICONS = {"passed": "✔", "warned": "⚠", "blocked": "✖", "none": "…"}


def badge_text(verdicts: list[GuardVerdict]) -> str:
    state = summarize(verdicts)
    guards = ", ".join(dict.fromkeys(v.guard for v in verdicts))
    if state == "none":
        return "guards: checking…"
    return f"{_ICONS[state]} guards {state}" + (f" · {guards}" if guards else "")


class GuardBadge(Collapsible):
    """Collapsed: the badge. Expanded: one line per verdict with score, categories, reasons and latency."""

    DEFAULT_CSS = """
    GuardBadge { border: none; padding: 0; margin: 0; background: transparent; }
    GuardBadge > Contents { padding: 0 0 0 2; }
    GuardBadge.passed CollapsibleTitle { color: $success; }
    GuardBadge.warned CollapsibleTitle { color: $warning; }
    GuardBadge.blocked CollapsibleTitle { color: $error; text-style: bold; }
    GuardBadge.unchecked CollapsibleTitle { color: $text-muted; }
    """

    def __init__(self, verdicts: list[GuardVerdict] | None = None, **kwargs: object) -> None:
        self.verdicts: list[GuardVerdict] = list(verdicts or [])
        self._details = Static("", classes="verdict-details", markup=False)
        # Collapsible's keyword arguments (name, id, classes, disabled) pass through as they came.
        super().__init__(self._details, title=badge_text(self.verdicts), collapsed=True, **kwargs)  # type: ignore[arg-type]  # see above
        self.display = bool(self.verdicts)
        self._refresh_state()

    def mark_unchecked(self, text: str = "– no guard checked this (see /policy)") -> None:
        """No guard ran on this text (the policy enables none for its stage): say so rather than show nothing."""
        if not self.verdicts:
            self.title = text
            self.add_class("unchecked")
            self.display = True

    def add(self, verdict: GuardVerdict) -> None:
        self.verdicts.append(verdict)
        self.display = True
        self._refresh_state()

    @property
    def state(self) -> str:
        return summarize(self.verdicts)

    def _refresh_state(self) -> None:
        self.title = badge_text(self.verdicts)
        for state in ("passed", "warned", "blocked"):
            self.set_class(self.state == state, state)
        self._details.update("\n".join(verdict_line(v) for v in self.verdicts))
