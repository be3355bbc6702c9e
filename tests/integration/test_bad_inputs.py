"""Bad input through the three doors, each answered cleanly: InvalidInput from the services, one line and exit 2
from the CLI (exit 1 for a database that cannot write), 422 or 400 problem+json from the API, never a 500.

Deep nesting, whole numbers past Python's 4,300 digits, odd Unicode, pages and windows past any row or date,
malformed hosts, wrong types from Python callers, and a full disk. tests/integration/test_inputs.py and
test_fuzz.py hold the earlier cases; these are the ones an attack found after them.
"""

from __future__ import annotations

import json
import subprocess
import warnings

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import func, select

from kwik_console.cli import main
from kwik_console.core import json_scan
from kwik_console.core.errors import InvalidInput
from kwik_console.events import deliveries
from kwik_console.events.publishing import DATA_MAX_DEPTH_MESSAGE, DATA_NUMBER_MESSAGE, publish
from kwik_console.operations import notices, retention
from kwik_console.store.db import get_engine, session_scope
from kwik_console.store.tables import Event, Subscription, Webhook
from kwik_console.team import audit, tokens
from kwik_console.webhooks import service as webhooks
from kwik_console.webhooks.rules import WebhookInput
from tests.conftest import KWIK_CONSOLE, TEST_SECRET_KEY, configure

warnings.filterwarnings("ignore", message=".*httpx2.*")
from fastapi.testclient import TestClient  # noqa: E402

from kwik_console.api import create_app  # noqa: E402

GOOD = dict(name="Orders", url="https://127.0.0.1:9/kwik", events=["payment.created"])
PROBLEM = "application/problem+json"
DIGITS = "9" * 5000  # past Python's 4,300-digit limit on reading and printing whole numbers
MALFORMED_HOSTS = [
    ("https://ex\\ample.com/", "Webhook URL must not contain a backslash."),
    ("https://exa%00mple.com/", "Webhook URL must not contain percent-escapes or an IPv6 zone."),
    ("https://a..b.com/", "Webhook URL has an invalid host name."),
    ("https://-bad-.com/", "Webhook URL has an invalid host name."),
    ("https://[fe80::1%25eth0]/", "Webhook URL must not contain percent-escapes or an IPv6 zone."),
]


def count(model) -> int:
    with session_scope() as session:
        return session.exec(select(func.count()).select_from(model)).one()


def nested_text(depth: int, open_: str = '{"a":', close: str = "}", inner: str = "1") -> str:
    return open_ * depth + inner + close * depth


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(capsys, *argv, status: int = 2) -> str:
    code, out, err = run(capsys, *argv)
    assert (code, out) == (status, ""), err
    assert len(err.splitlines()) == 1 and err.startswith("kwik-console: error: "), err
    return err.removeprefix("kwik-console: error: ").rstrip("\n")


# ---------------------------------------------------------------- the services


@pytest.mark.parametrize("page", [10**20, 2**31, 0, -1, "2", 1.5, True, None])
def test_a_page_no_list_can_have_is_invalid_input(session, page):
    with pytest.raises(InvalidInput) as refused:
        webhooks.list_webhooks(session=session, page=page)
    assert list(refused.value.errors) == ["page"]


def test_the_last_page_there_can_be_is_empty_not_an_error(session):
    webhooks.create_webhook(session=session, data=WebhookInput(**GOOD), actor=audit.CLI)
    session.commit()
    assert webhooks.list_webhooks(session=session, page=2**31 - 1, per_page=100).items == []


@pytest.mark.parametrize("limit", [10**20, 0, "5", 2.5, True])
def test_a_delivery_page_size_out_of_range_or_type_is_invalid_input(session, limit):
    with pytest.raises(InvalidInput) as refused:
        deliveries.list_deliveries(session=session, limit=limit)
    assert list(refused.value.errors) == ["limit"]


@pytest.mark.parametrize("days", [float("nan"), float("inf"), float("-inf"), 1e10, 36_501, -1, "30", True, None])
def test_a_retention_window_that_is_no_number_of_days_is_invalid_input(days):
    with pytest.raises(InvalidInput) as refused:
        retention.check_days(days)
    assert refused.value.errors == {"days": "Days must be 0 (keep everything) to 36,500 days."}


@pytest.mark.parametrize("days", [0, 0.5, 30, 36_500])
def test_retention_windows_up_to_a_hundred_years_are_taken(days):
    assert retention.check_days(days) == days


