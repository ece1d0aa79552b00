"""The tool-definition review: under `on_change: ask`, an MCP tool whose definition is new or changed since it was
pinned is shown to the user as a diff before the model may see it (the guards already passed it)."""

from __future__ import annotations

from rich.syntax import Syntax
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

from tools.mcp.pins import DefinitionReview

_HINT = "a offer it this session · esc / d withhold it · `assistant tools pin` records it for good"


class DefinitionReviewScreen(ModalScreen[bool]):
    BINDINGS = [  # noqa: RUF012
        Binding("a", "decide(True)", "Offer the tool", id="definition_offer"),
        Binding("d", "decide(False)", "Withhold the tool", id="definition_withhold"),
        Binding("escape", "decide(False)", "Withhold", id="definition_escape"),
    ]

    def __init__(self, review: DefinitionReview) -> None:
        super().__init__(classes="dialog-screen")
        self.review = review

    def compose(self) -> ComposeResult:
        review = self.review
        what = "is new (never pinned)" if review.status == "new" else "changed since it was pinned"
        with Vertical(id="definition-review", classes="dialog"):
            yield Label(f"MCP server {review.server}: the tool {review.tool!r} {what}", classes="dialog-title",
                        markup=False)
            yield Static(f"Offer it to the model in this session? The guards passed it; read what the server wrote "
                         f"(pins: {review.lock_file}).", classes="dialog-reason", markup=False)
            with VerticalScroll(classes="dialog-body", can_focus=False):
                yield Static(Syntax(review.diff, "diff", theme="ansi_dark", word_wrap=True))
            yield Label(_HINT, classes="dialog-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Offer it", id="definition-offer", variant="warning")
                yield Button("Withhold it", id="definition-withhold", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#definition-withhold", Button).focus()  # the safe answer is the default

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_decide(event.button.id == "definition-offer")

    def action_decide(self, offer: bool) -> None:
        self.dismiss(offer is True)
