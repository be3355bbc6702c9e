"""The Tokens page (admins): make an API access token (shown once), see when each was last used, revoke."""

from __future__ import annotations

import dataclasses

import reflex as rx

from kwik_console.core.clock import iso, utcnow
from kwik_console.core.errors import InvalidInput, NotFound
from kwik_console.store.db import session_scope
from kwik_console.team import access, tokens
from kwik_console.ui.state.common import forget


@dataclasses.dataclass
class TokenRow:
    id: int = 0
    name: str = ""
    prefix: str = ""
    scopes: str = ""
    created_at: str = ""
    created_by: str = ""
    last_used_at: str = ""
    expires_at: str = ""
    status: str = ""  # Active | Expired | Revoked

    @classmethod
    def of(cls, t, now) -> TokenRow:
        status = "Revoked" if t.revoked_at else "Expired" if t.expires_at and t.expires_at <= now else "Active"
        return cls(
            t.id,
            t.name,
            t.prefix + "…",
            ", ".join(tokens.scope_list(t.scopes)),
            (iso(t.created_at) or ""),
            t.created_by,
            (iso(t.last_used_at) or ""),
            (iso(t.expires_at) or ""),
            status,
        )


def _blank_errors() -> dict[str, str]:
    return {"name": "", "scopes": "", "expires_in_days": ""}


class TokensState(rx.State):
    rows: list[TokenRow] = []
    loading: bool = True
    create_open: bool = False
    errors: dict[str, str] = _blank_errors()
    # The token itself, shown once right after it is made: the server forgets it (and that its dialog is
    # open) as soon as the browser has it.
    shown_open: bool = False
    shown_token: str = ""
    shown_name: str = ""
    revoke_open: bool = False
    revoke_id: int = 0
    revoke_name: str = ""

    @rx.event
    def load(self):

        with session_scope() as session:
            now = utcnow()
            self.rows = [TokenRow.of(t, now) for t in tokens.list_tokens(session=session)]
        self.loading = False

    @rx.event
    def start_create(self):
        self.create_open, self.errors = True, _blank_errors()

    @rx.event
    def set_create_open(self, value: bool):
        self.create_open = value

    @rx.event
    def create(self, form: dict):
        scopes = [s for s in tokens.SCOPES if form.get(f"scope_{s}") in ("on", True, "true")]
        try:
            with session_scope() as session:
                made = tokens.create_token(
                    session=session,
                    name=str(form.get("name", "")),
                    scopes=scopes,
                    expires_in_days=str(form.get("expires_in_days", "")).strip() or None,
                    actor=access.actor(),
                )
        except InvalidInput as exc:
            self.errors = _blank_errors() | exc.errors
            return
        self.create_open = False
        self.shown_token, self.shown_name, self.shown_open = made.token, made.record.name, True
        yield TokensState.load
        forget(self, "shown_token", "shown_open")

    @rx.event
    def set_shown_open(self, value: bool):
        self.shown_open = value
        if not value:
            self.shown_token = ""  # shown once

    @rx.event
    def ask_revoke(self, token_id: int, name: str):
        self.revoke_id, self.revoke_name, self.revoke_open = token_id, name, True

    @rx.event
    def set_revoke_open(self, value: bool):
        self.revoke_open = value

    @rx.event
    def confirm_revoke(self):
        self.revoke_open = False
        try:
            with session_scope() as session:
                record = tokens.revoke_token(session=session, token_id=self.revoke_id, actor=access.actor())
        except NotFound as exc:
            return [rx.toast.error(str(exc)), TokensState.load]
        return [rx.toast.success(f"Token “{record.name}” revoked: it stops working at once."), TokensState.load]