@pytest.mark.parametrize(
    "data", [{"x": 10**4300}, {"x": -(10**4300)}, {"x": [1, {"y": 10**5000}]}], ids=["4301", "-4301", "deep"]
)
def test_publish_refuses_whole_numbers_python_cannot_print(session, data):
    with pytest.raises(InvalidInput) as refused:
        publish("payment.created", data, session=session, wake=False)
    assert refused.value.errors == {"data": DATA_NUMBER_MESSAGE}
    session.rollback()
    assert count(Event) == 0


def test_publish_takes_a_whole_number_of_4300_digits(session):
    published = publish("payment.created", {"x": 10**4300 - 1}, session=session, wake=False)
    assert json.loads(published.event.body)["data"]["x"] == 10**4300 - 1


@pytest.mark.parametrize(
    "text, problem",
    [
        (nested_text(5000), json_scan.TooDeep),
        (nested_text(50_000, "[", "]", ""), json_scan.TooDeep),
        ('{"x": ' + DIGITS + "}", json_scan.NumberTooLong),
        ('{"x": -' + DIGITS + "}", json_scan.NumberTooLong),
    ],
    ids=["objects", "arrays", "number", "negative"],
)
def test_the_scan_finds_what_the_parser_cannot_read_without_parsing(text, problem):
    with pytest.raises(problem):
        json_scan.check(text, max_depth=33)
    with pytest.raises(problem):
        json_scan.check(text.encode(), max_depth=33)


@pytest.mark.parametrize(
    "text",
    [
        nested_text(33),
        '{"a": "' + "[" * 5000 + '"}',  # brackets inside text are text
        '{"a": "\\"' + "{" * 100 + '"}',  # after an escaped quote, still text
        '{"x": 1.' + DIGITS + "}",  # a fraction or an exponent is read as a float, whatever its digits
        '{"x": 1e' + DIGITS + "}",
        '{"x": "' + DIGITS + '"}',
        '{"a": [1,, 2}',  # malformed: the parser's to word
    ],
)
def test_the_scan_passes_what_the_parser_reads(text):
    json_scan.check(text, max_depth=33)


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_per_second", [1]),
        ("max_per_second", {"a": 1}),
        ("max_per_second", object()),
        ("status", b"live"),
        ("url", b"https://127.0.0.1:9/kwik"),
        ("url", ["https://127.0.0.1:9/kwik"]),
        ("name", ["Orders"]),
        ("name", 1.5),
        ("events", [1, 2]),
        ("events", 5.0),
    ],
)
def test_a_python_caller_giving_the_wrong_type_gets_invalid_input_on_create_and_update(session, field, value):
    with pytest.raises(InvalidInput) as refused:
        webhooks.create_webhook(session=session, data=WebhookInput(**(GOOD | {field: value})), actor=audit.CLI)
    assert set(refused.value.errors) == {field}
    session.rollback()
    made = webhooks.create_webhook(session=session, data=WebhookInput(**GOOD), actor=audit.CLI)
    session.commit()
    with pytest.raises(InvalidInput) as refused:
        webhooks.update_webhook(
            session=session, webhook_id=made.id, data=WebhookInput(**{field: value}), actor=audit.CLI
        )
    assert set(refused.value.errors) == {field}
    session.rollback()
    assert [(w.name, w.url) for w in session.exec(select(Webhook))] == [(GOOD["name"], GOOD["url"])]


@pytest.mark.parametrize("url, message", MALFORMED_HOSTS)
def test_malformed_hosts_are_refused_by_update_and_for_the_operational_webhook(session, url, message):
    made = webhooks.create_webhook(session=session, data=WebhookInput(**GOOD), actor=audit.CLI)
    session.commit()
    with pytest.raises(InvalidInput) as refused:
        webhooks.update_webhook(session=session, webhook_id=made.id, data=WebhookInput(url=url), actor=audit.CLI)
    assert refused.value.errors == {"url": message}
    session.rollback()
    with pytest.raises(InvalidInput) as refused:
        notices.set_operational_webhook(session=session, url=url, actor=audit.CLI)
    assert refused.value.errors == {"url": message}
    session.rollback()
    assert [w.url for w in session.exec(select(Webhook))] == [GOOD["url"]]


# ---------------------------------------------------------------- the CLI


