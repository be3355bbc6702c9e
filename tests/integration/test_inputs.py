"""Bad input found by trying 114 inputs: each is refused cleanly, with one message."""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from sqlmodel import func, select

from kwik_console.cli import main
from kwik_console.core.clock import utcnow
from kwik_console.core.errors import InvalidInput, NotFound
from kwik_console.events import deliveries
from kwik_console.events.publishing import publish
from kwik_console.store.tables import Attempt, Delivery, Event, Subscription, Webhook
from kwik_console.team import audit
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput
from tests.conftest import KWIK_CONSOLE, configure

GOOD = dict(name="Orders", url="https://127.0.0.1:9/kwik", events=["payment.created"])
# Past every id column: INTEGER on PostgreSQL (2^31 - 1), 64-bit on SQLite.
HUGE_IDS = [2**31, 2**63, 99999999999999999999, 0, -1, -(2**63) - 1]
# Anything a terminal would obey rather than show; "\n" is allowed only between lines.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def count(session, model) -> int:
    return session.exec(select(func.count()).select_from(model)).one()


def make(session, **overrides) -> Webhook:
    webhook = webhooks.create_webhook(session=session, data=WebhookInput(**(GOOD | overrides)), actor=audit.CLI)
    session.commit()
    return webhook


# ---------------------------------------------------------------- ids past the id columns


@pytest.mark.parametrize("webhook_id", HUGE_IDS)
def test_ids_no_row_can_have_are_not_found_in_every_service(session, webhook_id):
    make(session)
    calls = [
        lambda: webhooks.get_webhook(session=session, webhook_id=webhook_id),
        lambda: webhooks.webhook_events(session=session, webhook_id=webhook_id),
        lambda: webhooks.update_webhook(
            session=session, webhook_id=webhook_id, data=WebhookInput(name="x"), actor=audit.CLI
        ),
        lambda: webhooks.delete_webhook(session=session, webhook_id=webhook_id, actor=audit.CLI),
        lambda: webhooks.rotate_secret(session=session, webhook_id=webhook_id, actor=audit.CLI),
        lambda: webhooks.previous_secrets(session=session, webhook_id=webhook_id),
        lambda: deliveries.list_deliveries(session=session, webhook_id=webhook_id),
        lambda: publish("payment.created", {}, test=True, webhook_id=webhook_id, session=session, wake=False),
    ]
    for call in calls:
        with pytest.raises(NotFound, match=rf"^Webhook {webhook_id} does not exist\.$"):
            call()
        session.rollback()  # a failed statement would have aborted a PostgreSQL transaction
    with pytest.raises(NotFound, match=rf"^Delivery {webhook_id} does not exist\.$"):
        deliveries.get_delivery(session=session, delivery_id=webhook_id)
    assert count(session, Event) == 0


