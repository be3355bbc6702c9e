"""Sign in, accept a link, sign out: plain HTTP form posts, because only an HTTP response can set an HttpOnly cookie.

Mounted in front of Reflex with `api_transformer`. Each POST checks its Origin
against KWIK_PUBLIC_URL: a form on another site can post here, and SameSite
does not protect the sign-in form (there is no cookie yet to withhold).

Every answer is a small page that forgets the tab's Reflex client token and
moves on: the next member in this tab starts from a fresh state, never from the
previous member's (a revealed secret, say), and the new socket carries the new cookie.
"""

from __future__ import annotations

import html
import json
import logging
import urllib.parse

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from kwik_console.core import client_address
from kwik_console.core.errors import InvalidInput
from kwik_console.core.settings import get_settings
from kwik_console.store.db import session_scope
from kwik_console.team import audit, members, sessions

log = logging.getLogger(__name__)
MAX_FORM_BYTES = 8 * 1024


def _origin_ok(request: Request) -> bool:
    return request.headers.get("origin", "") == get_settings().public_url


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    parsed = urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def _address(request: Request) -> str:
    return client_address.of_request(request)  # behind a trusted proxy, the address it forwarded


def _go(location: str, *, token: str | None = None, clear: bool = False) -> Response:
    """A page that drops the tab's Reflex token, then goes to `location`; sets or clears the session cookie."""
    target = json.dumps(location)
    body = (
        "<!doctype html><meta charset=utf-8><title>Kwik Console</title>"
        f'<meta http-equiv="refresh" content="0;url={html.escape(location, quote=True)}">'
        f"<script>try{{sessionStorage.removeItem('token')}}catch(e){{}}location.replace({target})</script>"
    )
    response = HTMLResponse(body, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
    attributes = sessions.cookie_attributes()
    if token is not None:
        response.set_cookie(value=token, **attributes)
    if clear:
        response.delete_cookie(
            key=attributes["key"], path="/", secure=attributes["secure"], httponly=True, samesite="lax"
        )
    return response


def _refused() -> Response:
    return PlainTextResponse("This form must be sent from the console's own page.", status_code=403)


def _hosted_only(handler):
    async def wrapped(request: Request) -> Response:
        if get_settings().local_mode:
            return PlainTextResponse("Local mode has no sign-in.", status_code=404)
        if not _origin_ok(request):
            log.warning("refused %s from Origin %r", request.url.path, request.headers.get("origin"))
            return _refused()
        return await handler(request)

    return wrapped


@_hosted_only
async def sign_in(request: Request) -> Response:
    form = await _form(request)
    next_path = sessions.safe_next(form.get("next"))
    back = {"next": next_path}
    try:
        with session_scope() as session:
            _, token = members.sign_in(
                session=session,
                email=form.get("email", ""),
                password=form.get("password", ""),
                address=_address(request),
                user_agent=request.headers.get("user-agent", ""),
            )
    except members.Throttled as exc:
        back |= {"error": "throttled", "wait": str(exc.seconds)}
        return _try_again(back, form.get("email", ""))
    except InvalidInput:
        back |= {"error": "invalid"}
        return _try_again(back, form.get("email", ""))
    return _go(next_path, token=token)


def _try_again(query: dict[str, str], email: str) -> Response:
    """Back to the form with its error. The email comes back in the fragment, which no server or proxy log
    sees; the page fills it in (SignInState), so only the password is typed again."""
    fragment = "#" + urllib.parse.urlencode({"email": email[:320]}) if email else ""
    return RedirectResponse("/sign-in?" + urllib.parse.urlencode(query) + fragment, status_code=303)


@_hosted_only
async def accept(request: Request) -> Response:
    form = await _form(request)
    link = form.get("token", "")
    try:
        with session_scope() as session:
            _, token = members.sign_in_by_link(
                session=session,
                token=link,
                password=form.get("password", ""),
                confirm=form.get("confirm", ""),
                address=_address(request),
                user_agent=request.headers.get("user-agent", ""),
            )
    except InvalidInput as exc:
        message = next(iter(exc.errors.values()))
        code = next((c for c, m in members.PASSWORD_PROBLEMS.items() if m == message), "link")
        query = urllib.parse.urlencode({"token": link, "error": code})
        return RedirectResponse("/accept?" + query, status_code=303)
    return _go("/", token=token)


@_hosted_only
async def sign_out(request: Request) -> Response:
    form = await _form(request)
    token = request.cookies.get(sessions.COOKIE_NAME)
    everywhere = form.get("everywhere") == "1"
    with session_scope() as session:
        signed_in = sessions.end(session=session, token=token)
        if signed_in is not None:
            if everywhere:
                sessions.end_everywhere(session=session, member_id=signed_in.member_id)
            audit.record(
                session=session,
                actor=audit.Actor(signed_in.member_id, signed_in.email),
                action="sign_out.everywhere" if everywhere else "sign_out",
                target=signed_in.email,
                client_address=_address(request),
            )
    return _go("/sign-in?" + urllib.parse.urlencode({"signed_out": "everywhere" if everywhere else "1"}), clear=True)


PUBLIC_PREFIXES = (
    "/sign-in",
    "/accept",
    "/auth/",
    "/_event",
    "/_next/",
    "/assets/",
    "/favicon",
    "/ping",
    "/_health",
    "/_upload",
    "/_static",
    "/.well-known",
    "/robots.txt",
)


def _is_page_request(request: Request) -> bool:
    """A browser asking for a page (HTML), rather than a script, a style, an image or the websocket."""
    if request.method != "GET" or request.url.path.startswith(PUBLIC_PREFIXES):
        return False
    last = request.url.path.rsplit("/", 1)[-1]
    return "." not in last or last.endswith(".html")


class PageGate(BaseHTTPMiddleware):
    """Hosted mode: a page needs a live session, or the browser goes to sign in (the page's events are guarded too)."""

    async def dispatch(self, request: Request, call_next):
        if get_settings().local_mode or not _is_page_request(request):
            return await call_next(request)
        with session_scope() as session:
            signed_in = sessions.check(session=session, token=request.cookies.get(sessions.COOKIE_NAME))
        if signed_in is None:
            path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/sign-in?" + urllib.parse.urlencode({"next": path}), status_code=303)
        return await call_next(request)


def app() -> Starlette:
    return Starlette(
        routes=[
            Route("/auth/sign-in", sign_in, methods=["POST"]),
            Route("/auth/accept", accept, methods=["POST"]),
            Route("/auth/sign-out", sign_out, methods=["POST"]),
        ],
        middleware=[Middleware(PageGate)],
    )