@pytest.mark.parametrize(
    "argv, message",
    [
        (["webhooks", "list", "--page", "100000000000000000000"], "Page must be at most 2,147,483,647."),
        (["webhooks", "list", "--page", "0"], "Page must be 1 or more."),
        (["deliveries", "list", "--limit", "100000000000000000000"], "Page size must be between 1 and 500."),
        (["retention", "purge", "--days", "nan"], "--days must be 0 (keep everything) to 36,500 days."),
        (["retention", "purge", "--days", "inf"], "--days must be 0 (keep everything) to 36,500 days."),
        (["retention", "purge", "--days", "1e10"], "--days must be 0 (keep everything) to 36,500 days."),
        (["retention", "purge", "--days", "-1"], "--days must be 0 (keep everything) to 36,500 days."),
        (["events", "publish", "payment.created", "--data", '{"x": ' + DIGITS + "}"], DATA_NUMBER_MESSAGE),
        (["events", "publish", "payment.created", "--data", '{"x": [-' + DIGITS + "]}"], DATA_NUMBER_MESSAGE),
        (["events", "publish", "payment.created", "--data", nested_text(50_000, "[", "]", "")], DATA_MAX_DEPTH_MESSAGE),
        (["events", "publish", "payment.created", "--data", nested_text(33)], DATA_MAX_DEPTH_MESSAGE),
    ],
    ids=lambda v: v[:40] if isinstance(v, str) else None,
)
def test_cli_bad_input_is_one_line_and_exit_2(kwik, capsys, argv, message):
    assert one_line_error(capsys, *argv) == message
    assert count(Event) == 0


@pytest.mark.parametrize("url, message", MALFORMED_HOSTS)
def test_cli_refuses_malformed_hosts_in_one_line(kwik, capsys, url, message):
    assert one_line_error(capsys, "webhooks", "create", "--name", "A", "--url", url, "--events", "payment.created") == (
        message
    )
    assert one_line_error(capsys, "operational-webhook", "set", url) == message
    assert count(Webhook) == 0