def test_paging_before_any_id_is_not_an_error(session):
    make(session)
    published = publish("payment.created", {"object": "payment"}, session=session, wake=False)
    page = deliveries.list_deliveries(session=session, before_id=2**63)
    assert [d.id for d in page.items] == published.delivery_ids
    assert deliveries.list_deliveries(session=session, before_id=-(2**63)).items == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["webhooks", "show", "99999999999999999999"], "Webhook 99999999999999999999 does not exist."),
        (["webhooks", "show", str(2**31)], f"Webhook {2**31} does not exist."),
        (["webhooks", "update", str(2**63), "--name", "x"], f"Webhook {2**63} does not exist."),
        (["webhooks", "delete", str(2**63)], f"Webhook {2**63} does not exist."),
        (["webhooks", "rotate-secret", str(2**31)], f"Webhook {2**31} does not exist."),
        (["deliveries", "show", "99999999999999999999"], "Delivery 99999999999999999999 does not exist."),
        (["deliveries", "list", "--webhook", str(2**63)], f"Webhook {2**63} does not exist."),
        (["events", "publish", "payment.created", "--webhook", str(2**31)], f"Webhook {2**31} does not exist."),
    ],
)
def test_cli_ids_past_the_columns_are_one_line_not_found(kwik, capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert (code, out, err) == (2, "", f"kwik-console: error: {message}\n")


# ---------------------------------------------------------------- publish data


def nested(depth: int) -> dict:
    data: dict = {}
    for _ in range(depth - 1):
        data = {"a": data}
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (nested(10_000), "Event data must be nested at most 32 levels deep."),
        (nested(33), "Event data must be nested at most 32 levels deep."),
        ({"a": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}, "nested at most 32 levels"),
        ({"note": "\ud800"}, "valid Unicode text"),
        ({"\udfff": 1}, "valid Unicode text"),
        ({"amount": float("nan")}, "NaN or Infinity"),
        ({"amount": [1, float("inf")]}, "NaN or Infinity"),
        ({"amount": {"x": float("-inf")}}, "NaN or Infinity"),
        ({"blob": "x" * (256 * 1024)}, "Event data is too large"),
        ({"when": object()}, "only JSON values"),
    ],
)
def test_publish_refuses_data_no_receiver_could_read(session, data, message):
    make(session)
    with pytest.raises(InvalidInput) as raised:
        publish("payment.created", data, session=session, wake=False)
    assert list(raised.value.errors) == ["data"] and message in raised.value.errors["data"]
    assert count(session, Event) == 0 and count(session, Delivery) == 0


def test_publish_accepts_data_at_the_limits(session):
    make(session)
    published = publish(
        "payment.created",
        nested(32) | {"max": 1.7976931348623157e308, "text": "é\u0000\U0001f600"},
        session=session,
        wake=False,
    )
    body = json.loads(published.event.body)  # strict JSON: no NaN, no lone surrogates
    assert body["data"]["max"] == 1.7976931348623157e308 and body["data"]["text"] == "é\u0000\U0001f600"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('{"a":' * 10_000 + "1" + "}" * 10_000, "Event data must be nested at most 32 levels deep."),
        ('{"amount": NaN}', "Event data must not contain NaN or Infinity: JSON has no such numbers."),
        ('{"amount": -Infinity}', "Event data must not contain NaN or Infinity: JSON has no such numbers."),
        ('{"note": "\\ud800"}', "Event data must be valid Unicode text"),
    ],
)
def test_cli_publish_bad_data_is_one_line(kwik, capsys, data, message):
    code, out, err = run(capsys, "events", "publish", "payment.created", "--data", data)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith(f"kwik-console: error: {message}")


# ---------------------------------------------------------------- KWIK_DATABASE_URL


@pytest.mark.parametrize(
    ("url", "status", "message"),
    [
        ("nope", 2, "KWIK_DATABASE_URL is not a database URL"),
        ("mysql://kwik:pw@127.0.0.1/kwik", 2, "KWIK_DATABASE_URL must name a SQLite or PostgreSQL database"),
        ("postgresql://kwik:hunter2@127.0.0.1:1/kwik", 1, "KWIK_DATABASE_URL names a database that cannot be opened"),
        (
            "postgresql://postgres@127.0.0.1:5432/kwik_no_such_database",
            1,
            "KWIK_DATABASE_URL names a database that cannot be opened",
        ),
    ],
)
def test_bad_database_url_is_one_line_naming_the_variable(monkeypatch, capsys, url, status, message):
    configure(monkeypatch, KWIK_DATABASE_URL=url)
    code, out, err = run(capsys, "webhooks", "list")
    assert code == status and out == ""
    assert len(err.splitlines()) == 1 and err.startswith(f"kwik-console: error: {message}")
    assert "hunter2" not in err


def test_unopenable_sqlite_file_from_the_installed_command(tmp_path, cli_env):
    (tmp_path / "not-a-dir").write_text("a file where a directory should be")
    cli_env["KWIK_DATABASE_URL"] = f"sqlite:///{tmp_path / 'not-a-dir' / 'kwik.db'}"
    result = subprocess.run([*KWIK_CONSOLE, "webhooks", "list"], env=cli_env, capture_output=True, text=True)
    assert result.returncode == 1 and result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("kwik-console: error: KWIK_DATABASE_URL names a database that cannot be opened")


