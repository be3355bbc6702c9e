"""The API's access check: every route passes here, and its rule comes from access.API_RULES.

One transaction per request: look the token up (by its SHA-256), check its scopes
against the route's action, count the request against the token's rate limit,
mark the token used and write the use to the audit trail. A route marked
`checks_in_own_transaction` (publishing) runs these checks as the first step of
its own write transaction, so its request takes one transaction, not two.

Local mode: a caller on this machine (loopback) needs no token, like the console's
pages; a token, if sent, is checked all the same. Hosted mode: always a token.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.engine import Connection

from kwik_console.api import ratelimit
from kwik_console.api.problems import ApiProblem
from kwik_console.core import client_address
from kwik_console.core.clock import utcnow
from kwik_console.core.network import is_loopback
from kwik_console.core.settings import get_settings
from kwik_console.store.db import get_engine
from kwik_console.store.writes import WriterBusy, short_write
from kwik_console.team import access, audit, tokens


@dataclasses.dataclass(frozen=True)
class Caller:
    actor: audit.Actor | None  # None only while `pending`
    # Whose idempotency keys and rate limit: "token:<id>", or "local".
    owner: str
    token: tokens.TokenCaller | None = None
    address: str = ""
    # A token not yet checked: the route checks it in its own transaction (`transaction`).
    pending: _Admission | None = None


def rule_for(request: Request) -> tuple[str, access.Action | None]:
    route = request.scope.get("route")
    name = f"{request.method} {getattr(route, 'path_format', None) or request.url.path}"  # no URL built if routed
    return name, access.API_RULES.get(name)


def _unauthorized(detail: str) -> ApiProblem:
    return ApiProblem(401, "unauthorized", "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="kwik"'})


@dataclasses.dataclass(frozen=True)
class _Admission:
    """What the guard read from a request with a token, before the database has been asked about it."""

    request: Request
    route: str
    action: access.Action | None
    address: str
    text: str


def sees_secrets(caller: Caller) -> bool:
    """Whether the caller may see signing secrets, and so custom header values: a token whose scopes allow
    it, or the local console's own caller (on loopback, with no token)."""
    if caller.token is not None:
        return access.token_may(caller.token.scopes, access.Action.REVEAL_SECRET)
    return caller.owner == "local"


async def authorize(request: Request) -> Caller:
    # On the event loop: only a token's check goes to a thread, and not even that for a route that checks it
    # in its own transaction (one thread hop per request, not two).
    route, action = rule_for(request)
    address = client_address.of_request(request)  # behind a trusted proxy, the address it forwarded
    header = request.headers.get("authorization")
    settings = get_settings()
    if header is None:
        if settings.local_mode and is_loopback(address):
            if action is None:
                raise _no_rule(route)
            return Caller(actor=audit.LOCAL, owner="local", address=address)
        raise _unauthorized(
            "Send an access token: Authorization: Bearer kwik_…. An admin makes one on the "
            "Access tokens page or with `kwik-console tokens create`."
        )
    scheme, _, text = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not text.strip():
        raise _unauthorized("The Authorization header must be: Bearer kwik_….")
    admission = _Admission(request, route, action, address, text.strip())
    if getattr(request.scope.get("route"), "endpoint", None) in _CHECKED_IN_ROUTE:
        request.state.unchecked_token = admission  # for check_unchecked_token, if the route never runs
        return Caller(actor=None, owner="", pending=admission)
    return await run_in_threadpool(_admit_alone, admission)


async def check_unchecked_token(request: Request) -> None:
    """Before answering a request refused before its route ran (its body, say): the token the guard left
    to the route is checked now, and the use audited and counted. Raises its refusal."""
    admission = getattr(request.state, "unchecked_token", None)
    if admission is not None:
        await run_in_threadpool(_admit_alone, admission)


def _admit_alone(admission: _Admission) -> Caller:

    with short_write(get_engine()) as connection:
        caller, refusal = _admit(connection, admission)
    if refusal is not None:
        raise refusal
    return caller


def _admit(connection, admission: _Admission, *, count: bool = True) -> tuple[Caller | None, ApiProblem | None]:
    """The token's checks, in the caller's transaction: its refusal, if any, is committed with its audit entry.

    count=False leaves the rate limit's count and the use's audit entry to `_count`, later in the transaction.
    """
    try:
        token = tokens.check(connection, admission.text, utcnow())
    except tokens.TokenRefused as exc:
        return None, _unauthorized(str(exc))
    route, action = admission.route, admission.action
    caller = Caller(actor=token.actor, owner=f"token:{token.id}", token=token, address=admission.address)
    if not access.token_may(token.scopes, action):
        audit.append(
            connection,
            actor=caller.actor,
            action="access.refused",
            target=route,
            client_address=admission.address,
            detail={"scopes": sorted(token.scopes)},
        )
        if action is None:
            return caller, _no_rule(route)
        needs = [s for s in tokens.SCOPES if action in access.SCOPE_ACTIONS[s]]
        return caller, ApiProblem(
            403,
            "forbidden",
            "Forbidden",
            f"This token's scopes ({', '.join(sorted(token.scopes))}) do not allow {route}; "
            f"it needs the {' or '.join(needs) or 'admin'} scope.",
        )
    return caller, _count(connection, caller, admission) if count else None


def _count(connection, caller: Caller, admission: _Admission) -> ApiProblem | None:
    """Count the request against the token's rate limit and audit the use; a problem if it is over the limit."""
    verdict = ratelimit.hit(connection, caller.owner, utcnow(), get_settings().api_rate_limit)
    audit.append_entries(connection, [use_entry(caller, admission, rate_limited=not verdict.allowed)])
    admission.request.state.rate_limit_headers = verdict.headers
    if verdict.allowed:
        return None
    return ApiProblem(
        429,
        "rate_limited",
        "Too many requests",
        f"This token may make {verdict.limit} requests a minute; try again in {verdict.reset_seconds} s.",
        headers=verdict.headers,
    )


