"""Who is signed in (for the navigation and for hiding what a role cannot do), and changing one's own password.

Hiding is only manners: the access middleware (ui/middleware.py) refuses the events themselves.
"""

from __future__ import annotations

import reflex as rx

from kwik_console.core.errors import InvalidInput
from kwik_console.core.settings import get_settings
from kwik_console.store.db import session_scope
from kwik_console.team import access, members


class SessionState(rx.State):
    email: str = ""
    role: str = ""
    hosted: bool = False
    # Which session loaded this tab's state (ui/middleware.py `tab_owner`): a digest, compared on every event.
    _tab_owner: str = ""
    # Alert emails: offered in hosted mode when the console has a mail server; admins get them anyway.
    alerts_offered: bool = False
    email_alerts: bool = False

    @rx.var
    def can_write(self) -> bool:
        return access.may(self.role, access.Action.WRITE)

    @rx.var
    def can_test(self) -> bool:
        return access.may(self.role, access.Action.TEST)

    @rx.var
    def can_see_secrets(self) -> bool:
        return access.may(self.role, access.Action.REVEAL_SECRET)

    @rx.var
    def can_pause(self) -> bool:
        return access.may(self.role, access.Action.PAUSE)

    @rx.var
    def can_resend(self) -> bool:
        return access.may(self.role, access.Action.RESEND)

    @rx.var
    def can_recover(self) -> bool:
        return access.may(self.role, access.Action.RECOVER)

    @rx.var
    def can_operational(self) -> bool:
        return access.may(self.role, access.Action.OPERATIONAL)

    @rx.var
    def is_admin(self) -> bool:
        return access.may(self.role, access.Action.MEMBERS)

    @rx.event
    def load(self):
        signed_in = access.member()
        settings = get_settings()
        self.email, self.role, self.hosted = signed_in.email, signed_in.role, not settings.local_mode
        self.alerts_offered = self.hosted and settings.smtp is not None and signed_in.member_id is not None
        if self.alerts_offered:
            with session_scope() as session:
                self.email_alerts = members.get_member(session=session, member_id=signed_in.member_id).email_alerts

    @rx.event
    def toggle_email_alerts(self):
        signed_in = access.member()
        if signed_in.member_id is None:
            return
        with session_scope() as session:
            member = members.set_email_alerts(session=session, member_id=signed_in.member_id, on=not self.email_alerts)
            self.email_alerts = member.email_alerts
        return rx.toast.success("You will get alert emails." if self.email_alerts else "Alert emails turned off.")


def _blank() -> dict[str, str]:
    return {"current": "", "new": "", "confirm": ""}


class PasswordState(rx.State):
    open: bool = False
    errors: dict[str, str] = _blank()
    saving: bool = False

    @rx.event
    def start(self):
        self.open, self.errors, self.saving = True, _blank(), False

    @rx.event
    def set_open(self, value: bool):
        if not self.saving:
            self.open = value

    @rx.event
    def change(self, form: dict):
        signed_in = access.member()
        if signed_in.member_id is None:
            return rx.toast.error("Local mode has no passwords.")
        try:
            with session_scope() as session:
                ended = members.change_password(
                    session=session,
                    member_id=signed_in.member_id,
                    current=str(form.get("current", "")),
                    new=str(form.get("new", "")),
                    confirm=str(form.get("confirm", "")),
                    keep_session_id=signed_in.session_id,
                )
        except InvalidInput as exc:
            self.errors = _blank() | exc.errors
            return
        self.open, self.errors = False, _blank()
        others = f" {ended} other session{'s' if ended != 1 else ''} signed out." if ended else ""
        return rx.toast.success("Password changed." + others)
