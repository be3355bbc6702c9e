"""`kwik-console tokens ...`, `listen` and `trigger`: the REST API from the command line.

`tokens` works on the database, like `users`. `listen` and `trigger` talk to a running
console over HTTP, like the Stripe CLI's commands of the same names:

    kwik-console listen --forward-to http://localhost:4242/hook --events payment.created,payment.updated
    kwik-console listen --print-secret
    kwik-console trigger payment.created --override amount=5000
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import time
import uuid

from kwik_console.cli.events import add_payload_arguments, event_data
from kwik_console.cli.output import UsageError, emit, table, when
from kwik_console.core.clock import iso
from kwik_console.core.errors import InvalidInput
from kwik_console.events import catalog, schemas
from kwik_console.store.db import session_scope
from kwik_console.team import audit, tokens
from kwik_console.webhooks import rules
from kwik_console.webhooks.rules import validate_events
from kwik_console.webhooks.signing import signature_headers

DEFAULT_CONSOLE = "http://127.0.0.1:3000"
USER_AGENT = "Kwik-Listen/1"
FIRST_BACKOFF, MAX_BACKOFF = 0.5, 10.0
# The stream sends a keep-alive every 15 s: three missed ones mean the connection is gone.
STREAM_READ_TIMEOUT = 45.0
FORWARD_TIMEOUT = 15.0


def _token_json(t) -> dict:
    return {
        "id": t.id,
        "name": t.name,
        "prefix": t.prefix,
        "scopes": tokens.scope_list(t.scopes),
        "created_at": iso(t.created_at),
        "created_by": t.created_by,
        "last_used_at": iso(t.last_used_at),
        "expires_at": iso(t.expires_at),
        "revoked_at": iso(t.revoked_at),
    }


# ---------------------------------------------------------------- tokens


def cmd_tokens_create(args) -> None:
    with session_scope() as session:
        made = tokens.create_token(
            session=session, name=args.name, scopes=args.scopes, expires_in_days=args.expires_in_days, actor=audit.CLI
        )
    record = made.record
    expiry = f"expires {record.expires_at:%Y-%m-%d %H:%M UTC}" if record.expires_at else "does not expire"
    emit(
        args,
        _token_json(record) | {"token": made.token},
        f"Created token {record.id} “{record.name}” ({', '.join(tokens.scope_list(record.scopes))}; {expiry}).\n"
        f"Copy it now: it is not shown again.\n  {made.token}",
    )


def cmd_tokens_list(args) -> None:
    with session_scope() as session:
        found = tokens.list_tokens(session=session)
    rows = [
        (
            t.id,
            t.name,
            t.prefix + "…",
            ", ".join(tokens.scope_list(t.scopes)),
            when(t.last_used_at),
            when(t.expires_at),
            "revoked" if t.revoked_at else "active",
        )
        for t in found
    ]
    text = (
        table(["ID", "Name", "Token", "Scopes", "Last used", "Expires", "Status"], rows)
        if rows
        else "No access tokens yet."
    )
    emit(args, [_token_json(t) for t in found], text)


def cmd_tokens_revoke(args) -> None:
    with session_scope() as session:
        record = tokens.revoke_token(session=session, token_id=args.id, actor=audit.CLI)
    emit(args, _token_json(record), f"Revoked token {record.id} “{record.name}” ({record.prefix}…).")


# ---------------------------------------------------------------- talking to a console


def _client_settings(args) -> tuple[str, dict[str, str]]:
    console = (args.console or os.environ.get("KWIK_CONSOLE_URL") or DEFAULT_CONSOLE).rstrip("/")
    token = args.token or os.environ.get("KWIK_TOKEN")
    headers = {"user-agent": USER_AGENT}
    if token:
        headers["authorization"] = f"Bearer {token}"
    return console, headers


def _problem_text(response) -> str:
    try:
        body = response.json()
        return f"{response.status_code}: {body.get('detail') or body}"
    except ValueError:
        return f"{response.status_code}: {response.text[:200]}"


class ApiRefused(UsageError):
    """The console answered with a problem that trying again will not fix (exit status 2)."""


def _unreachable(message: str) -> SystemExit:
    """The console could not be reached: exit status 1, since trying again later may work."""
    print(f"kwik-console: error: {message}", file=sys.stderr)
    return SystemExit(1)


def cmd_trigger(args) -> None:
    import httpx  # slow to import: only the commands that talk to a console pay for it

    if not catalog.is_event_type(args.type):
        raise InvalidInput({"type": f"Unknown event type {args.type!r}; see `kwik-console events types`."})
    data = event_data(args)
    schemas.check_data(args.type, data)  # the sample as changed, checked as Test Webhook checks its payload
    console, headers = _client_settings(args)
    # A key per run: if the answer is lost and this is sent again by hand, that is a new event, as intended.
    headers["idempotency-key"] = str(uuid.uuid4())
    try:
        response = httpx.post(
            f"{console}/api/v1/events", headers=headers, timeout=30, json={"type": args.type, "data": data}
        )
    except httpx.HTTPError as exc:
        raise _unreachable(f"cannot reach the console at {console}: {exc}") from None
    if response.status_code != 202:
        raise ApiRefused(f"the console refused the event ({_problem_text(response)})")
    body = response.json()
    emit(args, body, f"Triggered {body['type']}: {body['id']} ({body['deliveries']} deliveries).")


class _Stream:
    """Server-sent events, parsed line by line (the `id`, `event` and `data` fields)."""

    def __init__(self):
        self.id, self.event, self.data = None, None, []

    def feed(self, line: str):
        if line == "":
            if not self.data:
                self.event = None
                return None
            done = (self.id, self.event, "\n".join(self.data))
            self.event, self.data = None, []
            return done
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "id":
            self.id = value
        elif field == "event":
            self.event = value
        elif field == "data":
            self.data.append(value)
        return None


def listen(
    console: str,
    headers: dict[str, str],
    forward_to: str | None,
    secret: str,
    types: list[str] | None,
    *,
    forward_headers: dict[str, str] | None = None,
    print_json: bool = False,
    out=None,
    say=None,
    stop=None,
) -> None:
    """Stream events from the console and POST each, signed with `secret`, to `forward_to`; reconnect on drops.

    Resumes after the last event it saw (Last-Event-ID), so a drop loses nothing and repeats nothing.
    `print_json` writes each event to `out` as one JSON line; the lines for people go to `say`.
    `stop` (a threading.Event) ends it between events.
    """
    import httpx  # slow to import: only the commands that talk to a console pay for it

    out = out or sys.stdout
    say = say or sys.stdout
    params = {"types": ",".join(types)} if types else {}
    last_id: str | None = None
    backoff = FIRST_BACKOFF
    timeout = httpx.Timeout(connect=5.0, read=STREAM_READ_TIMEOUT, write=10.0, pool=5.0)
    with (
        httpx.Client(timeout=timeout) as stream_client,
        httpx.Client(timeout=FORWARD_TIMEOUT, follow_redirects=False) as forward_client,
    ):
        while stop is None or not stop.is_set():
            request_headers = dict(headers, accept="text/event-stream")
            if last_id:
                request_headers["last-event-id"] = last_id
            try:
                with stream_client.stream(
                    "GET", f"{console}/api/v1/stream", params=params, headers=request_headers
                ) as response:
                    if 400 <= response.status_code < 500 and response.status_code != 429:
                        response.read()
                        raise ApiRefused(f"the console refused the stream ({_problem_text(response)})")
                    if response.status_code != 200:
                        raise httpx.HTTPStatusError(
                            f"HTTP {response.status_code}", request=response.request, response=response
                        )
                    parser = _Stream()
                    for line in response.iter_lines():
                        event = parser.feed(line)
                        if event is None:
                            if line == "" and parser.id:
                                last_id = parser.id  # the stream's start position, before any event
                            continue
                        backoff = FIRST_BACKOFF  # events flow again: the next drop starts a fresh backoff
                        event_id, event_type, data = event
                        if print_json:
                            print(data, file=out, flush=True)  # the envelope: one line of JSON already
                        if forward_to:
                            _forward(
                                forward_client,
                                forward_to,
                                secret,
                                forward_headers or {},
                                event_id,
                                event_type,
                                data,
                                say,
                            )
                        last_id = event_id
                        if stop is not None and stop.is_set():
                            return
            except httpx.HTTPError as exc:
                print(
                    f"Stream dropped ({type(exc).__name__}: {exc or 'closed'}); reconnecting in {backoff:g} s, "
                    f"after {last_id or 'the start'}.",
                    file=say,
                    flush=True,
                )
                if stop is not None and stop.wait(backoff):
                    return
                if stop is None:
                    time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            # The server ended the stream cleanly (a restart): reconnect at once.


def _failure(exc) -> str:
    """Why a forward got no answer, in a few words."""
    import httpx  # loaded by listen() already: this only names it here

    if isinstance(exc, httpx.ConnectError):
        return "connection refused" if "refused" in str(exc).lower() else f"cannot connect ({exc})"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {FORWARD_TIMEOUT:g} s"
    return f"{type(exc).__name__}: {exc or 'no answer'}"


def _forward(client, url: str, secret: str, extra: dict[str, str], event_id: str, event_type: str, data: str, say):
    """POST one event, signed; its line says how it went, and a failure never stops listen."""
    import httpx  # loaded by listen() already: this only names it here

    body = data.encode()
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        **extra,
        **signature_headers([secret], event_id, int(time.time()), body),
    }
    started = time.perf_counter()
    try:
        code = client.post(url, content=body, headers=headers).status_code
        status = f"{code}" if code < 300 else f"{code}, failed"
    except httpx.HTTPError as exc:
        status = f"failed: {_failure(exc)}"
    took = (time.perf_counter() - started) * 1000
    now = dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    print(f"{now}  --> {event_type:<22} {event_id}  [{status}]  {took:.0f} ms", file=say, flush=True)


def forward_headers(items: list[str] | None) -> dict[str, str]:
    """`--headers 'Name: value'` (repeatable) as a dict, by the custom headers' rules; a refusal is a usage error."""
    try:
        return rules.validate_headers([rules.parse_header_line(item) for item in items or []])
    except InvalidInput as exc:
        raise UsageError(f"--headers {exc.errors['headers']}") from None