# ---------------------------------------------------------------- URLs and names


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://hooks.example.invalid/\x00", "Webhook URL must not contain control characters."),
        ("https://hooks.exa\x00mple.invalid/kwik", "Webhook URL must not contain control characters."),
        ("https://hooks.example.invalid/\x1b[31mred", "Webhook URL must not contain control characters."),
        ("https://hooks.example.invalid/a\x7fb", "Webhook URL must not contain control characters."),
        ("https://hooks.example.invalid/a\nb", "Webhook URL must not contain control characters."),
        ("https://hooks.example.invalid/\u202ekwik", "Webhook URL must not contain control characters."),
        ("https://hooks.example.invalid/\ud800", "Webhook URL must be valid Unicode text."),
        ("https://☃.example.invalid/kwik", "Webhook URL has an invalid international host name."),
        ("https://xn--a.example.invalid/kwik", "Webhook URL has an invalid international host name."),
        ("https://\u0300a.example.invalid/kwik", "Webhook URL has an invalid international host name."),
        ("https://" + "é" * 64 + ".example.invalid/kwik", "Webhook URL has an invalid international host name."),
        ("https://hooks.example.invalid:0/kwik", "Webhook URL's port must be between 1 and 65535."),
        ("http://127.0.0.1:0/kwik", "Webhook URL's port must be between 1 and 65535."),
    ],
)
def test_bad_urls_are_field_errors_and_write_nothing(session, url, message):
    with pytest.raises(InvalidInput) as raised:
        webhooks.create_webhook(session=session, data=WebhookInput(**(GOOD | {"url": url})), actor=audit.CLI)
    assert raised.value.errors == {"url": message}
    session.rollback()
    assert count(session, Webhook) == 0 and count(session, Subscription) == 0


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("https://BÜCHER.example/kwik?x=1", "https://xn--bcher-kva.example/kwik?x=1"),
        ("https://bücher.example:8443/kwik", "https://xn--bcher-kva.example:8443/kwik"),
        ("https://ドメイン.テスト/hook", "https://xn--eckwd4c7c.xn--zckzah/hook"),
        ("https://xn--bcher-kva.example/kwik", "https://xn--bcher-kva.example/kwik"),
        ("https://127.0.0.1:8443/kwik", "https://127.0.0.1:8443/kwik"),
    ],
)
def test_international_host_names_are_stored_in_their_ascii_form(session, url, stored):
    # Disabled: no test makes a Live webhook to a host off this machine.
    assert make(session, url=url, status="disabled").url == stored


@pytest.mark.parametrize(
    "name",
    [
        "Orders\nservice",
        "\x1b[31mRed\x1b[0m",
        "Tab\there",
        "Bell\x07",
        "NUL\x00byte",
        "Del\x7f",
        "C1\x9b31m",
        "\u202eesrever",
        "Line\u2028separator",
    ],
)
def test_names_with_control_characters_are_refused(session, name):
    with pytest.raises(InvalidInput) as raised:
        webhooks.create_webhook(session=session, data=WebhookInput(**(GOOD | {"name": name})), actor=audit.CLI)
    assert raised.value.errors == {"name": "Name must not contain control characters."}
    session.rollback()
    webhook = make(session)
    with pytest.raises(InvalidInput) as raised:
        webhooks.update_webhook(session=session, webhook_id=webhook.id, data=WebhookInput(name=name), actor=audit.CLI)
    assert raised.value.errors == {"name": "Name must not contain control characters."}
    session.rollback()
    assert [w.name for w in session.exec(select(Webhook))] == ["Orders"]


def test_name_with_a_lone_surrogate_is_refused(session):
    with pytest.raises(InvalidInput) as raised:
        webhooks.create_webhook(
            session=session, data=WebhookInput(**(GOOD | {"name": "Orders \ud800"})), actor=audit.CLI
        )
    assert raised.value.errors == {"name": "Name must be valid Unicode text."}


