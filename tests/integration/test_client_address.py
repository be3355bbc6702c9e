"""Behind a reverse proxy, the sign-in throttle, sessions and the audit trail key on the client, not the proxy.

The sign-in form's real HTTP app (web/sign_in.py) on a real database, reached from the proxy's address
(127.0.0.1) with X-Forwarded-For as nginx writes it.
"""

from __future__ import annotations

from sqlmodel import select
from starlette.testclient import TestClient

from kwik_console.store.db import session_scope
from kwik_console.store.team_tables import MemberSession, Role
from kwik_console.team import audit, members
from kwik_console.web import sign_in
from tests.conftest import TEST_SECRET_KEY, configure

PUBLIC_URL = "http://127.0.0.1:3999"
EMAIL, PASSWORD = "admin@example.com", "a long enough passphrase"
PROXY = "127.0.0.1"
ATTACKER, ADMIN = "203.0.113.7", "198.51.100.9"


def _console(monkeypatch, **env: str) -> None:
    configure(monkeypatch, KWIK_MODE="hosted", KWIK_PUBLIC_URL=PUBLIC_URL, KWIK_SECRET_KEY=TEST_SECRET_KEY, **env)
    with session_scope() as session:
        link = members.invite(session=session, email=EMAIL, role=Role.ADMIN, actor=audit.CLI)
        members.accept_link(session=session, token=link.token, password=PASSWORD, confirm=PASSWORD)


def _sign_in(email: str, password: str, forwarded_for: str | None = None, peer: str = PROXY) -> str:
    """ "signed in", "invalid" or "throttled"."""
    headers = {"origin": PUBLIC_URL}
    if forwarded_for:
        headers["x-forwarded-for"] = forwarded_for
    with TestClient(sign_in.app(), base_url=PUBLIC_URL, client=(peer, 50000), follow_redirects=False) as client:
        response = client.post("/auth/sign-in", data={"email": email, "password": password}, headers=headers)
    if response.status_code == 200 and "kwik_session" in response.headers.get("set-cookie", ""):
        return "signed in"
    assert response.status_code == 303, response.text
    return "throttled" if "error=throttled" in response.headers["location"] else "invalid"


def _fail_twenty_times(forwarded_for) -> list[str]:
    return [_sign_in(f"nobody-{i}@example.com", "wrong guess", forwarded_for(i)) for i in range(22)]


def test_behind_a_trusted_proxy_one_clients_failures_do_not_lock_out_another(kwik, monkeypatch):
    _console(monkeypatch, KWIK_TRUSTED_PROXIES=PROXY)
    # The attacker's own address is throttled (the header nginx appends to: what it forged is on the left) ...
    outcomes = _fail_twenty_times(lambda i: f"10.9.9.{i}, {ATTACKER}")
    assert outcomes[:20] == ["invalid"] * 20 and outcomes[20:] == ["throttled"] * 2
    # ... while the admin, through the same proxy from elsewhere, signs in.
    assert _sign_in(EMAIL, PASSWORD, ADMIN) == "signed in"
    with session_scope() as session:
        failed = audit.list_entries(session=session, action="sign_in.failed", limit=50).items
        succeeded = audit.list_entries(session=session, action="sign_in.succeeded", limit=5).items
        opened = session.exec(select(MemberSession)).all()
    assert {e.client_address for e in failed} == {ATTACKER}
    assert [e.client_address for e in succeeded] == [ADMIN]
    assert [s.client_address for s in opened] == [ADMIN]


def test_without_a_trusted_proxy_a_forged_header_is_ignored(kwik, monkeypatch):
    _console(monkeypatch)  # KWIK_TRUSTED_PROXIES unset: nobody's X-Forwarded-For is believed
    outcomes = _fail_twenty_times(lambda i: f"198.18.0.{i}")  # a new forged address each time
    assert outcomes[:20] == ["invalid"] * 20 and outcomes[20:] == ["throttled"] * 2
    assert _sign_in(EMAIL, PASSWORD, ADMIN) == "throttled"  # the same peer, whatever it claims
    with session_scope() as session:
        failed = audit.list_entries(session=session, action="sign_in.failed", limit=50).items
    assert {e.client_address for e in failed} == {PROXY}


def test_a_peer_that_is_not_a_trusted_proxy_is_its_own_address(kwik, monkeypatch):
    _console(monkeypatch, KWIK_TRUSTED_PROXIES="10.0.0.0/8")
    assert _sign_in(EMAIL, PASSWORD, "10.1.1.1", peer=ATTACKER) == "signed in"
    with session_scope() as session:
        (opened,) = session.exec(select(MemberSession)).all()
    assert opened.client_address == ATTACKER
