"""The API's guard: every route passes here, and its rule comes from access.API_RULES.

One transaction per request: look the token up (by its SHA-256), check its scopes
against the route's action, count the request against the token's rate limit,
mark the token used and write the use to the audit trail.

Local mode: a caller on this machine (loopback) needs no token, like the console's
pages; a token, if sent, is checked all the same. Hosted mode: always a token.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Annotated

from fastapi import Depends, Request

from kwik_console import access, audit, tokens
from kwik_console.api import ratelimit
from kwik_console.api.problems import ApiProblem
from kwik_console.models import utcnow
from kwik_console.settings import get_settings


@dataclasses.dataclass(frozen=True)
class Caller:
    actor: audit.Actor
    # Whose idempotency keys and rate limit: "token:<id>", or "local".
    owner: str
    token: tokens.TokenCaller | None = None
    address: str = ""


def _is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def rule_for(request: Request) -> tuple[str, access.Action | None]:
    route = request.scope.get("route")
    name = f"{request.method} {getattr(route, 'path_format', request.url.path)}"
    return name, access.API_RULES.get(name)


def _unauthorized(detail: str) -> ApiProblem:
    return ApiProblem(401, "unauthorized", "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="kwik"'})


def guard(request: Request) -> Caller:
    route, action = rule_for(request)
    address = request.client.host if request.client else ""
    header = request.headers.get("authorization")
    settings = get_settings()
    if header is None:
        if settings.local_mode and _is_loopback(address):
            if action is None:
                raise _no_rule(route)
            return Caller(actor=audit.LOCAL, owner="local", address=address)
        raise _unauthorized("Send an access token: Authorization: Bearer kwik_…. An admin makes one on the "
                            "Tokens page or with `kwik-console tokens create`.")
    scheme, _, text = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not text.strip():
        raise _unauthorized("The Authorization header must be: Bearer kwik_….")
    from kwik_console.db import get_engine, one_writer

    now = utcnow()
    engine = get_engine()
    with one_writer(engine), engine.begin() as connection:
        try:
            token = tokens.check(connection, text.strip(), now)
        except tokens.TokenRefused as exc:
            refusal = _unauthorized(str(exc))
        else:
            refusal = None
            caller = Caller(actor=token.actor, owner=f"token:{token.id}", token=token, address=address)
            allowed = access.token_may(token.scopes, action)
            verdict = ratelimit.hit(connection, caller.owner, now, settings.api_rate_limit) if allowed else None
            audit.append(connection, actor=caller.actor, action="token.used" if allowed else "access.refused",
                         target=route, client_address=address, detail={"scopes": sorted(token.scopes)} | (
                             {} if verdict is None or verdict.allowed else {"rate_limited": True}))
    if refusal is not None:
        raise refusal
    if action is None:
        raise _no_rule(route)
    if verdict is None:
        needs = [s for s in tokens.SCOPES if action in access.SCOPE_ACTIONS[s]]
        raise ApiProblem(403, "forbidden", "Forbidden",
                         f"This token's scopes ({', '.join(sorted(token.scopes))}) do not allow {route}; "
                         f"it needs the {' or '.join(needs) or 'admin'} scope.")
    request.state.rate_limit_headers = verdict.headers
    if not verdict.allowed:
        raise ApiProblem(429, "rate_limited", "Too many requests",
                         f"This token may make {verdict.limit} requests a minute; try again in "
                         f"{verdict.reset_seconds} s.", headers=verdict.headers)
    return caller


def _no_rule(route: str) -> ApiProblem:
    # A route added without a rule in access.API_RULES is refused for everyone (and a test fails).
    return ApiProblem(403, "forbidden", "Forbidden", f"{route} has no access rule.")


CallerDep = Annotated[Caller, Depends(guard)]
