"""`kwik-console db ...`: the database schema's revision, and upgrading it.

These commands open the database as it is: they work on one that is behind,
which is what hosted mode asks you to upgrade before it starts.
"""

from __future__ import annotations

import contextlib

from sqlalchemy.exc import SQLAlchemyError

from kwik_console.cli.output import emit, table
from kwik_console.store import db, schema


@contextlib.contextmanager
def _engine():
    engine = db.migration_engine()
    try:
        yield engine
    finally:
        engine.dispose()


def _state_json(state: schema.SchemaState) -> dict:
    return {
        "current": state.current,
        "head": state.head,
        "up_to_date": state.up_to_date,
        "before_migrations": state.before_migrations,
    }


def cmd_upgrade(args) -> None:
    with _engine() as engine:
        try:
            found, reached = schema.upgrade(engine)
        except db.DatabaseUnavailable:
            raise
        except SQLAlchemyError as exc:
            # One transaction for the whole upgrade, on SQLite as on PostgreSQL: nothing was changed.
            reason = db.first_line(getattr(exc, "orig", None) or exc)
            raise db.DatabaseUnavailable(f"the schema upgrade failed and was rolled back: {reason}") from exc
    if found.up_to_date:
        text = f"Database schema is up to date (revision {reached})."
    elif found.empty:
        text = f"Created the database schema (revision {reached})."
    elif found.before_migrations:
        text = f"Upgraded the database schema made before migrations (revision {schema.RELEASE_REVISION}) to {reached}."
    else:
        text = f"Upgraded the database schema from revision {found.current} to {reached}."
    emit(
        args,
        {
            "from": found.current,
            "to": reached,
            "upgraded": not found.up_to_date,
            "before_migrations": found.before_migrations,
        },
        text,
    )


def cmd_current(args) -> None:
    with _engine() as engine:
        state = schema.schema_state(engine)
    if state.up_to_date:
        text = f"Revision {state.current} (head): up to date."
    elif state.empty:
        text = (
            f"No schema yet (an empty database); this version needs {state.head}. "
            f"`{schema.UPGRADE_COMMAND}` creates it, as does starting the console."
        )
    else:
        text = f"Revision {state.shown}; this version needs {state.head}: run `{schema.UPGRADE_COMMAND}`."
    emit(args, _state_json(state), text)


def cmd_history(args) -> None:
    with _engine() as engine:
        state = schema.schema_state(engine)
    scripts = schema.revisions()  # oldest first
    order = [s.revision for s in scripts]
    # A database from before migrations holds the release's revision, unstamped.
    reached = state.current or (schema.RELEASE_REVISION if state.before_migrations else None)
    applied = set(order[: order.index(reached) + 1]) if reached else set()
    items = [
        {
            "revision": s.revision,
            "description": (s.doc or "").strip().splitlines()[0] if s.doc else "",
            "applied": s.revision in applied,
            "current": s.revision == state.current,
            "head": s.revision == state.head,
        }
        for s in scripts
    ]
    rows = [
        (
            i["revision"],
            "yes" if i["applied"] else "no",
            " ".join(m for m, on in (("current", i["current"]), ("head", i["head"])) if on),
            i["description"],
        )
        for i in items
    ]
    emit(args, items, table(["Revision", "Applied", "", "Description"], rows))


def cmd_revision(args) -> None:
    path = schema.new_revision(args.message)
    print(f"Wrote {path}: read it, edit what autogenerate cannot know (data moves), and add it to a test.")


def register(commands, out) -> None:
    """Add `db` to the kwik-console parser (`out` is the shared --json parent)."""
    group = commands.add_parser("db", help="the database schema: revision, history, upgrade").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=commands._parser_class
    )
    group.add_parser(
        "upgrade", parents=[out], help="migrate the database to this version's schema (one process at a time)"
    ).set_defaults(func=cmd_upgrade)
    group.add_parser(
        "current", parents=[out], help="the database's schema revision, and the one this version needs"
    ).set_defaults(func=cmd_current)
    group.add_parser(
        "history", parents=[out], help="every migration, oldest first, and which are applied"
    ).set_defaults(func=cmd_history)
    p = group.add_parser("revision", help="developers: write the next migration from the models (autogenerate)")
    p.add_argument("-m", "--message", required=True, help="what changed, e.g. 'add api tokens'")
    p.set_defaults(func=cmd_revision)