def test_names_keep_ordinary_unicode(session):
    name = "Zahlungen – Bücher 👨‍👩‍👧 (ℕ)"  # the family emoji's joiners are not controls
    assert make(session, name=f"  {name}\n").name == name


def test_cli_refuses_a_name_with_an_escape_in_one_clean_line(kwik, capsys):
    code, out, err = run(
        capsys, "webhooks", "create", "--name", "\x1b[2JEvil", "--url", GOOD["url"], "--events", "payment.created"
    )
    assert (code, out, err) == (2, "", "kwik-console: error: Name must not contain control characters.\n")


def test_cli_error_messages_escape_what_the_user_typed(kwik, capsys):
    code, out, err = run(
        capsys, "webhooks", "create", "--name", "A", "--url", GOOD["url"], "--events", "pay\x1b[31m.created"
    )
    assert (code, out) == (2, "")
    assert err == "kwik-console: error: Unknown event type: pay\\x1b[31m.created.\n"


def test_cli_never_prints_raw_control_characters_from_stored_data(session, capsys):
    # Rows written before names were checked, and an endpoint's reply that carries escapes.
    now = utcnow()
    session.add(
        Webhook(
            name="\x1b[2JEvil\nWebhook 2: fake",
            url="https://127.0.0.1:9/\x1b]8;;x\x07",
            secret=webhooks.new_secret(),
            search_text="evil",
            created_at=now,
            updated_at=now,
        )
    )
    session.commit()
    session.add(Subscription(webhook_id=1, event_type="payment.created"))
    session.commit()
    published = publish("payment.created", {"object": "payment"}, session=session, wake=False)
    session.add(
        Attempt(
            delivery_id=published.delivery_ids[0],
            number=1,
            attempted_at=now,
            http_code=500,
            response_body="\x1b[1;31mpwned\r\x9b2J",
        )
    )
    session.commit()

    delivery_id = str(published.delivery_ids[0])
    outputs = {}
    for argv in (
        ["webhooks", "list"],
        ["webhooks", "show", "1"],
        ["deliveries", "show", delivery_id],
        ["webhooks", "delete", "1"],
    ):
        code, out, err = run(capsys, *argv)
        assert code == 0, err
        assert not RAW_CONTROL.search(out), (argv, out)
        outputs[argv[0], argv[1]] = out.splitlines()
    assert re.split(r"\s{2,}", outputs["webhooks", "list"][2])[2] == "\\x1b[2JEvil\\nWebhook 2: fake"
    assert outputs["webhooks", "show"][:2] == [
        "Webhook 1: \\x1b[2JEvil\\nWebhook 2: fake",
        "  Webhook URL     https://127.0.0.1:9/\\x1b]8;;x\\x07",
    ]
    assert outputs["deliveries", "show"][0].endswith("to webhook 1 (\\x1b[2JEvil\\nWebhook 2: fake)")
    assert outputs["deliveries", "show"][-1].split()[-1] == "\\x1b[1;31mpwned\\r\\x9b2J"
    assert outputs["webhooks", "delete"] == ["Deleted webhook 1 (\\x1b[2JEvil\\nWebhook 2: fake)."]


def test_nul_in_a_name_is_a_field_error_on_postgresql_too(session):
    """On PostgreSQL a NUL reached the database as an unhandled DataError."""
    webhook = make(session)
    with pytest.raises(InvalidInput) as raised:
        webhooks.update_webhook(
            session=session,
            webhook_id=webhook.id,
            data=WebhookInput(name="a\x00b", url="https://hooks.example.invalid/\x00"),
            actor=audit.CLI,
        )
    assert raised.value.errors == {
        "name": "Name must not contain control characters.",
        "url": "Webhook URL must not contain control characters.",
    }
    session.rollback()
    assert webhooks.get_webhook(session=session, webhook_id=webhook.id).name == "Orders"


def test_searching_for_characters_no_webhook_can_hold_finds_nothing(session):
    make(session)
    for term in ("\x00", "Ord\ud800"):
        assert webhooks.list_webhooks(session=session, search=term).total == 0
