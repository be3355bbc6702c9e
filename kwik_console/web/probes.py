"""/healthz, /readyz and /metrics: a small Starlette app mounted in front of Reflex (`api_transformer`).

- /healthz: liveness. The process answers; nothing else is looked at, so a
  database outage never gets a healthy process restarted.
- /readyz: readiness. 200 when the database answers, its schema is at the
  code's revision, this process's delivery scheduler runs and reaches the
  database, and Redis answers when the console keeps state in it; otherwise 503,
  the body naming each check that failed. Public: the body says which check
  failed, never why (no address, no error text); the reason goes to the log.
- /metrics: Prometheus text (see web/metrics.py). Local mode: loopback only.
  Hosted mode: with KWIK_METRICS_TOKEN, only `Authorization: Bearer <token>`;
  without it, loopback only. "Loopback" means a direct request from this host:
  a request that came through a reverse proxy (it carries Forwarded,
  X-Forwarded-For or X-Real-IP), a browser's cross-site request (Origin) or a
  Host that is not a loopback name is refused, so a proxy on the same host
  does not make /metrics public, and neither can a web page.

Mounted after the sign-in routes, so hosted mode's page gate never sends a
probe to the sign-in page.
"""

from __future__ import annotations

import asyncio
import hmac
import logging

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from kwik_console.core.network import is_loopback
from kwik_console.core.settings import get_settings
from kwik_console.delivery import scheduler
from kwik_console.store import db, schema
from kwik_console.web import metrics

log = logging.getLogger(__name__)

# A probe that waits longer than this is answered "not ready" rather than left hanging.
CHECK_TIMEOUT_SECONDS = 5.0
NO_STORE = {"Cache-Control": "no-store"}
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers=NO_STORE)


def _database_checks() -> dict[str, str]:
    """The database and schema checks; blocking (run on a thread)."""
    try:
        state = schema.schema_state(db.get_engine())
    except schema.SchemaBehind:  # hosted mode opens no engine on a database that is behind
        return {"database": "ok", "schema": "behind: run `kwik-console db upgrade`"}
    except schema.SchemaUnknown:
        return {"database": "ok", "schema": "unknown revision: a newer release migrated this database"}
    except Exception:  # noqa: BLE001  any failure to open or read it means not ready
        log.warning("readiness: the database cannot be reached", exc_info=True)
        return {"database": "unreachable", "schema": "unknown"}
    return {"database": "ok", "schema": "ok" if state.up_to_date else f"behind: run `{schema.UPGRADE_COMMAND}`"}


def _scheduler_check() -> str:
    running = scheduler.current()
    if running is None:
        return "not running in this process"
    # The scheduler's own database steps fail while a probe's may pass (another connection, another path).
    return "ok" if running.dispatcher.database_trouble is None else "cannot reach the database"


async def _redis_check(url: str) -> str:
    """Whether the Redis the console keeps its tabs' state in answers a PING."""
    import redis.asyncio as redis  # only a console with KWIK_REDIS_URL loads it

    client = redis.from_url(url, socket_connect_timeout=CHECK_TIMEOUT_SECONDS, socket_timeout=CHECK_TIMEOUT_SECONDS)
    try:
        await asyncio.wait_for(client.ping(), CHECK_TIMEOUT_SECONDS)
    except Exception:  # noqa: BLE001  any failure to reach it means not ready
        log.warning("readiness: Redis cannot be reached", exc_info=True)
        return "unreachable"
    finally:
        await client.aclose()
    return "ok"


async def readyz(request: Request) -> Response:
    try:
        checks = await asyncio.wait_for(asyncio.to_thread(_database_checks), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        log.warning("readiness: the database did not answer within %g s", CHECK_TIMEOUT_SECONDS)
        checks = {"database": "timed out", "schema": "unknown"}
    checks["scheduler"] = _scheduler_check()
    if redis_url := get_settings().redis_url:
        checks["redis"] = await _redis_check(redis_url)
    ready = all(v == "ok" for v in checks.values())
    failed = [name for name, v in checks.items() if v != "ok"]
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks, "failed": failed},
        status_code=200 if ready else 503,
        headers=NO_STORE,
    )


def direct_from_this_host(request: Request) -> bool:
    """A request made on this host, straight to us: not through a proxy, not by a web page."""
    if not is_loopback(request.client.host if request.client else None):
        return False
    if any(h in request.headers for h in FORWARDING_HEADERS) or "origin" in request.headers:
        return False
    host = request.headers.get("host", "").lower()
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return is_loopback(name)


def metrics_allowed(request: Request) -> bool:
    settings = get_settings()
    if not settings.local_mode and settings.metrics_token:
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {settings.metrics_token}".encode())
    return direct_from_this_host(request)


async def metrics_page(request: Request) -> Response:
    if not metrics_allowed(request):
        hosted_with_token = not get_settings().local_mode and get_settings().metrics_token
        return PlainTextResponse(
            "Forbidden",
            status_code=401 if hosted_with_token else 403,
            headers={"WWW-Authenticate": "Bearer"} if hosted_with_token else None,
        )
    body = await asyncio.to_thread(metrics.render)
    return Response(body, media_type=metrics.CONTENT_TYPE, headers=NO_STORE)


def app() -> Starlette:
    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET", "HEAD"]),
            Route("/readyz", readyz, methods=["GET", "HEAD"]),
            Route("/metrics", metrics_page, methods=["GET"]),
        ]
    )
