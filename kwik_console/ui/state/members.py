"""The Members page (admins): invite with a one-time link shown once, change a role, remove, make a new link."""

from __future__ import annotations

import reflex as rx

from kwik_console.core.clock import iso
from kwik_console.core.errors import InvalidInput, NotFound
from kwik_console.store.db import session_scope
from kwik_console.team import access, members
from kwik_console.ui.state.common import forget
from kwik_console.ui.views import MemberRow


class MembersState(rx.State):
    rows: list[MemberRow] = []
    loading: bool = True
    invite_open: bool = False
    invite_errors: dict[str, str] = {"email": "", "role": ""}
    # The one-time link, shown once right after it is made: the server forgets it (and that its dialog is
    # open) as soon as the browser has it.
    link_open: bool = False
    link_url: str = ""
    link_email: str = ""
    link_expires_at: str = ""
    remove_open: bool = False
    remove_id: int = 0
    remove_email: str = ""

    @rx.event
    def load(self):
        me = access.member()
        with session_scope() as session:
            found = members.list_members(session=session)
            self.rows = [
                MemberRow(
                    m.id,
                    m.email,
                    m.role,
                    "Active" if m.password_hash else "Invited",
                    (iso(m.last_sign_in_at) or ""),
                    m.id == me.member_id,
                )
                for m in found
            ]
        self.loading = False

    @rx.event
    def start_invite(self):
        self.invite_open, self.invite_errors = True, {"email": "", "role": ""}

    @rx.event
    def set_invite_open(self, value: bool):
        self.invite_open = value

    def _show_link(self, link: members.Link):
        self.link_url, self.link_email = link.url(), link.member.email
        self.link_expires_at, self.link_open = (iso(link.expires_at) or ""), True

    @rx.event
    def invite(self, form: dict):
        try:
            with session_scope() as session:
                link = members.invite(
                    session=session,
                    email=str(form.get("email", "")),
                    role=str(form.get("role", "")),
                    actor=access.actor(),
                )
        except InvalidInput as exc:
            self.invite_errors = {"email": "", "role": ""} | exc.errors
            return
        self.invite_open = False
        self._show_link(link)
        yield MembersState.load
        forget(self, "link_url", "link_open")

    @rx.event
    def set_link_open(self, value: bool):
        self.link_open = value
        if not value:
            self.link_url = ""  # shown once

    @rx.event
    def new_link(self, member_id: int):
        try:
            with session_scope() as session:
                link = members.reset_link(session=session, member_id=member_id, actor=access.actor())
        except NotFound as exc:
            yield [rx.toast.error(str(exc)), MembersState.load]
            return
        self._show_link(link)
        yield MembersState.load
        forget(self, "link_url", "link_open")

    @rx.event
    def set_role(self, member_id: int, role: str):
        try:
            with session_scope() as session:
                member = members.set_role(session=session, member_id=member_id, role=role, actor=access.actor())
        except (InvalidInput, NotFound) as exc:
            message = exc.message if isinstance(exc, InvalidInput) else str(exc)
            return [rx.toast.error(message), MembersState.load]
        return [rx.toast.success(f"{member.email} is now {member.role}."), MembersState.load]

    @rx.event
    def ask_remove(self, member_id: int, email: str):
        self.remove_id, self.remove_email, self.remove_open = member_id, email, True

    @rx.event
    def set_remove_open(self, value: bool):
        self.remove_open = value

    @rx.event
    def confirm_remove(self):
        self.remove_open = False
        try:
            with session_scope() as session:
                member = members.remove(session=session, member_id=self.remove_id, actor=access.actor())
        except (InvalidInput, NotFound) as exc:
            message = exc.message if isinstance(exc, InvalidInput) else str(exc)
            return [rx.toast.error(message), MembersState.load]
        return [rx.toast.success(f"{member.email} was removed and signed out."), MembersState.load]