def _listen_secret(console: str, headers: dict[str, str], *, rotate: bool) -> str:
    """The console's secret for listen (GET /listen/secret), or a new one (POST .../rotate)."""
    import httpx  # slow to import: only the commands that talk to a console pay for it

    path = "/api/v1/listen/secret" + ("/rotate" if rotate else "")
    try:
        response = httpx.request("POST" if rotate else "GET", console + path, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise _unreachable(f"cannot reach the console at {console}: {exc}") from None
    if response.status_code != 200:
        raise ApiRefused(f"the console refused listen's signing secret ({_problem_text(response)})")
    return response.json()["secret"]


def cmd_listen(args) -> None:
    if not (args.forward_to or args.print_json or args.print_secret or args.rotate_secret):
        raise UsageError("give --forward-to URL, --print-json or both (or --print-secret)")
    types = validate_events(args.events.split(",")) if args.events else None
    types = None if types == [rules.ALL_EVENTS] else types  # '*' is every event, as without --events
    extra = forward_headers(args.headers)
    console, headers = _client_settings(args)
    secret = _listen_secret(console, headers, rotate=args.rotate_secret)
    if args.print_secret:
        print(secret, flush=True)
        return
    say = sys.stderr if args.print_json else sys.stdout
    if args.rotate_secret:
        print(f"Rotated listen's signing secret: {secret} (the old one no longer verifies).", file=say, flush=True)
        if not (args.forward_to or args.print_json):
            return
    where = f" to {args.forward_to}" if args.forward_to else ""
    print(
        f"Ready! Forwarding {', '.join(types) if types else 'every event'} from {console}{where}.\n"
        f"Signing secret (the same each time; --rotate-secret for a new one): {secret}\n"
        "Ctrl+C to stop.",
        file=say,
        flush=True,
    )
    listen(
        console,
        headers,
        args.forward_to,
        secret,
        types,
        forward_headers=extra,
        print_json=args.print_json,
        out=sys.stdout,
        say=say,
    )


# ---------------------------------------------------------------- parser


def register(commands, out) -> None:
    """Add `tokens`, `listen` and `trigger` to the kwik-console parser (`out` is the shared --json parent)."""
    group = commands.add_parser("tokens", help="API access tokens").add_subparsers(
        dest="action", metavar="ACTION", required=True, parser_class=commands._parser_class
    )
    p = group.add_parser("create", parents=[out], help="make an access token and print it (shown once)")
    p.add_argument("--name", required=True)
    p.add_argument(
        "--scopes",
        required=True,
        metavar="read,write,publish",
        help="comma-separated: " + "; ".join(f"{k}: {v}" for k, v in tokens.SCOPE_HELP.items()),
    )
    p.add_argument("--expires-in-days", type=int, metavar="DAYS", help="days until it stops working (default: never)")
    p.set_defaults(func=cmd_tokens_create)
    group.add_parser("list", parents=[out], help="list access tokens (never the tokens themselves)").set_defaults(
        func=cmd_tokens_list
    )
    p = group.add_parser("revoke", parents=[out], help="revoke a token: it stops working at once")
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_tokens_revoke)

    def remote(parser) -> None:
        parser.add_argument("--console", help=f"the console's address (default $KWIK_CONSOLE_URL or {DEFAULT_CONSOLE})")
        parser.add_argument("--token", help="an access token (default $KWIK_TOKEN); not needed locally")
        parser.set_defaults(settings_free=True)

    p = commands.add_parser("listen", help="forward the console's events to a local URL, signed (like `stripe listen`)")
    p.add_argument("--forward-to", metavar="URL", help="e.g. http://localhost:4242/hook")
    p.add_argument("--events", metavar="a,b,...", help="event types, comma-separated (default: all)")
    p.add_argument(
        "--print-json", action="store_true", help="print each event as one JSON line on stdout (other lines: stderr)"
    )
    p.add_argument(
        "--headers",
        action="append",
        metavar="'NAME: VALUE'",
        help="a header to add to each forward; repeatable",
    )
    p.add_argument("--print-secret", action="store_true", help="print the signing secret and exit")
    p.add_argument("--rotate-secret", action="store_true", help="replace the signing secret with a new one first")
    remote(p)
    p.set_defaults(func=cmd_listen)
    p = commands.add_parser(
        "trigger", parents=[out], help="publish an event type's sample (as changed) through the API"
    )
    p.add_argument("type", help="event type, e.g. payment.created")
    add_payload_arguments(p)
    remote(p)
    p.set_defaults(func=cmd_trigger)
