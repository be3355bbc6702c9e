"""`kwik-console users ...`: members of a hosted console, from the command line.

`users create` makes a member with no password and prints a one-time link to
choose one: how the first admin gets in, with no race to claim the console.
"""

from __future__ import annotations

from kwik_console.cli.output import emit, table
from kwik_console.core.clock import iso
from kwik_console.store.db import session_scope
from kwik_console.store.team_tables import Member, Role
from kwik_console.team import audit, members


def _member_json(m: Member) -> dict:
    return {
        "id": m.id,
        "email": m.email,
        "role": m.role,
        "status": "active" if m.password_hash else "invited",
        "created_at": iso(m.created_at),
        "last_sign_in_at": iso(m.last_sign_in_at),
    }


def _member_id(session, ref: str) -> int:
    """A member by id or by email."""
    return int(ref) if ref.isdigit() else members.find_member(session=session, email=ref).id


def _link_out(args, link: members.Link, what: str) -> None:
    url = link.url()
    emit(
        args,
        {"member": _member_json(link.member), "link": url, "expires_at": iso(link.expires_at)},
        f"{what} {link.member.email} ({link.member.role}).\n"
        f"One-time link (works once, expires {link.expires_at:%Y-%m-%d %H:%M UTC}); it is not shown again:\n"
        f"  {url}",
    )


def cmd_list(args) -> None:
    with session_scope() as session:
        found = members.list_members(session=session)
    rows = [
        (
            m.id,
            m.email,
            m.role,
            "active" if m.password_hash else "invited",
            m.last_sign_in_at.strftime("%Y-%m-%d %H:%M UTC") if m.last_sign_in_at else "",
        )
        for m in found
    ]
    text = table(["ID", "Email", "Role", "Status", "Last sign-in"], rows) if rows else "No members yet."
    emit(args, [_member_json(m) for m in found], text)


def cmd_create(args) -> None:
    with session_scope() as session:
        link = members.invite(session=session, email=args.email, role=args.role, actor=audit.CLI)
    _link_out(args, link, "Created")


def cmd_set_role(args) -> None:
    with session_scope() as session:
        member = members.set_role(
            session=session, member_id=_member_id(session, args.member), role=args.role, actor=audit.CLI
        )
    emit(args, _member_json(member), f"{member.email} is now {member.role}.")


def cmd_remove(args) -> None:
    with session_scope() as session:
        member = members.remove(session=session, member_id=_member_id(session, args.member), actor=audit.CLI)
    emit(args, {"id": member.id, "email": member.email, "removed": True}, f"Removed {member.email}.")


def cmd_reset_password(args) -> None:
    with session_scope() as session:
        link = members.reset_link(session=session, member_id=_member_id(session, args.member), actor=audit.CLI)
    _link_out(args, link, "Signed out everywhere and made a new password link for")


def register(commands, out) -> None:
    """Add `users` to the kwik-console parser (`out` is the shared --json parent)."""
    users = commands.add_parser("users", help="members of a hosted console").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=commands._parser_class
    )
    roles = [r.value for r in Role]
    users.add_parser("list", parents=[out], help="list members").set_defaults(func=cmd_list)
    p = users.add_parser("create", parents=[out], help="add a member and print their one-time sign-in link")
    p.add_argument("--email", required=True)
    p.add_argument("--role", required=True, choices=roles, type=str.lower)
    p.set_defaults(func=cmd_create)
    p = users.add_parser("set-role", parents=[out], help="change a member's role")
    p.add_argument("member", help="id or email")
    p.add_argument("--role", required=True, choices=roles, type=str.lower)
    p.set_defaults(func=cmd_set_role)
    p = users.add_parser("remove", parents=[out], help="remove a member (signs them out)")
    p.add_argument("member", help="id or email")
    p.set_defaults(func=cmd_remove)
    p = users.add_parser(
        "reset-password",
        parents=[out],
        help="sign a member out everywhere and print a one-time link to choose a new password",
    )
    p.add_argument("member", help="id or email")
    p.set_defaults(func=cmd_reset_password)
