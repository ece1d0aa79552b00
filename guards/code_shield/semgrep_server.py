"""A warm semgrep: one `semgrep lsp` process per language, kept running, so a scan costs milliseconds, not a start.

A semgrep process start costs about 100 ms of CPU before it reads a rule (its OCaml runtime and parsers), so a
fresh process per snippet cannot scan in under 100 ms. Semgrep's language server loads the rules once and scans a
file each time one is opened. The protocol is JSON-RPC over stdio (Content-Length framed). What it needs, as
measured with semgrep 1.185.0: the file must exist on disk inside the workspace folder and be announced with
`workspace/didCreateFiles` before `textDocument/didOpen`; otherwise it logs "No targets to scan" and publishes an
empty diagnostics list, indistinguishable from "no findings". It scans the file on disk, not the text sent.

So a scan is only believed when it proves itself: a marker rule (`ga-scan-marker`, a regex matching the first
character of any file of the language) must be among each file's diagnostics. A server that fails in any way
(crash, timeout, garbage, a missing marker) is discarded and the caller falls back to a fresh semgrep process,
whose report is checked as before (semgrep_runner). Diagnostics are turned back into semgrep's JSON results (rule
id, message, severity, line, column, the rule's metadata), so Code Shield's own parser reads them unchanged.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from guards.code_shield.semgrep_runner import SemgrepError

MARKER_RULE = "ga-scan-marker"
_SEVERITIES: dict[object, str] = {1: "ERROR", 2: "WARNING", 3: "INFO", 4: "INFO"}  # LSP severity -> semgrep's
_servers: dict[tuple[int, str, tuple[str, ...]], SemgrepServer] = {}
_servers_lock = threading.Lock()


class SemgrepServer:
    """One `semgrep lsp` process with a fixed set of rule files. `scan` is blocking and serialised."""

    def __init__(self, binary: str, configs: Sequence[Path], language: str, *, start_timeout_s: float = 60.0) -> None:
        self.binary = binary
        self.configs = [Path(c) for c in configs]
        self.language = language
        self.start_timeout_s = start_timeout_s
        self.metadata: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._ids = itertools.count(1)
        self._files = itertools.count()
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    # ------------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="semgrep-lsp-"))
        workspace = self._dir / "workspace"
        workspace.mkdir()
        marker = self._dir / "marker.yaml"
        marker.write_text(json.dumps({"rules": [{
            "id": MARKER_RULE, "languages": [self.language], "severity": "INFO", "message": "scanned",
            "pattern-regex": "(?s)\\A.",
        }]}))
        self.metadata = _rule_metadata(self.configs)
        self._process = subprocess.Popen(
            [self.binary, "lsp"],
            cwd=workspace,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        threading.Thread(target=self._read, name="semgrep-lsp-reader", daemon=True).start()
        uri = workspace.as_uri()
        options = {
            "scan": {"configuration": [str(c) for c in [*self.configs, marker]], "exclude": [], "include": [],
                     "jobs": 1, "maxMemory": 0, "maxTargetBytes": 0, "onlyGitDirty": False, "ci": False},
            "trace": {"server": "off"}, "metrics": {"enabled": False}, "doHover": False,
        }
        self._send({"id": next(self._ids), "method": "initialize", "params": {
            "processId": os.getpid(), "rootUri": uri, "workspaceFolders": [{"uri": uri, "name": "snippets"}],
            "capabilities": {}, "initializationOptions": options}})
        self._send({"method": "initialized", "params": {}})
        self._wait(lambda m: m.get("method") == "semgrep/rulesRefreshed", self.start_timeout_s, "load its rules")

    def close(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            try:
                if process.stdin is not None:
                    process.stdin.close()  # the server exits on end of input
                process.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # ------------------------------------------------------------------------------------------------------ scan

    def scan(self, codes: Sequence[str], extension: str, timeout_s: float) -> list[list[dict[str, Any]]]:
        """Semgrep JSON results per code (as `semgrep --json` prints them); SemgrepError on any doubt."""
        with self._lock:
            if not self.alive or self._dir is None:
                raise SemgrepError("the semgrep server is not running")
            deadline = time.monotonic() + timeout_s
            return [self._scan_one(code, extension, deadline) if code else [] for code in codes]

    def _scan_one(self, code: str, extension: str, deadline: float) -> list[dict[str, Any]]:
        assert self._dir is not None
        path = self._dir / "workspace" / f"snippet_{next(self._files)}{extension}"
        path.write_text(code, encoding="utf-8")
        uri = path.as_uri()
        try:
            self._send({"method": "workspace/didCreateFiles", "params": {"files": [{"uri": uri}]}})
            self._send({"method": "textDocument/didOpen", "params": {"textDocument": {
                "uri": uri, "languageId": self.language, "version": 1, "text": code}}})
            message = self._wait(
                lambda m: m.get("method") == "textDocument/publishDiagnostics" and m["params"].get("uri") == uri,
                deadline - time.monotonic(),
                "scan a snippet",
            )
            self._send({"method": "textDocument/didClose", "params": {"textDocument": {"uri": uri}}})
            self._send({"method": "workspace/didDeleteFiles", "params": {"files": [{"uri": uri}]}})
        finally:
            path.unlink(missing_ok=True)
        diagnostics = message["params"].get("diagnostics")
        if not isinstance(diagnostics, list) or not any(d.get("code") == MARKER_RULE for d in diagnostics):
            raise SemgrepError("the semgrep server did not prove it scanned the snippet (no marker finding)")
        return [self._result(d, str(path)) for d in diagnostics if d.get("code") != MARKER_RULE]

    def _result(self, diagnostic: dict[str, Any], path: str) -> dict[str, Any]:
        start = diagnostic["range"]["start"]
        end = diagnostic["range"]["end"]
        rule = str(diagnostic["code"])
        return {
            "check_id": rule,
            "path": path,
            "start": {"line": start["line"] + 1, "col": start["character"] + 1},
            "end": {"line": end["line"] + 1, "col": end["character"] + 1},
            "extra": {
                "message": diagnostic.get("message", ""),
                "severity": _SEVERITIES.get(diagnostic.get("severity"), "INFO"),
                "metadata": self.metadata.get(rule, {}),
            },
        }

    # -------------------------------------------------------------------------------------------------- protocol

    def _send(self, message: dict[str, Any]) -> None:
        process = self._process
        if process is None or process.stdin is None:
            raise SemgrepError("the semgrep server is not running")
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        try:
            process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            process.stdin.flush()
        except OSError as exc:
            raise SemgrepError(f"the semgrep server stopped reading: {exc}") from exc

    def _wait(self, wanted: Any, timeout_s: float, doing: str) -> dict[str, Any]:
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            try:
                message = self._messages.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise SemgrepError(f"the semgrep server did not {doing} in time") from None
            if message is None:
                raise SemgrepError(f"the semgrep server exited before it could {doing}")
            if "id" in message and "method" in message:  # a request to us (progress tokens): acknowledge it
                self._send({"id": message["id"], "result": None})
            elif wanted(message):
                return message

    def _read(self) -> None:
        process = self._process
        stream = process.stdout if process is not None else None
        try:
            while stream is not None:
                length = None
                while True:
                    line = stream.readline()
                    if not line:
                        return
                    if line in (b"\r\n", b"\n"):
                        break
                    name, _, value = line.decode("ascii", "replace").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length is None:
                    return
                self._messages.put(json.loads(stream.read(length)))
        except (OSError, ValueError):
            return
        finally:
            self._messages.put(None)


def _rule_metadata(configs: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """Rule id -> metadata (cwe_id, ...) of every rule file, which the diagnostics leave out."""
    import yaml

    metadata: dict[str, dict[str, Any]] = {}
    for config in configs:
        files = sorted(config.rglob("*.yaml")) if config.is_dir() else [config]
        for file in files:
            text = file.read_text(encoding="utf-8")
            document = json.loads(text) if file.suffix == ".json" else yaml.safe_load(text)
            for rule in (document or {}).get("rules", []):
                metadata[str(rule.get("id"))] = dict(rule.get("metadata") or {})
    return metadata


def server_for(
    binary: str, configs: Sequence[Path], language: str, *, verify: Callable[[SemgrepServer], None] | None = None
) -> SemgrepServer:
    """The running server for these rules in this process (started, then `verify`-ed, on first use)."""
    key = (os.getpid(), language, tuple(str(c) for c in configs))  # a forked child starts its own
    with _servers_lock:
        server = _servers.get(key)
        if server is not None and server.alive:
            return server
        if server is not None:
            server.close()
        server = SemgrepServer(binary, configs, language)
        try:
            server.start()
            if verify is not None:
                verify(server)
        except BaseException:
            server.close()
            raise
        _servers[key] = server
        return server


def discard(server: SemgrepServer) -> None:
    """Stop a server that failed; the next scan starts a fresh one."""
    with _servers_lock:
        for key, value in list(_servers.items()):
            if value is server:
                del _servers[key]
    server.close()


@atexit.register
def close_all() -> None:
    with _servers_lock:
        servers = [s for (pid, *_), s in _servers.items() if pid == os.getpid()]
        _servers.clear()
    for server in servers:
        server.close()
