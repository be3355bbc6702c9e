"""The audit trail: recorded in the change's own transaction, listed newest first in keyset pages, filtered."""

from __future__ import annotations

import pytest

from kwik_console.core.errors import InvalidInput
from kwik_console.store.db import session_scope
from kwik_console.team import audit, members

ALICE = audit.Actor(1, "alice@example.com")
BOB = audit.Actor(2, "bob@example.com")


def test_keyset_pages_newest_first_with_filters(kwik):
    with session_scope() as session:
        for n in range(7):
            audit.record(
                session=session, actor=ALICE if n % 2 else BOB, action="secret.revealed", target=f"webhook {n}"
            )
        audit.record(
            session=session,
            actor=ALICE,
            action="webhook.edited",
            target="webhook 3",
            detail={"before": {"name": "A"}, "after": {"name": "B"}},
        )
    seen = []
    before = None
    with session_scope() as session:
        while True:
            page = audit.list_entries(session=session, before_id=before, limit=3)
            seen += page.items
            if page.next_before_id is None:
                break
            before = page.next_before_id
        assert [e.id for e in seen] == sorted((e.id for e in seen), reverse=True)
        assert len(seen) == len({e.id for e in seen}) == 8
        assert seen[0].action == "webhook.edited" and seen[0].detail["after"] == {"name": "B"}

        alice = audit.list_entries(session=session, actor_email="alice@example.com")
        assert {e.actor_email for e in alice.items} == {"alice@example.com"} and len(alice.items) == 4
        edits = audit.list_entries(session=session, action="webhook.edited")
        assert [e.target for e in edits.items] == ["webhook 3"]
        assert audit.actor_emails(session=session) == ["alice@example.com", "bob@example.com"]


def test_an_entry_rolls_back_with_its_change(kwik):
    with pytest.raises(InvalidInput), session_scope() as session:
        audit.record(session=session, actor=ALICE, action="member.invited", target="x@example.com")
        raise InvalidInput({"email": "changed my mind"})
    with session_scope() as session:
        assert audit.list_entries(session=session).items == []


def test_member_changes_are_recorded_with_who_and_what(kwik):
    with session_scope() as session:
        link = members.invite(session=session, email="dev@example.com", role="developer", actor=ALICE)
        members.set_role(session=session, member_id=link.member.id, role="viewer", actor=ALICE)
        members.remove(session=session, member_id=link.member.id, actor=BOB)
    with session_scope() as session:
        entries = audit.list_entries(session=session).items
    assert [(e.actor_email, e.action, e.target) for e in entries] == [
        ("bob@example.com", "member.removed", "dev@example.com"),
        ("alice@example.com", "member.role_changed", "dev@example.com"),
        ("alice@example.com", "member.invited", "dev@example.com"),
    ]
    assert entries[1].detail == {"before": "developer", "after": "viewer"}
    assert link.token not in str([e.detail for e in entries])  # a link is never written down


def test_an_unknown_action_is_a_programming_error(kwik):
    with session_scope() as session, pytest.raises(ValueError, match="unknown audit action"):
        audit.record(session=session, actor=ALICE, action="webhook.teleported")
