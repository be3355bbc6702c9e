"""The console's own signing secrets, kept by name: the one `kwik-console listen` signs its forwards with.

Made on first use and kept (sealed at rest like a webhook's secret), so a local endpoint set up with it
goes on verifying across listen's restarts, until someone rotates it. Reading and rotating are audited,
as they are for a webhook's secret.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from kwik_console.core.clock import utcnow
from kwik_console.store.tables import ConsoleSecret
from kwik_console.team import audit
from kwik_console.webhooks.service import new_secret

LISTEN = "listen"
_T = ConsoleSecret.__table__


def _insert(session: Session):
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_T)


def _stored(session: Session, name: str) -> str:
    """The secret kept under `name`, made now if there is none yet (two replicas making it at once keep one)."""
    found = session.execute(sa.select(_T.c.secret).where(_T.c.name == name)).scalar()
    if found is not None:
        return found
    session.execute(
        _insert(session)
        .values(name=name, secret=new_secret(), created_at=utcnow())
        .on_conflict_do_nothing(index_elements=[_T.c.name])
    )
    return session.execute(sa.select(_T.c.secret).where(_T.c.name == name)).scalar_one()


def reveal(*, session: Session, name: str = LISTEN, actor: audit.Actor, client_address: str = "") -> str:
    """The secret kept under `name` (made on first use); the read is recorded in the audit trail."""
    secret = _stored(session, name)
    audit.record(
        session=session,
        actor=actor,
        action="secret.revealed",
        target=f"{name}'s signing secret",
        client_address=client_address,
    )
    return secret


def rotate(*, session: Session, name: str = LISTEN, actor: audit.Actor, client_address: str = "") -> str:
    """A new secret under `name`, replacing the old one at once: a running `listen` keeps the one it started
    with until it is restarted."""
    _stored(session, name)
    secret = new_secret()
    session.execute(sa.update(_T).where(_T.c.name == name).values(secret=secret, created_at=utcnow()))
    audit.record(
        session=session,
        actor=actor,
        action="secret.rotated",
        target=f"{name}'s signing secret",
        client_address=client_address,
    )
    return secret