def test_the_installed_command_says_a_page_too_far_in_one_line(cli_env):
    result = subprocess.run(
        [*KWIK_CONSOLE, "webhooks", "list", "--page", "100000000000000000000"],
        env=cli_env,
        capture_output=True,
        text=True,
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "kwik-console: error: Page must be at most 2,147,483,647.\n"


@pytest.fixture
def full_disk(kwik):
    """SQLite with no room to grow: every connection may use no page beyond those the file has, so a write
    that needs one fails as on a full disk (SQLITE_FULL, "database or disk is full")."""
    if not kwik.database_url.startswith("sqlite"):
        pytest.skip("the page limit that stands in for a full disk is SQLite's")
    engine = get_engine()

    def no_room(dbapi_connection, _record):
        dbapi_connection.execute("PRAGMA max_page_count = 1")  # never below the file's size: exactly its size

    sa.event.listen(engine, "connect", no_room)
    engine.dispose()  # connections opened before have no limit
    yield
    sa.event.remove(engine, "connect", no_room)
    engine.dispose()


def test_cli_on_a_full_disk_is_one_line_and_exit_1_and_writes_nothing(full_disk, capsys):
    message = one_line_error(
        capsys,
        "webhooks",
        "create",
        "--name",
        "Orders",
        "--url",
        "https://127.0.0.1:9/" + "k" * 2000,
        "--events",
        "payment.created",
        status=1,
    )
    assert message == "the disk is full: the database cannot write (database or disk is full)."
    assert count(Webhook) == 0 and count(Subscription) == 0


# ---------------------------------------------------------------- the API


@pytest.fixture
def api(kwik):
    """The API, called from this machine (loopback) in local mode: no token needed."""
    with TestClient(create_app(), client=("127.0.0.1", 50123)) as client:
        yield client


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["code"] == code
    return body


def post_text(api, path: str, text: str | bytes, headers: dict | None = None):
    return api.post(path, content=text, headers={"Content-Type": "application/json", **(headers or {})})


EVENT = '{"type": "payment.created", "data": %s}'


@pytest.mark.parametrize(
    "body, field, message",
    [
        (EVENT % nested_text(5000), "data", DATA_MAX_DEPTH_MESSAGE),
        (EVENT % nested_text(50_000, "[", "]", ""), "data", DATA_MAX_DEPTH_MESSAGE),
        (EVENT % nested_text(900), "data", DATA_MAX_DEPTH_MESSAGE),
        (EVENT % nested_text(33), "data", DATA_MAX_DEPTH_MESSAGE),
        (nested_text(50_000, "[", "]", ""), "data", DATA_MAX_DEPTH_MESSAGE),
        (EVENT % ('{"x": ' + DIGITS + "}"), "data", DATA_NUMBER_MESSAGE),
        (EVENT % ('{"x": -' + DIGITS + "}"), "data", DATA_NUMBER_MESSAGE),
        (EVENT % '{"x": "\\ud800"}', "data", "valid Unicode text"),
        (EVENT % '{"x": 1e999}', "data", "NaN or Infinity"),
        ('{"type": "payment.\\u0000created", "data": {}}', "type", "Unknown event type"),
    ],
    ids=["objects", "arrays", "900", "33", "bare-arrays", "number", "negative", "surrogate", "1e999", "nul-type"],
)
@pytest.mark.parametrize("key", [None, "order-1"], ids=["", "idempotent"])
def test_api_publish_refuses_bodies_no_receiver_could_read(api, body, field, message, key):
    answer = post_text(api, "/api/v1/events", body, {"Idempotency-Key": key} if key else None)
    problem = assert_problem(answer, 422, "invalid_input")
    assert problem["errors"][0]["field"] == field and message in problem["detail"]
    assert count(Event) == 0


@pytest.mark.parametrize(
    "path, method, body, detail",
    [
        ("/api/v1/webhooks", "POST", nested_text(5000, "[", "]", ""), "nested at most 33 levels"),
        ("/api/v1/webhooks/1", "PATCH", '{"name": ' + nested_text(900, "[", "]", "") + "}", "nested at most 33"),
        (
            "/api/v1/webhooks",
            "POST",
            '{"name": "a", "url": "https://127.0.0.1:9/", "events": ["payment.created"], "max_per_second": '
            + DIGITS
            + "}",
            "more than 4,300 digits",
        ),
        ("/api/v1/webhooks/1/recoveries", "POST", '{"since": ' + nested_text(2000, "[", "]", "") + "}", "nested"),
        ("/api/v1/operational-webhook", "PUT", '{"url": ' + DIGITS + "}", "more than 4,300 digits"),
    ],
)
def test_api_bodies_too_deep_or_with_numbers_too_long_are_422_on_every_route(api, path, method, body, detail):
    answer = api.request(method, path, content=body, headers={"Content-Type": "application/json"})
    problem = assert_problem(answer, 422, "invalid_input")
    assert problem["errors"] == [{"field": "body", "detail": problem["detail"]}] and detail in problem["detail"]
    assert count(Webhook) == 0


def test_api_body_not_in_utf8_is_malformed_json(api):
    problem = assert_problem(post_text(api, "/api/v1/webhooks", b'{"name": "\xff"}'), 400, "malformed_json")
    assert problem["detail"] == "The request body is not valid JSON in UTF-8."


def test_a_deep_body_with_a_publish_token_is_checked_and_counted_first(api, kwik):
    with session_scope() as session:
        token = tokens.create_token(session=session, name="publisher", scopes="publish", actor=audit.CLI).token
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "order-1042"}
    answer = post_text(api, "/api/v1/events", EVENT % nested_text(900), headers)
    assert assert_problem(answer, 422, "invalid_input")["errors"][0]["field"] == "data"
    assert answer.headers["ratelimit-remaining"]  # the token's use was counted, as for any refused body
    assert assert_problem(post_text(api, "/api/v1/events", EVENT % nested_text(900)), 422, "invalid_input")
    wrong = {"Authorization": "Bearer kwik_not_a_token"}
    assert_problem(post_text(api, "/api/v1/events", EVENT % nested_text(5000), wrong), 401, "unauthorized")


def test_hosted_mode_answers_a_deep_body_without_a_token_with_401(monkeypatch, kwik):
    configure(monkeypatch, KWIK_MODE="hosted", KWIK_SECRET_KEY=TEST_SECRET_KEY)
    with TestClient(create_app(), client=("127.0.0.1", 50123)) as client:
        for path in ("/api/v1/events", "/api/v1/webhooks"):
            assert_problem(post_text(client, path, nested_text(50_000, "[", "]", "")), 401, "unauthorized")


