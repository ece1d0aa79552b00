"""The approval dialog: approve once, approve this tool for the session, or deny with a reason the model sees."""

from __future__ import annotations

import json

from rich.syntax import Syntax
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from assistant.events import ApprovalRequested
from assistant.tui.session import ApprovalDecision

_HINT = "a approve once · s approve for this session · d deny with a reason · esc deny"


class ApprovalScreen(ModalScreen[ApprovalDecision]):
    BINDINGS = [  # noqa: RUF012
        Binding("a", "decide('once')", "Approve once", id="approval_once"),
        Binding("s", "decide('session')", "Approve for session", id="approval_session"),
        Binding("d", "focus_reason", "Deny (with a reason)", id="approval_deny_reason"),
        Binding("escape", "deny", "Deny", id="approval_deny"),
    ]

    def __init__(self, request: ApprovalRequested) -> None:
        super().__init__(classes="dialog-screen")
        self.request = request

    def compose(self) -> ComposeResult:
        request = self.request
        with Vertical(id="approval", classes="dialog"):
            yield Label(f"Allow the tool {request.name!r} to run?", classes="dialog-title", markup=False)
            yield Static(request.reason, classes="dialog-reason", markup=False)
            with VerticalScroll(classes="dialog-body", can_focus=False):
                code = request.arguments.get("code")
                if isinstance(code, str):
                    yield Static(Syntax(code, "python", theme="ansi_dark", line_numbers=True))
                others = {k: v for k, v in request.arguments.items() if not (k == "code" and isinstance(v, str))}
                if others or not isinstance(code, str):
                    yield Static(json.dumps(others, indent=2, ensure_ascii=False), markup=False)
            yield Input(placeholder="Reason for denying, then enter (the model sees it)", id="deny-reason")
            yield Label(_HINT, classes="dialog-hint")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Approve once", id="approve-once", variant="primary")
                yield Button("Approve for session", id="approve-session", variant="warning")
                yield Button("Deny", id="deny", variant="error")

    def on_mount(self) -> None:
        self.query_one("#approve-once", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "approve-once":
            self.action_decide("once")
        elif event.button.id == "approve-session":
            self.action_decide("session")
        else:
            self.action_deny()

    def action_decide(self, kind: str) -> None:
        self.dismiss(ApprovalDecision("session" if kind == "session" else "once"))

    def action_focus_reason(self) -> None:
        self.query_one("#deny-reason", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_deny()

    def action_deny(self) -> None:
        reason = self.query_one("#deny-reason", Input).value.strip()
        self.dismiss(ApprovalDecision("deny", reason or "The user denied this call."))
