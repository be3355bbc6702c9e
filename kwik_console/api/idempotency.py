"""`Idempotency-Key` for POST /events: a repeat within 24 h gets the first result and publishes nothing.

The key is claimed with an INSERT that a unique (owner, key) constraint lets only
one request win, in the same transaction as the publish and its stored result. A
concurrent repeat waits on the database for the winner's commit (PostgreSQL's
unique index, SQLite's write lock), then reads the result the winner stored; if
the winner fails, its claim rolls back with it and the repeat publishes instead.
No process memory is involved, so this holds across replicas.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import random
import re
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session

from kwik_console.api.problems import ApiProblem
from kwik_console.core.clock import utcnow
from kwik_console.store.token_tables import IdempotencyKey

KEEP_FOR = dt.timedelta(hours=24)
KEY_MAX = 255
HEADER = "Idempotency-Key"
_KEY_PATTERN = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces
PURGE_ONE_IN = 100


@dataclasses.dataclass(frozen=True)
class Result:
    status_code: int
    body: dict[str, Any]
    replayed: bool


def check_key(key: str) -> str:
    if not 1 <= len(key) <= KEY_MAX or not _KEY_PATTERN.match(key):
        raise ApiProblem(
            400,
            "invalid_idempotency_key",
            "Invalid Idempotency-Key",
            f"{HEADER} must be 1 to {KEY_MAX} printable ASCII characters without spaces, such as a UUID.",
            errors={HEADER: "Use 1 to 255 printable ASCII characters, like a UUID."},
        )
    return key


def request_hash(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _claim(dialect: str):
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = IdempotencyKey.__table__
    return (
        insert(table)
        .values(
            owner=sa.bindparam("owner"),
            key=sa.bindparam("key"),
            request_hash=sa.bindparam("request_hash"),
            status_code=0,
            response={},
            created_at=sa.bindparam("now"),
        )
        .on_conflict_do_nothing(index_elements=[table.c.owner, table.c.key])
        .returning(table.c.id)
    )


_CLAIMS = {name: _claim(name) for name in ("postgresql", "sqlite")}
_T = IdempotencyKey.__table__


def run_once(
    connection, *, owner: str, key: str, fingerprint: str, action: Callable[[Session], tuple[int, dict[str, Any]]]
) -> Result:
    """Run `action` (in `connection`'s transaction, which claims the key) once per (owner, key) within 24 h;
    repeats get its result."""
    now = utcnow()
    # A key older than 24 h is forgotten: its owner may use it again.
    connection.execute(sa.delete(_T).where(_T.c.owner == owner, _T.c.key == key, _T.c.created_at < now - KEEP_FOR))
    claimed = connection.execute(
        _CLAIMS[connection.dialect.name], {"owner": owner, "key": key, "request_hash": fingerprint, "now": now}
    ).first()
    if claimed is not None:
        # The session joins this transaction: the action's own commit() does not end it.
        with Session(bind=connection, expire_on_commit=False) as session:
            status_code, body = action(session)
        connection.execute(sa.update(_T).where(_T.c.id == claimed[0]).values(status_code=status_code, response=body))
        if random.randrange(PURGE_ONE_IN) == 0:
            connection.execute(sa.delete(_T).where(_T.c.created_at < now - KEEP_FOR))
        return Result(status_code, body, replayed=False)
    first = connection.execute(
        sa.select(_T.c.request_hash, _T.c.status_code, _T.c.response).where(_T.c.owner == owner, _T.c.key == key)
    ).first()
    if first is None or first.status_code == 0:  # cannot happen: the claim commits with its result
        raise ApiProblem(
            409,
            "idempotency_conflict",
            "Request in progress",
            f"A request with this {HEADER} is still in progress; try again in a moment.",
        )
    if first.request_hash != fingerprint:
        raise ApiProblem(
            422,
            "idempotency_key_reused",
            "Idempotency-Key reused",
            f"This {HEADER} was already used, within 24 hours, for a different request. Use a new key for a new event.",
            errors={HEADER: "Already used for a different request."},
        )
    return Result(first.status_code, dict(first.response), replayed=True)
