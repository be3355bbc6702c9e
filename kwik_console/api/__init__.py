"""The REST API under /api/v1: a face like ui/ and cli.py. It parses, calls the services and shapes answers.

`mount` puts it in front of the console through Reflex's `api_transformer`, on the
same process and port; `create_app` serves it alone (tests, benchmarks):

    granian --interface asgi --factory kwik_console.api:create_app
"""

from __future__ import annotations

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kwik_console import __version__
from kwik_console.api import docs, handlers, operations, problems, routes, stream
from kwik_console.api.auth import authorize
from kwik_console.core import process
from kwik_console.core.settings import get_settings
from kwik_console.runtime import wiring
from kwik_console.team import access

PREFIX = access.API_PREFIX
_BODY_METHODS = {"POST", "PUT", "PATCH"}

DESCRIPTION = """Webhooks, the event catalogue, the event log and publishing, as the console offers them.

**Access tokens.** Send `Authorization: Bearer kwik_…`. Admins make tokens on the console's Access tokens page
or with `kwik-console tokens create`; each has scopes: `read`, `write` (webhooks, tests, signing secrets,
pause, resend and recover) and `publish` (`POST /events`). The operational webhook is an admin's: no scope
reaches it. In local mode, calls from this machine need no token.

**Errors** are RFC 9457 problem details (`application/problem+json`); `errors` names each field at fault.

**Rate limits** are per token: `RateLimit-*` headers on every answer, `429` with `Retry-After` past the limit.
"""


# The order of the interactive page's sections (routes are matched in another order: routes.py).
TAGS = [
    {"name": name} for name in ("event types", "webhooks", "deliveries", "events", "recoveries", "operational webhook")
]


class _Gate:
    """Before any route: bodies over the limit (413) or not JSON (415) are refused, unread past the limit, and
    bodies too deep to parse (or with a number too long to read) are kept from the parser; the rate-limit
    headers the guard worked out go on every answer, errors included. POST /events, the busiest route, is
    answered here when its parameters parse (`routes.publish_directly`)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if scope["method"] in _BODY_METHODS:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            body, refusal = await self._read_body(headers, receive)
            if refusal is None and body and not _is_json(headers.get("content-type", "")):
                refusal = problems.problem_response(
                    path,
                    415,
                    "unsupported_media_type",
                    "Unsupported media type",
                    "Send the body as JSON, with Content-Type: application/json.",
                )
            if refusal is not None:
                await refusal(scope, receive, send)
                return
            if body and (unreadable := problems.unreadable_body(body, event=path == routes.PUBLISH_PATH)):
                # Parsing and what walks its result recurse: the route never sees this body. It sees none, and the
                # validation handler answers with these errors after the token's check, as for any other bad body.
                scope.setdefault("state", {})[problems.UNREADABLE_BODY] = unreadable
                body = b""
            receive = _replay(body, receive)
        else:
            body = None

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = (scope.get("state") or {}).get("rate_limit_headers")
                if extra:
                    present = {k.lower() for k, _ in message.get("headers", [])}
                    message["headers"] = list(message.get("headers", [])) + [
                        (k.lower().encode(), v.encode()) for k, v in extra.items() if k.lower().encode() not in present
                    ]
            await send(message)

        if (
            body is not None
            and path == routes.PUBLISH_PATH
            and scope["method"] == "POST"
            and await routes.publish_directly(scope, body, receive, send_with_headers)
        ):
            return
        await self.app(scope, receive, send_with_headers)

    @staticmethod
    async def _read_body(headers: dict[str, str], receive: Receive):
        def too_large():
            return problems.problem_response(
                None,
                413,
                "body_too_large",
                "Body too large",
                f"The request body is larger than {problems.MAX_BODY_BYTES:,} bytes.",
            )

        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > problems.MAX_BODY_BYTES:
            return b"", too_large()
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > problems.MAX_BODY_BYTES:
                return b"", too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks), None


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect, as the server would say it

    return replay


def create_app() -> FastAPI:

    process.short_gil_turns()  # its routes' database work runs on threads
    wiring.install()  # test sends and resends run the engine in this process
    app = FastAPI(
        title="Kwik Console API",
        version=__version__,
        description=DESCRIPTION,
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    guarded = {"dependencies": [Depends(authorize)], "responses": problems.PROBLEM_RESPONSES}
    app.include_router(routes.router, **guarded)
    app.include_router(operations.router, **guarded)
    app.include_router(stream.router, **guarded)
    app.include_router(docs.router)
    handlers.install(app)

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes, tags=TAGS
            )
            components = schema.setdefault("components", {})
            components.setdefault("schemas", {}).update(problems.openapi_components() | stream.openapi_components())
            components["securitySchemes"] = {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "kwik_ access token",
                    "description": "An access token, kwik_…; optional for calls from this machine in local mode.",
                }
            }
            # Local mode takes calls from this machine without a token (auth.authorize): the token is one choice,
            # the empty requirement the other. Hosted mode always needs one.
            schema["security"] = [{}, {"bearer": []}] if get_settings().local_mode else [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    app.add_middleware(_Gate)
    process.freeze_startup_objects()
    return app


def mount(console: ASGIApp) -> ASGIApp:
    """The API in front of the console: /api/v1/... goes to the API, everything else to Reflex, untouched."""
    api = create_app()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] in ("http", "websocket") else ""
        if path == PREFIX or path.startswith(PREFIX + "/"):
            await api(scope, receive, send)
        else:
            await console(scope, receive, send)

    return app


__all__ = ["PREFIX", "create_app", "mount"]