@pytest.mark.parametrize("url, message", MALFORMED_HOSTS)
def test_api_refuses_malformed_hosts_as_field_errors(api, url, message):
    created = api.post("/api/v1/webhooks", json=GOOD | {"url": url})
    assert assert_problem(created, 422, "invalid_input")["errors"] == [{"field": "url", "detail": message}]
    operational = api.put("/api/v1/operational-webhook", json={"url": url})
    assert assert_problem(operational, 422, "invalid_input")["errors"] == [{"field": "url", "detail": message}]
    made = api.post("/api/v1/webhooks", json=GOOD)
    assert made.status_code == 201, made.text
    updated = api.patch(f"/api/v1/webhooks/{made.json()['id']}", json={"url": url})
    assert assert_problem(updated, 422, "invalid_input")["errors"] == [{"field": "url", "detail": message}]
    api.delete(f"/api/v1/webhooks/{made.json()['id']}")
    assert count(Webhook) == 0


@pytest.mark.parametrize("since", [5, 1.7e9, True, "1700000000", "0", ["2025-06-01"], {"date": "2025-06-01"}])
def test_api_recovery_refuses_a_since_that_is_not_a_date(api, since):
    made = api.post("/api/v1/webhooks", json=GOOD).json()
    problem = assert_problem(
        api.post(f"/api/v1/webhooks/{made['id']}/recoveries", json={"since": since}), 422, "invalid_input"
    )
    assert problem["errors"] == [
        {"field": "since", "detail": "since must be a date or date-time, such as 2025-06-01 or 2025-06-01T09:30:00Z."}
    ]


# ---------------------------------------------------------------- hypothesis over the API's bodies


def _bodies():
    """JSON text as a hostile client sends it: nesting around and far past the limits, whole numbers around
    Python's digit limit, lone surrogates, NUL and other controls, escaped or raw, and bytes that are not UTF-8."""
    texts = st.text(st.characters(codec="utf-8"), max_size=20).map(json.dumps) | st.sampled_from(
        ['"\\ud800"', '"\\udfff x"', '"\\u0000"', '"a\\u0000b"', '"\\u202e"', '"\x1b[31m"', '"\\\\"', '""']
    )
    numbers = st.integers(4290, 4310).map(lambda n: "9" * n) | st.sampled_from(
        ["1e999", "-1e999", "-0", "1." + "0" * 5000, "1e-" + "9" * 5000, "12345678901234567890"]
    )
    leaves = st.one_of(texts, numbers, st.sampled_from(["true", "null", "{}", "[]"]))

    def nest(leaf: str, depth: int, kinds: list[bool]) -> str:
        chosen = [kinds[i % len(kinds)] for i in range(depth)]  # True: an object, False: an array
        opened = "".join('{"a":' if k else "[" for k in chosen)
        return opened + leaf + "".join("}" if k else "]" for k in reversed(chosen))

    depths = st.integers(0, 40) | st.integers(0, 3000) | st.sampled_from([5000, 50_000])
    deep = st.builds(nest, leaves, depths, st.lists(st.booleans(), min_size=1, max_size=3))
    fields = st.dictionaries(
        st.sampled_from(["type", "data", "name", "url", "events", "status", "max_per_second", "since", "x"]),
        st.one_of(leaves, deep),
        max_size=4,
    ).map(lambda d: "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in d.items()) + "}")
    event = st.builds(lambda t, d: f'{{"type": {t}, "data": {d}}}', st.just('"payment.created"') | texts, deep | fields)
    text = st.one_of(event, fields, deep)
    return text.map(str.encode) | st.builds(lambda t, junk: t.encode()[:-1] + junk, text, st.binary(max_size=4))


def test_hypothesis_no_body_gets_a_500(kwik, api):
    if not kwik.database_url.startswith("sqlite"):
        pytest.skip("the API's parsing is the same on both databases; once is enough")
    made = api.post("/api/v1/webhooks", json=GOOD | {"status": "paused"}).json()  # paused: nothing is sent
    routes = [
        ("POST", "/api/v1/events"),
        ("POST", "/api/v1/webhooks"),
        ("PATCH", f"/api/v1/webhooks/{made['id']}"),
        ("POST", f"/api/v1/webhooks/{made['id']}/recoveries"),
        ("PUT", "/api/v1/operational-webhook"),
    ]

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(route=st.sampled_from(routes), body=_bodies())
    def check(route, body):
        method, path = route
        answer = api.request(method, path, content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code < 500, (method, path, body[:200], answer.text)
        if answer.status_code >= 400:
            assert answer.headers["content-type"] == PROBLEM, answer.text
            assert answer.json()["status"] == answer.status_code

    check()
