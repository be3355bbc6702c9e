"""The sign-in page and the page behind an invitation or reset link. The forms post to /auth/* (auth_routes.py)."""

from __future__ import annotations

import reflex as rx

from kwik_console.store.db import session_scope
from kwik_console.team import members
from kwik_console.team.sessions import safe_next


class SignInState(rx.State):
    next_path: str = "/"
    message: str = ""
    notice: str = ""

    @rx.event
    def open_page(self):
        query = self.router.url.query_parameters
        self.next_path = safe_next(query.get("next"))
        error, self.message, self.notice = query.get("error", ""), "", ""
        if error == "invalid":
            self.message = members.SIGN_IN_FAILED
        elif error == "throttled":
            wait = query.get("wait", "")
            self.message = f"Too many sign-in attempts. Try again in {wait if wait.isdigit() else 'a few'} s."
        if query.get("signed_out") == "everywhere":
            self.notice = "You are signed out on every device."
        elif query.get("signed_out"):
            self.notice = "You are signed out."
        if error:
            return rx.call_script(_EMAIL_FROM_FRAGMENT)
        return None


# After a failed sign-in the email comes back in the URL's fragment (web/sign_in.py): into its field, then
# out of the address bar, with the password field focused.
_EMAIL_FROM_FRAGMENT = """
const email = new URLSearchParams(location.hash.slice(1)).get('email');
if (email) {
  document.getElementById('field-email').value = email;
  history.replaceState(null, '', location.pathname + location.search);
  document.getElementById('field-password').focus();
}
"""


class AcceptState(rx.State):
    token: str = ""
    email: str = ""
    valid: bool = True
    loading: bool = True
    message: str = ""

    @rx.event
    def open_page(self):
        query = self.router.url.query_parameters
        self.token = query.get("token", "")
        # A code, not a message: a crafted link cannot put its own words on this page.
        self.message = members.PASSWORD_PROBLEMS.get(query.get("error", ""), "")
        with session_scope() as session:
            member = members.peek_link(session=session, token=self.token)
        self.valid, self.email, self.loading = member is not None, member.email if member else "", False
