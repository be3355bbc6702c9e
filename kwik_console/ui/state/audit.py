"""The Audit trail page (admins): newest first, filtered by member and action, in keyset pages."""

from __future__ import annotations

import reflex as rx

from kwik_console.core.clock import iso
from kwik_console.store.db import session_scope
from kwik_console.team import audit
from kwik_console.ui.views import AuditRow, audit_detail

ALL = "all"
PAGE_SIZE = 25


class AuditState(rx.State):
    rows: list[AuditRow] = []
    actors: list[str] = []
    actor: str = ALL
    action: str = ALL
    cursors: list[int] = []  # the before_id of each older page visited
    next_before: int = 0
    loading: bool = True

    @rx.var
    def page_number(self) -> int:
        return len(self.cursors) + 1

    @rx.event
    def load(self):
        with session_scope() as session:
            page = audit.list_entries(
                session=session,
                actor_email=None if self.actor == ALL else self.actor,
                action=None if self.action == ALL else self.action,
                before_id=self.cursors[-1] if self.cursors else None,
                limit=PAGE_SIZE,
            )
            self.actors = audit.actor_emails(session=session)
        self.rows = [
            AuditRow(
                e.id,
                (iso(e.at) or ""),
                e.actor_email,
                audit.ACTIONS.get(e.action, e.action),
                e.target,
                audit_detail(e.detail),
                e.client_address,
            )
            for e in page.items
        ]
        self.next_before, self.loading = page.next_before_id or 0, False

    @rx.event
    def set_actor(self, value: str):
        self.actor, self.cursors = value, []
        return AuditState.load

    @rx.event
    def set_action(self, value: str):
        self.action, self.cursors = value, []
        return AuditState.load

    @rx.event
    def older(self):
        if self.next_before:
            self.cursors = [*self.cursors, self.next_before]
            return AuditState.load

    @rx.event
    def newer(self):
        if self.cursors:
            self.cursors = self.cursors[:-1]
            return AuditState.load
