"""Access tokens and scopes: who may call what, read from the database as it really is."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import warnings

import pytest
import sqlalchemy as sa

from kwik_console.core.errors import InvalidInput
from kwik_console.store.db import get_engine, session_scope
from kwik_console.store.token_tables import AccessToken
from kwik_console.team import access, audit, tokens
from tests.conftest import configure

warnings.filterwarnings("ignore", message=".*httpx2.*")
from fastapi.testclient import TestClient  # noqa: E402

from kwik_console.api import create_app  # noqa: E402

PUBLISH = {"type": "payment.created", "data": {"id": "pay_1"}}
WEBHOOK = {"name": "Orders", "url": "https://127.0.0.1:9/hooks", "events": ["payment.created"]}


def _token(scopes, **kw) -> str:
    with session_scope() as session:
        return tokens.create_token(
            session=session, name=kw.pop("name", "ci"), scopes=scopes, actor=audit.CLI, **kw
        ).token


def _client(address="127.0.0.1") -> TestClient:
    return TestClient(create_app(), client=(address, 50321))


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def remote(kwik):
    """A caller on another machine: in local mode too, it needs a token."""
    with _client("203.0.113.9") as client:
        yield client


def test_every_api_route_has_a_rule():
    from fastapi.routing import APIRoute
    from starlette.routing import Route

    def walk(routes):
        for route in routes:
            inner = getattr(route, "original_router", None)  # FastAPI's included routers
            if inner is not None:
                yield from walk(inner.routes)
            elif isinstance(route, (APIRoute, Route)):
                for method in sorted(route.methods - {"HEAD"}):
                    yield f"{method} {route.path}"

    routes = set(walk(create_app().router.routes))
    assert routes - set(access.API_RULES) == set(), "API routes without a rule in access.API_RULES"
    assert set(access.API_RULES) - routes == set(), "rules for API routes that no longer exist"
    assert len(routes) >= 15


@pytest.mark.parametrize(
    "scopes, allowed",
    [
        ("read", {"list", "get"}),
        ("write", {"list", "get", "create", "secret", "rotate"}),
        ("publish", {"publish"}),
        ("read,publish", {"list", "get", "publish"}),
    ],
)
def test_each_scope_is_enforced(remote, scopes, allowed):
    with session_scope() as session:
        from kwik_console.webhooks import rules
        from kwik_console.webhooks import service as webhooks

        webhook_id = webhooks.create_webhook(session=session, data=rules.WebhookInput(**WEBHOOK), actor=audit.CLI).id
    token = _bearer(_token(scopes))
    calls = {
        "list": lambda: remote.get("/api/v1/webhooks", headers=token),
        "get": lambda: remote.get(f"/api/v1/webhooks/{webhook_id}", headers=token),
        "create": lambda: remote.post("/api/v1/webhooks", json=WEBHOOK, headers=token),
        "secret": lambda: remote.get(f"/api/v1/webhooks/{webhook_id}/secret", headers=token),
        "rotate": lambda: remote.post(f"/api/v1/webhooks/{webhook_id}/secret/rotate", headers=token),
        "publish": lambda: remote.post("/api/v1/events", json=PUBLISH, headers=token),
    }
    for name, call in calls.items():
        response = call()
        if name in allowed:
            assert response.status_code < 300, (name, response.text)
        else:
            assert response.status_code == 403, (name, response.text)
            assert response.json()["code"] == "forbidden"


def test_no_token_from_another_machine_is_refused_even_in_local_mode(remote):
    response = remote.get("/api/v1/webhooks")
    assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")
    assert remote.get("/api/v1/webhooks", headers={"Authorization": "Basic dTpw"}).status_code == 401


def test_hosted_mode_always_requires_a_token(monkeypatch, kwik):
    configure(
        monkeypatch,
        KWIK_MODE="hosted",
        KWIK_SECRET_KEY=base64.urlsafe_b64encode(os.urandom(32)).decode(),
        KWIK_PUBLIC_URL="https://kwik.example.com",
    )
    with _client("127.0.0.1") as local:
        assert local.get("/api/v1/webhooks").status_code == 401
        assert local.get("/api/v1/webhooks", headers=_bearer(_token("read"))).status_code == 200


def test_revoked_and_expired_tokens_are_refused(remote):
    text = _token("read")
    assert remote.get("/api/v1/webhooks", headers=_bearer(text)).status_code == 200
    with session_scope() as session:
        token_id = session.execute(sa.select(AccessToken.id)).scalar_one()
        tokens.revoke_token(session=session, token_id=token_id, actor=audit.CLI)
    refused = remote.get("/api/v1/webhooks", headers=_bearer(text))
    assert refused.status_code == 401 and "revoked" in refused.json()["detail"]

    short = _token("read", name="short", expires_in_days=1)
    assert remote.get("/api/v1/webhooks", headers=_bearer(short)).status_code == 200
    with get_engine().begin() as conn:  # a day later
        conn.execute(
            sa.update(AccessToken)
            .where(AccessToken.name == "short")
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
    refused = remote.get("/api/v1/webhooks", headers=_bearer(short))
    assert refused.status_code == 401 and "expired" in refused.json()["detail"]
    unknown = remote.get("/api/v1/webhooks", headers=_bearer("kwik_" + "A" * 40))
    assert unknown.status_code == 401 and "unknown" in unknown.json()["detail"]


def test_tokens_are_stored_only_as_hashes(kwik):
    text = _token("read,write,publish", name="deploy")
    assert text.startswith("kwik_") and tokens.TOKEN_PATTERN.match(text)
    with get_engine().connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM access_token"))]
        audit_rows = [str(tuple(r)) for r in conn.execute(sa.text("SELECT * FROM audit_entry"))]
    assert len(rows) == 1
    assert rows[0]["token_hash"] == hashlib.sha256(text.encode()).hexdigest()
    assert not any(text in str(value) for value in rows[0].values())
    assert not any(text[len(tokens.TOKEN_PREFIX) :][:20] in row for row in audit_rows)
    assert rows[0]["prefix"] == text[: tokens.SHOWN_PREFIX]


def test_every_use_is_in_the_audit_trail_and_marks_the_token_used(remote):
    text = _token("read,publish", name="platform")
    remote.get("/api/v1/webhooks", headers=_bearer(text))
    remote.post("/api/v1/events", json=PUBLISH, headers=_bearer(text))
    remote.delete("/api/v1/webhooks/1", headers=_bearer(text))  # not allowed: recorded as refused
    with session_scope() as session:
        entries = audit.list_entries(session=session).items
        used = session.execute(sa.select(AccessToken.last_used_at)).scalar_one()
    trail = [(e.action, e.target) for e in reversed(entries) if e.actor_email.startswith("token platform")]
    assert trail == [
        ("token.used", "GET /api/v1/webhooks"),
        ("token.used", "POST /api/v1/events"),
        ("access.refused", "DELETE /api/v1/webhooks/{webhook_id}"),
    ]
    assert used is not None and dt.datetime.now(dt.UTC) - used < dt.timedelta(minutes=5)


def test_token_rules(kwik):
    with session_scope() as session:
        with pytest.raises(InvalidInput) as refused:
            tokens.create_token(
                session=session, name=" ", scopes="read,admin", expires_in_days=0.5 * 10000, actor=audit.CLI
            )
    assert set(refused.value.errors) == {"name", "scopes", "expires_in_days"}
    with session_scope() as session:
        assert tokens.list_tokens(session=session) == []


def test_every_scope_maps_onto_actions_of_the_one_table():
    assert set(access.SCOPE_ACTIONS) == set(tokens.SCOPES)
    for actions in access.SCOPE_ACTIONS.values():
        assert actions <= set(access.Action) - {access.Action.MEMBERS, access.Action.AUDIT, access.Action.TOKENS}
    assert not access.token_may({"read"}, access.Action.REVEAL_SECRET)  # read never sees a signing secret


def _events_stored() -> int:
    from kwik_console.store.tables import Event

    with get_engine().connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(Event)).scalar_one()


def test_publishing_checks_the_token_in_the_publish_transaction(remote, monkeypatch):
    """POST /events checks its token in its own transaction: refusals publish nothing, every use is counted
    and audited, a publish refused by validation included, and one over the limit is rolled back."""
    from tests.integration.test_api_live import _a_fresh_window

    with session_scope() as session:
        from kwik_console.webhooks import rules
        from kwik_console.webhooks import service as webhooks

        webhooks.create_webhook(session=session, data=rules.WebhookInput(**WEBHOOK), actor=audit.CLI)
    publisher, reader, revoked = (
        _token("publish", name="platform"),
        _token("read", name="reader"),
        _token("publish", name="old"),
    )
    with session_scope() as session:
        token_id = session.execute(sa.select(AccessToken.id).where(AccessToken.name == "old")).scalar_one()
        tokens.revoke_token(session=session, token_id=token_id, actor=audit.CLI)

    assert remote.post("/api/v1/events", json=PUBLISH, headers=_bearer(revoked)).status_code == 401
    # A body refused before the route runs: the token is still checked first.
    assert remote.post("/api/v1/events", json={"data": {}}, headers=_bearer(revoked)).status_code == 401
    refused = remote.post("/api/v1/events", json=PUBLISH, headers=_bearer(reader))
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert _events_stored() == 0

    _a_fresh_window(monkeypatch)
    configure(monkeypatch, KWIK_API_RATE_LIMIT="4")
    answers = [
        remote.post("/api/v1/events", json=body, headers=_bearer(publisher))
        for body in (PUBLISH, {"type": "payment.nope", "data": {}}, {"data": {}}, PUBLISH, PUBLISH)
    ]
    assert [a.status_code for a in answers] == [202, 422, 422, 202, 429], [a.text for a in answers]
    assert [a.headers["ratelimit-remaining"] for a in answers] == ["3", "2", "1", "0", "0"]
    assert answers[0].json()["deliveries"] == 1
    assert answers[4].json()["code"] == "rate_limited" and answers[4].headers["retry-after"]
    assert _events_stored() == 2  # nothing published over the limit

    with session_scope() as session:
        entries = list(reversed(audit.list_entries(session=session).items))
    trail = [
        (e.actor_email.split(" (")[0], e.action, bool(e.detail.get("rate_limited")))
        for e in entries
        if e.actor_email.startswith("token ")
    ]
    assert trail == [("token reader", "access.refused", False)] + [("token platform", "token.used", False)] * 4 + [
        ("token platform", "token.used", True)
    ], trail


def test_publish_answers_alike_whether_fastapi_parses_it_or_the_direct_path_does(kwik, monkeypatch):
    """POST /events skips FastAPI's routing for a request whose parameters parse (routes.publish_directly).
    The same requests, made once that way and once through FastAPI's route, answer alike and write alike:
    status, problem, headers, events stored and audit entries."""
    import collections
    import json
    import re

    from kwik_console.api import routes
    from kwik_console.store.team_tables import AuditEntry
    from kwik_console.store.token_tables import IdempotencyKey
    from tests.integration.test_api_live import _a_fresh_window

    configure(monkeypatch, KWIK_API_RATE_LIMIT="4")
    with session_scope() as session:
        from kwik_console.webhooks import rules
        from kwik_console.webhooks import service as webhooks

        webhooks.create_webhook(session=session, data=rules.WebhookInput(**WEBHOOK), actor=audit.CLI)
    other = {"type": "payment.created", "data": {"id": "pay_2"}}
    raw = {"content-type": "application/json"}

    def requests(run: str, t: dict) -> list[tuple[str, dict, dict]]:
        """(caller, what to send, headers): each token is used at most 4 times (the limit) but `limited`."""
        key = {"Idempotency-Key": f"{run}-key-1"}
        return [
            ("remote", {"json": PUBLISH}, _bearer(t["publisher"])),
            ("remote", {"json": PUBLISH}, _bearer(t["publisher"]) | key),
            ("remote", {"json": PUBLISH}, _bearer(t["publisher"]) | key),  # the repeat: replayed
            ("remote", {"json": other}, _bearer(t["publisher"]) | key),  # the key, for another request
            ("remote", {"json": PUBLISH}, _bearer(t["second"]) | {"Idempotency-Key": "k" * 300}),
            ("remote", {"json": PUBLISH}, _bearer(t["second"]) | {"Idempotency-Key": "a key"}),
            ("remote", {"json": PUBLISH}, _bearer(t["reader"])),
            ("remote", {"json": PUBLISH}, _bearer(t["revoked"])),
            ("remote", {"json": PUBLISH}, _bearer(t["expired"])),
            ("remote", {"json": PUBLISH}, _bearer("kwik_" + "A" * 40)),
            ("remote", {"json": PUBLISH}, {}),
            ("remote", {"json": PUBLISH}, {"Authorization": "Basic a2lrOmt3aWs="}),
            ("remote", {"content": b'{"type": "payment.created",'}, _bearer(t["third"]) | raw),
            ("remote", {"json": {"data": {}}}, _bearer(t["third"])),
            ("local", {"json": PUBLISH}, {}),
            ("local", {"json": {"type": "nope.nothing", "data": {}}}, {}),
            ("local", {"content": b'{"type": "payment.created", "data": {"amount": NaN}}'}, raw),
            ("local", {"json": {"type": "payment.created", "data": [1]}}, {}),
            ("local", {"json": PUBLISH | {"extra": 1}}, {}),
            ("local", {"content": b""}, raw),
            ("local", {"content": b"null"}, raw),
            ("local", {"json": PUBLISH}, {"Idempotency-Key": f"{run}-key-2"}),
            ("local", {"json": PUBLISH}, {"Idempotency-Key": f"{run}-key-2"}),
        ] + [("remote", {"json": PUBLISH}, _bearer(t["limited"]))] * 5  # the fifth over the limit

    def seen(response) -> tuple:
        body = response.json() if response.content else None
        if isinstance(body, dict):
            body = {k: v for k, v in body.items() if k not in ("id", "created_at")}
            if "detail" in body:  # token prefixes and seconds to wait differ from run to run
                body["detail"] = re.sub(r"kwik_\w+…", "kwik_…", re.sub(r"\d+ s\b", "N s", body["detail"]))
        headers = {
            k: ("N" if k in ("ratelimit-reset", "retry-after") else v)
            for k, v in response.headers.items()
            if k.startswith("ratelimit-")
            or k in ("retry-after", "idempotent-replayed", "www-authenticate", "content-type")
        }
        return response.status_code, json.dumps(body, sort_keys=True), sorted(headers.items())

    def run(name: str) -> tuple[list, dict]:
        t = {
            kind: _token(
                "read" if kind == "reader" else "publish",
                name=f"{name}-{kind}",
                **({"expires_in_days": 1} if kind == "expired" else {}),
            )
            for kind in ("publisher", "second", "third", "reader", "revoked", "expired", "limited")
        }
        with session_scope() as session:
            for kind in ("revoked",):
                token_id = session.execute(
                    sa.select(AccessToken.id).where(AccessToken.name == f"{name}-{kind}")
                ).scalar_one()
                tokens.revoke_token(session=session, token_id=token_id, actor=audit.CLI)
        with get_engine().begin() as conn:
            conn.execute(
                sa.update(AccessToken)
                .where(AccessToken.name == f"{name}-expired")
                .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
            )
            last_audit = conn.execute(sa.select(sa.func.max(AuditEntry.id))).scalar_one()
        events_before = _events_stored()
        answers = []
        with _client("127.0.0.1") as local, _client("203.0.113.9") as remote:
            clients = {"local": local, "remote": remote}
            _a_fresh_window(monkeypatch)  # each token's requests in one window of the limit
            for caller, send, headers in requests(name, t):
                answers.append(seen(clients[caller].post("/api/v1/events", headers=headers, **send)))
        with get_engine().connect() as conn:
            trail = collections.Counter(
                (action, bool(detail.get("rate_limited")) if isinstance(detail, dict) else False)
                for action, detail in conn.execute(
                    sa.select(AuditEntry.action, AuditEntry.detail).where(AuditEntry.id > last_audit)
                )
            )
            kept = conn.execute(
                sa.select(sa.func.count()).select_from(IdempotencyKey).where(IdempotencyKey.key.like(f"{name}-%"))
            ).scalar_one()
        return answers, {"events": _events_stored() - events_before, "audit": trail, "idempotency keys": kept}

    taken = []
    direct = routes.publish_directly

    async def counted(scope, body, receive, send) -> bool:
        answered = await direct(scope, body, receive, send)
        taken.append(answered)
        return answered

    monkeypatch.setattr(routes, "publish_directly", counted)
    direct_answers, direct_writes = run("direct")

    async def never(scope, body, receive, send) -> bool:
        return False

    monkeypatch.setattr(routes, "publish_directly", never)
    route_answers, route_writes = run("route")

    assert direct_answers == route_answers
    assert direct_writes == route_writes
    statuses = [a[0] for a in direct_answers]
    assert statuses == [
        202,
        202,
        202,
        422,
        422,
        400,
        403,
        401,
        401,
        401,
        401,
        401,
        400,
        422,
        202,
        422,
        422,
        422,
        422,
        422,
        422,
        202,
        202,
        202,
        202,
        202,
        202,
        429,
    ], direct_answers
    assert direct_writes["events"] == 8
    # Every request whose parameters parse took the direct path; the others went to FastAPI.
    assert taken.count(True) == 21 and taken.count(False) == 7


def test_custom_header_values_reach_only_tokens_that_may_see_secrets(remote, receiver):
    """A custom header's value is often a secret: a `read` token, like a viewer, sees it hidden, in the webhook
    and in the headers each attempt sent; a `write` token, like a developer, sees it whole."""
    from tests.factories import make_hook, send_test

    hook = make_hook(receiver.url("/ok"), headers={"X-Api-Key": "sk_live_orders_123"})
    _, outcome = send_test(hook.id)
    reader, writer = _bearer(_token(["read"])), _bearer(_token(["write"]))

    def seen(headers):
        webhook = remote.get(f"/api/v1/webhooks/{hook.id}", headers=headers).json()
        listed = remote.get("/api/v1/webhooks", headers=headers).json()["items"][0]
        (attempt,) = remote.get(f"/api/v1/deliveries/{outcome.delivery_id}", headers=headers).json()["attempts"]
        return webhook["headers"], listed["headers"], attempt["request_headers"]

    webhook, listed, sent = seen(reader)
    assert webhook == listed == {"X-Api-Key": "••••••••"}
    assert sent["X-Api-Key"] == "••••••••"
    assert sent["webhook-id"] and sent["webhook-signature"].startswith("v1,")  # the console's own: shown to all
    webhook, listed, sent = seen(writer)
    assert webhook == listed == {"X-Api-Key": "sk_live_orders_123"} and sent["X-Api-Key"] == "sk_live_orders_123"
    (hit,) = receiver.hits("/ok")
    assert hit.headers["x-api-key"] == "sk_live_orders_123"  # hidden from readers, never from the receiver
