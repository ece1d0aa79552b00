"""The start screen shown instead of the chat when the session cannot start (a model missing, a server down)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Label, Static

from assistant.tui.session import SetupProblem


class SetupScreen(Screen[str]):
    """Says what is wrong and how to fix it; dismisses with "offline", "retry" or "quit"."""

    BINDINGS = [  # noqa: RUF012
        Binding("o", "choose('offline')", "Offline smoke policy", id="setup_offline"),
        Binding("r", "choose('retry')", "Retry", id="setup_retry"),
        Binding("q", "choose('quit')", "Quit", id="setup_quit"),
    ]

    def __init__(self, problem: SetupProblem, offline_hint: str) -> None:
        super().__init__(id="setup")
        self.problem = problem
        self.offline_hint = offline_hint

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="setup-body"):
            yield Label(self.problem.title, id="setup-title", markup=False)
            yield Static(self.problem.message, id="setup-message", markup=False)
            yield Label("How to fix it", classes="setup-heading")
            yield Static(self.problem.fix, id="setup-fix", markup=False)
            if self.problem.offer_offline:
                yield Label("Or try it now without downloads", classes="setup-heading")
                yield Static(self.offline_hint, id="setup-offline", markup=False)
            with Horizontal(id="setup-buttons"):
                if self.problem.offer_offline:
                    yield Button("Use the offline smoke policy", id="offline", variant="primary")
                yield Button("Retry", id="retry")
                yield Button("Quit", id="quit", variant="error")
        yield Footer()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_choose(str(event.button.id))

    def action_choose(self, choice: str) -> None:
        if choice == "offline" and not self.problem.offer_offline:
            return
        self.dismiss(choice)
