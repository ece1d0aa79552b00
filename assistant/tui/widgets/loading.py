"""Per-model loading progress: the main model and each guard with a model, one row each."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, ProgressBar

from assistant.tui.session import COMPONENT_LABELS, Component, LoadProgress
from assistant.warmup import MAIN_MODEL

_STATE_TEXT = {"pending": "waiting", "loading": "loading", "ready": "ready", "disabled": "off", "failed": "failed"}


class LoadRow(Horizontal):
    def __init__(self, component: Component) -> None:
        super().__init__(classes="load-row pending", id=f"load-{component}")
        self.component = component
        self.state = "pending"
        self.bar = ProgressBar(total=None, show_eta=False, show_percentage=False)
        self.status = Label(_STATE_TEXT["pending"], classes="load-status")

    def compose(self) -> ComposeResult:
        yield Label(COMPONENT_LABELS[self.component], classes="load-name")
        yield self.bar
        yield self.status

    def apply(self, progress: LoadProgress) -> None:
        self.state = progress.state
        self.set_classes(f"load-row {progress.state}")
        if progress.state in ("ready", "disabled"):
            self.bar.update(total=1, progress=1)
        elif progress.fraction is not None:
            self.bar.update(total=1, progress=max(0.0, min(1.0, progress.fraction)))
        text = _STATE_TEXT[progress.state]
        self.status.update(f"{text} · {progress.detail}" if progress.detail else text)


class LoadingPanel(Vertical):
    """Shown while anything loads; hidden once every model is ready (or off)."""

    def __init__(self) -> None:
        super().__init__(id="loading")
        self.rows = {component: LoadRow(component) for component in COMPONENT_LABELS}

    def compose(self) -> ComposeResult:
        yield Label("Loading models - you can type once the guards are ready.", id="loading-title")
        yield from self.rows.values()

    def apply(self, progress: LoadProgress) -> None:
        if (row := self.rows.get(progress.component)) is not None:  # a guard without a model has no row
            row.apply(progress)
        self.display = not self.all_ready()

    def ready(self, component: Component) -> bool:
        return self.rows[component].state in ("ready", "disabled")

    def guards_ready(self) -> bool:
        return all(self.ready(component) for component in self.rows if component != MAIN_MODEL)

    def all_ready(self) -> bool:
        return all(self.ready(component) for component in self.rows)

    def any_failed(self) -> bool:
        return any(row.state == "failed" for row in self.rows.values())
