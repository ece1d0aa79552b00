"""The app factory: one process, one policy, one agent. Guards and models load once, in the background, before
`/readyz` says ready (`/healthz` answers meanwhile; other routes answer 503 until then).

    app = create_app(ServerSettings(policy_path=Path("policy.yaml"), keys=KeyStore.load(None)))
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request  # this module is imported only when serving: fastapi resolves handler annotations here

from assistant.api import Assistant
from assistant.images import body_allowance, images_refusal
from assistant.server import chat_routes, threads_routes
from assistant.server.admission import Admission
from assistant.server.agent_bridge import Bridge, TimedBackend
from assistant.server.auth import KeyStore, Owners, ThreadOwners
from assistant.server.errors import ApiError, error_response
from assistant.server.limits import BodyLimit
from assistant.server.metrics import Metrics, RequestMetrics
from assistant.server.perimeter import JsonDepthLimit, Perimeter
from assistant.server.tracing import TraceContext
from assistant.server.trust import TrustStore
from assistant.storage import shared_owners
from guards.policy import Policy, load_policy

log = logging.getLogger("assistant.server")
SERVED_MODEL = "guarded-assistant"


@dataclass
class ServerSettings:
    policy_path: Path
    keys: KeyStore
    model: str | None = None  # --model SPEC, overriding the policy's main model
    db_path: Path | None = None  # threads database (default: under the data dir)
    tiny_dir: Path | None = None


@dataclass
class Server:
    """Everything a request needs, built once per process."""

    settings: ServerSettings
    policy: Policy
    keys: KeyStore
    slots: Admission
    db_path: Path = Path()  # the agent's threads database, known once the agent is built
    metrics: Metrics = field(default_factory=Metrics)
    trust: TrustStore = field(default_factory=TrustStore)
    # Built by `load`; the routes reach them only once `ensure_ready` passed.
    assistant: Assistant = field(init=False)
    bridge: Bridge = field(init=False)
    _owners: ThreadOwners | None = field(default=None, init=False, repr=False)
    ready: bool = False
    images_taken: bool = False  # this policy judges images and its main model takes them (assistant/images.py)
    load_errors: list[str] = field(default_factory=list)
    model_name: str = SERVED_MODEL

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> Server:
        policy = load_policy(settings.policy_path)
        limits, metrics = policy.server, Metrics()
        slots = Admission(limits.max_concurrent_turns, queue_size=limits.queue_size, timeout_s=limits.queue_timeout_s,
                          retry_after_s=limits.retry_after_s, metrics=metrics)
        return cls(settings, policy, settings.keys, slots, metrics=metrics)

    @property
    def owners(self) -> ThreadOwners:
        """Which API key owns which thread (built with the agent, once its threads database is known)."""
        if self._owners is None:
            raise ApiError(503, "the server is not ready: the models are still loading", "not_ready",
                           headers={"Retry-After": "5"})
        return self._owners

    def close(self) -> None:
        if self._owners is not None:
            self._owners.close()

    async def load(self) -> None:
        """Build the agent and load every model now; a model that fails to load is reported by /readyz and its
        guard fails closed on each check (the agent never runs unguarded)."""
        try:
            await self._load()
        except Exception as exc:  # never leave /readyz saying "loading" forever
            self.load_errors.append(f"agent: {type(exc).__name__}: {exc}")
            log.error("cannot build the agent: %s", exc)

    async def _load(self) -> None:
        s = self.settings
        bot = await asyncio.to_thread(Assistant.from_policy, s.policy_path, model=s.model, db_path=s.db_path,
                                      tiny_dir=s.tiny_dir)
        bot = bot.replace(backend=TimedBackend(bot.backend, self.metrics.model_latency.observe), interface="server")
        self.db_path = Path(bot.db_path)
        owners_path = self.db_path.with_name(self.db_path.stem + ".owners.sqlite")
        self._owners = shared_owners(self.policy) or Owners(owners_path)  # postgres: one table for every replica
        loads: dict[str, Callable[[], object]] = {"main model": bot.backend.load}
        loads.update({f"guard {name}": r.load for name, r in bot.pipeline.runners.items()})
        names = list(loads)
        if len(names) > 1:  # transformers' lazy module is not safe to import from several threads at once
            await asyncio.to_thread(_import_transformers)
        results = await asyncio.gather(*(asyncio.to_thread(loads[n]) for n in names), return_exceptions=True)
        for name, result in zip(names, results, strict=True):
            if isinstance(result, BaseException):
                self.load_errors.append(f"{name}: {type(result).__name__}: {result}")
                log.error("%s failed to load: %s", name, result)
        self.assistant = bot
        self.bridge = Bridge(bot.deps)
        self.images_taken = images_refusal(self.policy, bot.pipeline, bot.backend) is None
        self.ready = True

    @property
    def body_limit(self) -> int:
        """`server.max_body_bytes`, plus room for a message's images (inline, base64) where images are taken."""
        extra = body_allowance(self.policy) if self.images_taken else 0
        return self.policy.server.max_body_bytes + extra

    def authenticate(self, request: Any) -> str:
        key_id = self.keys.identify(request.headers.get("authorization"))
        if key_id is None:
            raise ApiError(401, "missing or wrong API key: send `Authorization: Bearer KEY`", "invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})
        return key_id

    def ensure_ready(self) -> None:
        if not self.ready:
            why = "; ".join(self.load_errors) or "the models are still loading"
            raise ApiError(503, f"the server is not ready: {why}", "not_ready", headers={"Retry-After": "5"})


def _import_transformers() -> None:
    import transformers

    for name in ("AutoModelForCausalLM", "AutoModelForSequenceClassification", "AutoTokenizer"):
        getattr(transformers, name, None)


def create_app(settings: ServerSettings) -> Any:
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse, Response

    server = Server.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        loading = asyncio.create_task(server.load())
        try:
            yield
        finally:
            loading.cancel()
            server.close()

    api = FastAPI(title="guarded-assistant", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    api.state.server = server

    @api.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> Any:
        return error_response(exc)

    from starlette.exceptions import HTTPException

    @api.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException) -> Any:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(ApiError(exc.status_code, str(exc.detail), code))

    @api.exception_handler(RecursionError)
    async def on_too_deep(request: Request, exc: RecursionError) -> Any:  # a backstop for JsonDepthLimit
        return error_response(ApiError(400, "the request is nested too deeply to process", "json_too_deep"))

    @api.exception_handler(Exception)
    async def on_error(request: Request, exc: Exception) -> Any:
        log.exception("internal error")
        return error_response(ApiError(500, f"internal error: {type(exc).__name__}", "internal_error"))

    def caller(request: Request, *, ready: bool = True) -> str:
        key_id = server.authenticate(request)
        if ready:
            server.ensure_ready()
        return key_id

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz() -> Any:
        if server.ready and not server.load_errors:
            return {"status": "ready"}
        status = "loading" if not server.ready and not server.load_errors else "degraded"
        return JSONResponse({"status": status, "errors": server.load_errors}, status_code=503)

    @api.get("/metrics")
    async def metrics(request: Request) -> Any:
        caller(request, ready=False)
        body, content_type = server.metrics.render()
        return Response(body, media_type=content_type)

    @api.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        caller(request, ready=False)
        return {"object": "list", "data": [{"id": server.model_name, "object": "model", "created": 0,
                                            "owned_by": "guarded-assistant"}]}

    @api.get("/v1/tools")
    async def tools(request: Request) -> dict[str, Any]:
        caller(request)
        return {"object": "list", "data": server.assistant.tool_listing()}

    @api.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        return await chat_routes.handle_chat(server, request, caller(request))

    @api.post("/v1/threads")
    async def create_thread(request: Request) -> Any:
        return await threads_routes.create_thread(server, caller(request))

    @api.get("/v1/threads/{thread_id}")
    async def get_thread(thread_id: str, request: Request) -> Any:
        return await threads_routes.thread_info(server, thread_id, caller(request))

    @api.delete("/v1/threads/{thread_id}")
    async def delete_thread(thread_id: str, request: Request) -> Any:
        return await threads_routes.delete_thread(server, thread_id, caller(request))

    @api.post("/v1/threads/{thread_id}/messages")
    async def post_message(thread_id: str, request: Request) -> Any:
        return await threads_routes.post_message(server, request, thread_id, caller(request))

    @api.post("/v1/threads/{thread_id}/approval")
    async def post_approval(thread_id: str, request: Request) -> Any:
        return await threads_routes.post_approval(server, request, thread_id, caller(request))

    # Outside in: trace, count, refuse by headers (Host, Origin, Content-Type), bound the body, bound its nesting.
    limited = BodyLimit(JsonDepthLimit(api), lambda: server.body_limit)
    metered = RequestMetrics(Perimeter(limited, keyless=lambda: not server.keys.enabled), lambda: server.metrics)
    app = TraceContext(metered, lambda: server.policy)  # outermost: a span per request when tracing (tracing.py)
    app.state = api.state  # type: ignore[attr-defined]  # RequestMetrics is bare ASGI; tests read the app's state
    return app
