"""The `kwik-console` command: run the console or the worker, manage webhooks, publish events, read deliveries.

Tables for people; `--json` for machines. Bad input, including a bad setting
or a malformed KWIK_DATABASE_URL, prints one line to stderr and exits with
status 2; a database that cannot be reached, or refuses a write (its disk is
full, say), prints one line and exits with status 1, since trying again later
may work. Text for people never carries raw
control characters from stored data: they are shown escaped (`\x1b`, `\n`).

Each command group lives in a module of its own, with a `register(...)` that adds it to the parser;
what they share (tables, JSON, times) is in `cli.output`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError

from kwik_console.cli import api, deliveries, events, members, operations, schema, secrets, serve, webhooks
from kwik_console.cli.output import UsageError, database_refusal, shown
from kwik_console.core.errors import InvalidInput, NotFound
from kwik_console.core.settings import SettingsError, get_settings
from kwik_console.runtime import wiring
from kwik_console.store.db import DatabaseUnavailable
from kwik_console.store.secret_box import SecretKeyError
from kwik_console.team import access


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    out = _Parser(add_help=False)
    out.add_argument("--json", action="store_true", help="print JSON for machines")

    parser = _Parser(prog="kwik-console", description="Kwik Console: webhooks for Kwik merchants.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    # In this order: it is the order of `kwik-console --help`.
    serve.register(commands)  # `run`, `worker`
    wh = webhooks.register(commands, out)
    events.register(commands, out)
    dl = deliveries.register(commands, out)
    # pause/resume, resend, `recover`, `operational-webhook`, `retention`
    operations.register(commands, out, webhook_commands=wh, delivery_commands=dl)
    members.register(commands, out)  # `users ...` (hosted mode's members)
    api.register(commands, out)  # `tokens ...`, `listen`, `trigger`: the REST API
    secrets.register(commands, out)  # `secrets new-key|rekey`
    schema.register(commands, out)  # `db upgrade|current|history`: the schema's migrations
    return parser


def _fail(message: str, status: int) -> int:
    print(f"kwik-console: error: {shown(message)}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.json = getattr(args, "json", False)
        command = " ".join(filter(None, [args.command, getattr(args, "action", None)]))
        if access.decide_command(command) != access.Decision.ALLOW:  # the one guard, as for events and routes
            raise UsageError(f"`{command}` has no rule in access.py")
        if not getattr(args, "settings_free", False):
            get_settings()  # a bad setting fails here, whatever the command
        wiring.install()  # the commands that deliver (worker, events publish, resend) run the engine
        args.func(args)
    except InvalidInput as exc:
        return _fail(exc.message, 2)
    except (UsageError, NotFound, SettingsError) as exc:
        return _fail(str(exc), 2)
    except DatabaseUnavailable as exc:
        return _fail(str(exc), 1)
    except SQLAlchemyError as exc:  # the database refused a statement (a full disk, say): trying later may work
        return _fail(database_refusal(exc), 1)
    except SecretKeyError as exc:
        return _fail(str(exc), 2)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
