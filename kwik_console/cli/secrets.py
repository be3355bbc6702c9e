"""`kwik-console secrets ...`: the key that encrypts signing secrets at rest."""

from __future__ import annotations

import json

from cryptography.fernet import Fernet

from kwik_console.store.db import get_engine
from kwik_console.webhooks.secrets import rekey


def cmd_new_key(args) -> None:
    key = Fernet.generate_key().decode()
    print(json.dumps({"key": key}) if args.json else key)


def cmd_rekey(args) -> None:
    count = rekey(get_engine())
    print(
        json.dumps({"sealed": count})
        if args.json
        else f"Sealed {count} signing secrets with the first key in KWIK_SECRET_KEY."
    )


def register(commands, out) -> None:
    """Add `secrets` to the kwik-console parser (`out` is the shared --json parent)."""
    secrets = commands.add_parser("secrets", help="the key that encrypts signing secrets at rest").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=commands._parser_class
    )
    # Needs no settings: it is how a hosted deployment gets the key it requires.
    secrets.add_parser("new-key", parents=[out], help="print a new key for KWIK_SECRET_KEY").set_defaults(
        func=cmd_new_key, settings_free=True
    )
    secrets.add_parser(
        "rekey",
        parents=[out],
        help="encrypt every signing secret again with the first key in KWIK_SECRET_KEY (the others still decrypt)",
    ).set_defaults(func=cmd_rekey)
