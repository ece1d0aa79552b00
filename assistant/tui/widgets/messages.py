"""Messages of the conversation: the user's, the assistant's (streamed markdown) and tool calls."""

from __future__ import annotations

import json
from typing import Any

from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Collapsible, Markdown, Static

from assistant.events import ApprovalRequested, GuardVerdict, ToolCallProposed, ToolResult
from assistant.tui.images import image_verdict
from assistant.tui.transcript import summarize
from assistant.tui.widgets.guards import GuardBadge, badge_text
from guards.policy.registry import CODE_SHIELD

# Arguments that hold code are shown highlighted, in the language the tool runs.
_CODE_ARGUMENTS = {"code": "python"}


class UserMessage(Vertical):
    """The user's text, a line per attached image (`images`: label and thumbnail, none when replayed), a row per
    attached file, and the input guards' badge."""

    def __init__(
        self, text: str, verdicts: list[GuardVerdict] | None = None,
        images: list[tuple[str, Text | None]] | None = None,
    ) -> None:
        super().__init__(classes="message user")
        self.text = text
        self.badge = GuardBadge(verdicts)
        self.image_views: dict[str, ImageView] = {label: ImageView(label, thumb) for label, thumb in images or []}

    def compose(self) -> ComposeResult:
        yield Static(self.text, classes="body", markup=False)
        yield from self.image_views.values()
        yield self.badge

    async def add_attachment(self, call: ToolCallProposed) -> AttachmentView:
        view = AttachmentView(call)
        await self.mount(view, before=self.badge)
        return view

    async def add_image_verdict(self, verdict: GuardVerdict) -> None:
        """A verdict of a guard that saw images goes to each image's line (a replayed turn's lines are made here,
        from the labels its verdicts name)."""
        for label in verdict.images:
            if (view := self.image_views.get(label)) is None:
                view = self.image_views[label] = ImageView(label)
                await self.mount(view, before=self.badge)
            view.add_verdict(verdict)


class ImageView(Horizontal):
    """One image of the user's message: its thumbnail (half blocks; a replayed turn has none, the chat's store keeps
    no pixels) and its label with the verdict of the guards that saw it."""

    def __init__(self, label: str, thumb: Text | None = None) -> None:
        super().__init__(classes="image")
        self.label = label
        self.verdicts: list[GuardVerdict] = []
        self.thumb = Static(thumb if thumb is not None else "", classes="thumbnail")
        self.thumb.display = thumb is not None
        self.caption = Static(self._caption(), classes="image-label", markup=False)

    def compose(self) -> ComposeResult:
        yield self.thumb
        yield self.caption

    def _caption(self, status: str | None = None) -> str:
        return f"🖼 {self.label} · {status or image_verdict(self.verdicts)}"

    @property
    def state(self) -> str:
        return summarize(self.verdicts)

    def add_verdict(self, verdict: GuardVerdict) -> None:
        self.verdicts.append(verdict)
        self.caption.update(self._caption())
        self.set_class(self.state == "blocked", "blocked")

    def not_judged(self, why: str) -> None:
        """The turn ended before a guard saw the image (refused, stopped): say so instead of `checking…`."""
        if not self.verdicts:
            self.caption.update(self._caption(why))
            self.add_class("unjudged")


class ToolCallView(Collapsible):
    """One tool call: arguments (code highlighted), guard verdicts (Code Shield findings next to the code), result."""

    def __init__(self, call: ToolCallProposed) -> None:
        self.call = call
        self.badge = GuardBadge()
        self.findings = Static("", classes="findings", markup=False)
        self.findings.display = False
        self.result_view = Static("running…", classes="tool-result", markup=False)
        self.status = "proposed"
        self.finished = False  # its result came
        super().__init__(
            *_argument_widgets(call.arguments),
            self.findings,
            self.badge,
            self.result_view,
            title=self._title_text(),
            collapsed=False,
            classes="tool-call",
        )

    def _title_text(self) -> str:
        return f"tool · {self.call.name} · {self.status}"

    def _set_status(self, status: str) -> None:
        self.status = status
        self.title = self._title_text()
        style = "failed" if status == "error" or status.startswith("denied") else status.split(" ")[0]
        for name in ("blocked", "failed", "done", "waiting"):
            self.set_class(style == name, name)

    def add_verdict(self, verdict: GuardVerdict) -> None:
        self.badge.add(verdict)
        if (text := findings_text(verdict)) is not None:
            self.findings.update(text)
            self.findings.display = True
        if self.badge.state == "blocked":
            self._set_status("blocked")

    def approval_requested(self, event: ApprovalRequested) -> None:
        self._set_status("waiting for approval")
        self.result_view.update(f"needs approval: {event.reason}")

    def approval_given(self, text: str) -> None:
        self._set_status(text)

    def stop(self) -> None:
        """The turn was stopped before this call's result came: it did not (or no longer) run."""
        if not self.finished:
            self._set_status("stopped")
            self.result_view.update("stopped: the call was cancelled (a running sandbox is killed)")

    def show_result(self, result: ToolResult) -> None:
        self.finished = True
        if result.blocked:
            status = "blocked"
        elif self.status.startswith("denied"):
            status = self.status  # keep the user's reason in the title
        elif result.ok:
            status = "done"
        else:
            status = "error"
        self._set_status(status)
        text = result.output if result.ok or not result.error else f"{result.error}\n{result.output}".strip()
        if result.limits_hit:
            text += "\n[limits hit: " + ", ".join(result.limits_hit) + "]"
        self.result_view.update(text or "(no output)")
        self.collapsed = result.ok and not result.blocked