def use_entry(caller: Caller, admission: _Admission, *, rate_limited: bool = False) -> dict:
    """The audit entry of one use of a token."""
    return audit.entry(
        caller.actor,
        "token.used",
        admission.route,
        {"scopes": sorted(caller.token.scopes)} | ({"rate_limited": True} if rate_limited else {}),
        admission.address,
    )


# Routes whose own write transaction runs the token's checks as its first step: one
# transaction (and on SQLite one turn of the writer lock) per request instead of two.
_CHECKED_IN_ROUTE: set[Callable] = set()


def checks_in_own_transaction(endpoint: Callable) -> Callable:
    """Mark a route that opens `transaction(caller)` before anything else; the guard then leaves the check to it."""
    _CHECKED_IN_ROUTE.add(endpoint)
    return endpoint


@contextlib.contextmanager
def transaction(caller: Caller) -> Iterator[tuple[Caller, Connection]]:
    """A write transaction for a route marked `checks_in_own_transaction`, and the caller it admitted.

    A refused token writes its audit entry and raises its problem, and the route's
    work does not run. When the work fails (or the request is over the rate limit),
    its rollback takes the check's writes with it, so they are written again: every
    use is audited and counted.
    """

    engine = get_engine()
    admission = caller.pending
    if admission is None:  # no token to check: a local caller
        with short_write(engine) as connection:
            yield caller, connection
        return
    try:
        with short_write(engine) as connection:
            admitted, refusal = _admit(connection, admission, count=False)
            if refusal is None and ratelimit.used_up(
                connection, admitted.owner, utcnow(), get_settings().api_rate_limit
            ):
                refusal = _count(connection, admitted, admission)  # over the limit already: no work at all
            if refusal is None:
                yield admitted, connection
                # Counted last: on PostgreSQL the token's count stays locked until the commit, and every
                # other request of the token waits for it. Over the limit, the work is rolled back.
                refusal = _count(connection, admitted, admission)
                if refusal is not None:
                    raise refusal
                return
    except WriterBusy:  # nothing was written: all of it runs again, on a thread (writes.run_short_write)
        raise
    except Exception:
        with short_write(engine) as connection:
            _admit(connection, admission)
        raise
    raise refusal


class Alone(Exception):
    """A request sharing a transaction (api/batches.py) went past its token's limit: the transaction rolls
    back, and each of its requests runs in a transaction of its own (`transaction`), which answers it as ever."""


def admit_together(connection, callers: list[Caller]) -> list[Caller | ApiProblem]:
    """`transaction`'s checks for requests that share `connection`'s transaction, each token looked up once.
    A request refused gets its refusal, written as `transaction` writes it: its audit entry, and for a token
    known to be over its limit its count. Rows are locked in one order (tokens, then counts, each sorted), so
    that transactions sharing tokens never wait for each other in a circle."""
    admissions = [c.pending for c in callers]
    looked_up = {}
    for text in sorted({a.text for a in admissions if a is not None}):
        first = next(a for a in admissions if a is not None and a.text == text)
        looked_up[text] = (first, *_admit(connection, first, count=False))
    out: list[Caller | ApiProblem] = []
    for caller, admission in zip(callers, admissions, strict=True):
        if admission is None:  # no token to check: a local caller
            out.append(caller)
            continue
        first, admitted, refusal = looked_up[admission.text]
        if refusal is not None and admission is not first:
            refusal = _admit(connection, admission, count=False)[1]  # its own audit entry, as alone
        out.append(refusal or dataclasses.replace(admitted, address=admission.address))
    now, limit = utcnow(), get_settings().api_rate_limit
    for i in sorted(
        (i for i, a in enumerate(out) if isinstance(a, Caller) and a.token is not None), key=lambda i: out[i].owner
    ):
        if ratelimit.used_up(connection, out[i].owner, now, limit):
            refusal = _count(connection, out[i], admissions[i])
            if refusal is None:  # a new window began: counted already, so counting it again later would be wrong
                raise Alone
            out[i] = refusal
    return out


def count_together(connection, callers: list[Caller], admitted: list[Caller]) -> None:
    """`_count` for `callers`, which `admit_together` admitted: one count per token, by its number of requests,
    and one INSERT of their uses. Raises Alone when a count goes past the limit."""
    uses: dict[str, list[tuple[Caller, _Admission]]] = {}
    for caller, admission in zip(admitted, (c.pending for c in callers), strict=True):
        if admission is not None:
            uses.setdefault(caller.owner, []).append((caller, admission))
    for owner in sorted(uses):
        its = uses[owner]
        verdict = ratelimit.hit(connection, owner, utcnow(), get_settings().api_rate_limit, requests=len(its))
        if not verdict.allowed:
            raise Alone
        for count, (_, admission) in enumerate(its, start=verdict.count - len(its) + 1):  # each request's own
            admission.request.state.rate_limit_headers = dataclasses.replace(verdict, count=count).headers
    audit.append_entries(connection, [use_entry(c, a) for its in uses.values() for c, a in its])


def _no_rule(route: str) -> ApiProblem:
    # A route added without a rule in access.API_RULES is refused for everyone (and a test fails).
    return ApiProblem(403, "forbidden", "Forbidden", f"{route} has no access rule.")


CallerDep = Annotated[Caller, Depends(authorize)]
