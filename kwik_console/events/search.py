"""Payload search for the event log: find deliveries by event id or by a value in the event's JSON body.

SQLite: an external-content FTS5 index over event.body, kept by triggers, so it
costs no second copy of the bodies. The words typed must appear in that order
(a phrase); the last one may be the start of a word (`pay_01JDX` finds
`pay_01JDXA8…`). PostgreSQL: a pg_trgm GIN index over event.body; the text
typed must appear as is, case-insensitively.

Both are made by migration 0003, which fills them from the events already
stored; they are not models, so the schema comparison skips them
(`store.schema.HAND_MADE`).
"""

from __future__ import annotations

import re

import sqlalchemy as sa

from kwik_console.core.errors import InvalidInput
from kwik_console.store.tables import Delivery, Event

# What the search box says it searches; one place for the words.
SEARCHED = "Searches the event id and every value in the payload: ids, emails, amounts, references."
MAX_QUERY = 200
EVENT_ID = re.compile(r"^evt_[0-9A-Za-z]{6,36}$")
_WORD = re.compile(r"[^\W_]+", re.UNICODE)

# A delivery found from its event: without it the search would scan the deliveries.
sa.Index("ix_delivery_event", Delivery.__table__.c.event_id)


def normalise(text: str | None) -> str:
    text = (text or "").replace("…", " ").strip()
    if len(text) > MAX_QUERY:
        raise InvalidInput({"search": f"Search for at most {MAX_QUERY} characters."})
    return text


def fts_query(text: str) -> str | None:
    """The FTS5 query for what was typed: its words as one phrase, the last a prefix; None if it has no word."""
    words = _WORD.findall(text.lower())
    if not words:
        return None
    return '"' + " ".join(words) + '" *'


def _like_pattern(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# Above this many matching events (SQLite), the log is walked newest first instead: see restrict().
COMMON_MATCHES = 20_000
_MATCHES = "SELECT rowid FROM event_fts WHERE event_fts MATCH :search_match"
_COUNT_MATCHES = sa.text(  # stops counting past the threshold
    "SELECT count(*) FROM (SELECT rowid FROM event_fts WHERE event_fts MATCH :search_match LIMIT :cap)"
)


def restrict(query, connection, text: str):
    """`query` (over Delivery) narrowed to deliveries whose event id or body matches `text`."""
    text = normalise(text)
    if not text:
        return query
    if EVENT_ID.match(text):
        return query.where(Delivery.event_id == text)
    if connection.dialect.name == "sqlite":
        match = fts_query(text)
        if match is None:
            return query.where(sa.false())
        if (
            connection.execute(_COUNT_MATCHES, {"search_match": match, "cap": COMMON_MATCHES + 1}).scalar_one()
            > COMMON_MATCHES
        ):
            # A common word: fetching every match and sorting them costs as many reads as
            # there are matches; walking the log newest first finds a page among them at once.
            return query.where(
                sa.text(
                    f"(SELECT event.rowid FROM event WHERE event.id = delivery.event_id) IN ({_MATCHES})"
                ).bindparams(search_match=match)
            )
        # A rare value (an id, an email): its few events, then their deliveries.
        events = sa.select(Event.id).where(sa.text(f"event.rowid IN ({_MATCHES})").bindparams(search_match=match))
    else:
        events = sa.select(Event.id).where(Event.body.ilike(_like_pattern(text), escape="\\"))
    return query.where(Delivery.event_id.in_(events))