class AttachmentView(ToolCallView):
    """A file attached to the user's message: collapsed to one line (name, size, its guards' verdict); expanded, the
    verdicts and the text the model reads."""

    def __init__(self, call: ToolCallProposed) -> None:
        super().__init__(call)
        self.result_view.update("checking…")
        self.collapsed = True
        self.add_class("attachment")

    def _title_text(self) -> str:
        file = str(self.call.arguments.get("file", "?")).rsplit("/", 1)[-1]
        size = self.call.arguments.get("characters")
        sized = f" · {size:,} characters" if isinstance(size, int) else ""
        return f"📎 {file}{sized} · {self.status}"

    def add_verdict(self, verdict: GuardVerdict) -> None:
        super().add_verdict(verdict)
        if self.status != "blocked":
            self._set_status(badge_text(self.badge.verdicts))

    def show_result(self, result: ToolResult) -> None:
        verdict = badge_text(self.badge.verdicts) if self.badge.verdicts else "no guard checked it"
        self._set_status(f"blocked: {result.error}" if result.blocked else f"attached · {verdict}")
        self.set_class(result.blocked, "blocked")
        self.result_view.update(result.output if result.ok else f"not sent: {result.error}")
        self.collapsed = True


def findings_text(verdict: GuardVerdict) -> str | None:
    """Code Shield's findings, to show right next to the code they concern; None when there is nothing to say."""
    if verdict.guard != CODE_SHIELD or (not verdict.reasons and verdict.decision == "allow" and not verdict.error):
        return None
    lines = [f"Code Shield: {verdict.decision}" + (f" ({verdict.error})" if verdict.error else "")]
    lines += [f"  - {reason}" for reason in verdict.reasons]
    return "\n".join(lines)


def _argument_widgets(arguments: dict[str, Any]) -> list[Static]:
    widgets: list[Static] = []
    rest = {k: v for k, v in arguments.items() if not (k in _CODE_ARGUMENTS and isinstance(v, str))}
    for key, language in _CODE_ARGUMENTS.items():
        code = arguments.get(key)
        if isinstance(code, str):
            widgets.append(Static(Syntax(code, language, theme="ansi_dark", line_numbers=True), classes="code"))
    if rest or not widgets:
        widgets.append(Static(json.dumps(rest, indent=2, ensure_ascii=False), classes="arguments", markup=False))
    return widgets


class AssistantMessage(Vertical):
    """Tool calls, then the answer streamed as markdown, then a refusal or error notice, then the output guards."""

    def __init__(self) -> None:
        super().__init__(classes="message assistant")
        self.tools = Vertical(classes="tools")
        # Links in answers may come from untrusted tool output: never opened on a click (the app copies them).
        self.answer = Markdown("", classes="answer", open_links=False)
        self.notice = Static("", classes="notice", markup=False)
        self.notice.display = False
        self.findings = Static("", classes="findings", markup=False)  # Code Shield on the answer's code blocks
        self.findings.display = False
        self.badge = GuardBadge()
        self.tool_views: dict[str, ToolCallView] = {}
        self.attachment_views: dict[str, ToolCallView] = {}  # mounted under the user's message
        self.held: dict[str, list[GuardVerdict]] = {}  # verdicts of calls not shown yet, by call id
        self._stream: Any = None
        self.text = ""
        self.phase = "checking your message"  # what the pending line says while nothing is shown yet

    def compose(self) -> ComposeResult:
        yield self.tools
        yield self.answer
        yield self.findings
        yield self.notice
        yield self.badge

    async def append(self, text: str) -> None:
        if self._stream is None:
            self._stream = Markdown.get_stream(self.answer)
        self.text += text
        await self._stream.write(text)

    async def finish(self, final_text: str | None = None) -> None:
        """Stop the stream; the final text (when it differs from what streamed) replaces the answer."""
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        if final_text is not None and final_text != self.text:
            self.text = final_text
            await self.answer.update(final_text)
        self.answer.display = bool(self.text)

    async def add_tool_call(self, call: ToolCallProposed) -> ToolCallView:
        view = ToolCallView(call)
        self.tool_views[call.call_id] = view
        await self.tools.mount(view)
        return view

    async def add_info(self, text: str) -> None:
        """A notice that changes nothing about safety (e.g. old turns dropped from the context)."""
        await self.tools.mount(Static(text, classes="info", markup=False))

    def call_view(self, call_id: str) -> ToolCallView | None:
        """The row of a tool call or an attachment of this turn."""
        return self.tool_views.get(call_id) or self.attachment_views.get(call_id)

    def add_verdict(self, verdict: GuardVerdict) -> None:
        """A verdict on the answer (Code Shield's findings shown next to it)."""
        self.badge.add(verdict)
        if (findings := findings_text(verdict)) is not None:
            self.findings.update(findings)
            self.findings.display = True

    def release_held(self, call_id: str | None = None) -> None:
        """Held verdicts to the row of `call_id`, now shown; without one, every held verdict to the reply (calls
        their guards blocked, so never shown)."""
        if call_id is not None:
            if (view := self.call_view(call_id)) is not None:
                for verdict in self.held.pop(call_id, ()):
                    view.add_verdict(verdict)
            return
        for verdicts in self.held.values():
            for verdict in verdicts:
                self.add_verdict(verdict)
        self.held.clear()

    def show_notice(self, text: str, kind: str) -> None:
        self.notice.update(text)
        self.notice.set_classes(f"notice {kind}")
        self.notice.display = True
