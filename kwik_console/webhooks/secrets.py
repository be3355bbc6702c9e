"""Signing secrets: sealing every stored one again under a new KWIK_SECRET_KEY (`kwik-console secrets rekey`).

How a secret is sealed and opened is the store's (store/secret_box.py); a rotation, which replaces a webhook's
secret and keeps the old one signing for a day, is still in service.py with the webhook's other changes.
"""

from __future__ import annotations

import sqlalchemy as sa

from kwik_console.core.settings import get_settings
from kwik_console.store.secret_box import SecretKeyError
from kwik_console.store.tables import ConsoleSecret, PreviousSecret, Webhook


def rekey(engine: sa.Engine, *, batch: int = 500) -> int:
    """Seal every stored signing secret with the current key; returns how many were sealed again.

    Each row is rewritten in its own short statement, and every key still
    opens what it sealed, so deliveries go on signing throughout.
    """
    if not get_settings().secret_keys:  # no key: the secret box stores secrets as they are
        raise SecretKeyError("Set KWIK_SECRET_KEY (the new key first) before rekeying.")
    done = 0
    for table in (Webhook.__table__, PreviousSecret.__table__):
        last = 0
        while True:
            with engine.begin() as conn:
                rows = conn.execute(
                    sa.select(table.c.id, table.c.secret).where(table.c.id > last).order_by(table.c.id).limit(batch)
                ).all()
                for row in rows:
                    # Reading opened it with whichever key sealed it; writing seals with the first.
                    conn.execute(sa.update(table).where(table.c.id == row.id).values(secret=row.secret))
            if not rows:
                break
            last = rows[-1].id
            done += len(rows)
    table = ConsoleSecret.__table__  # a handful, by name: the console's own (console_secrets.py)
    with engine.begin() as conn:
        for row in conn.execute(sa.select(table.c.name, table.c.secret)).all():
            conn.execute(sa.update(table).where(table.c.name == row.name).values(secret=row.secret))
            done += 1
    return done
