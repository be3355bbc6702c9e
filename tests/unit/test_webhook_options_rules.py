"""The rules of "All events" and custom headers, pure (webhooks/rules.py)."""

from __future__ import annotations

import pytest

from kwik_console.core.errors import InvalidInput
from kwik_console.webhooks import rules


def refusal(check, value) -> str:
    with pytest.raises(InvalidInput) as refused:
        check(value)
    return next(iter(refused.value.errors.values()))


def test_star_is_all_events_and_must_be_alone():
    assert rules.validate_events(["*"]) == ["*"]
    assert rules.validate_events([" * ", "*"]) == ["*"]
    assert "must be alone" in refusal(rules.validate_events, ["*", "payment.created"])
    assert "operational" in refusal(rules.validate_events, ["webhook.failing"])


def test_good_headers_keep_their_case_and_order_and_are_trimmed():
    given = {"X-Team": " orders ", "Authorization": "Bearer a.b.c", "x_custom~1": ""}
    assert rules.validate_headers(given) == {"X-Team": "orders", "Authorization": "Bearer a.b.c", "x_custom~1": ""}
    assert list(rules.validate_headers(given)) == ["X-Team", "Authorization", "x_custom~1"]
    assert rules.validate_headers(None) == {} and rules.validate_headers([]) == {}
    assert rules.validate_headers([("X-A", "1")]) == {"X-A": "1"}


@pytest.mark.parametrize(
    "name",
    [
        "webhook-id",
        "Webhook-Signature",
        "content-type",
        "Content-Length",
        "Host",
        "connection",
        "Keep-Alive",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "User-Agent",
        "Accept-Encoding",
        "Expect",
    ],
)
def test_reserved_names_are_refused_by_name(name):
    assert refusal(rules.validate_headers, {name: "x"}).startswith(name + ":")


@pytest.mark.parametrize(
    "headers, words",
    [
        ({"X Team": "1"}, "header name"),
        ({"X-Team:": "1"}, "header name"),
        ({"X-\x00": "1"}, "header name"),
        ({"Ünïcode": "1"}, "header name"),
        ({"": "1"}, "needs a name"),
        ({"X-" + "a" * 100: "1"}, "at most 100"),
        ({"X-A": "1\r\nX-Injected: 2"}, "control characters"),
        ({"X-A": "tab\there"}, "control characters"),
        ({"X-A": "café"}, "ASCII"),
        ({"X-A": "a" * 1025}, "at most 1,024"),
        ({f"X-{n}": "1" for n in range(11)}, "At most 10"),
        ([("X-A", "1"), ("x-a", "2")], "only once"),
        ([("X-A", "1"), ("X-A", "2")], "only once"),
        ({"X-A": 1}, "must be text"),
        ("X-A: 1", "object of names and values"),
    ],
)
def test_bad_headers_are_refused(headers, words):
    assert words in refusal(rules.validate_headers, headers)


def test_ten_headers_of_a_kilobyte_each_are_fine():
    headers = {f"X-{n}": "v" * rules.HEADER_VALUE_MAX for n in range(rules.HEADERS_MAX)}
    assert rules.validate_headers(headers) == headers


def test_a_header_line_splits_at_the_first_colon():
    assert rules.parse_header_line("Authorization: Bearer a:b") == ("Authorization", "Bearer a:b")
    assert rules.parse_header_line("X-Empty:") == ("X-Empty", "")
    assert "Name: value" in refusal(rules.parse_header_line, "X-No-Colon")


def test_validate_checks_headers_with_the_other_fields_and_leaves_them_alone_on_update():
    with pytest.raises(InvalidInput) as refused:
        rules.validate(rules.WebhookInput(name="", url="https://example.com", events=["*"], headers={"Host": "x"}))
    assert set(refused.value.errors) == {"name", "headers"}
    assert rules.validate(rules.WebhookInput(name="A"), partial=True).headers is None
    made = rules.validate(rules.WebhookInput(name="A", url="https://example.com", events=["*"]), local_mode=True)
    assert made.headers == {} and made.events == ["*"]


def test_a_custom_header_value_is_shown_only_to_those_who_may_see_secrets():
    sent = {
        "content-type": "application/json",
        "user-agent": "Kwik-Webhooks/1",
        "webhook-id": "evt_1",
        "webhook-signature": "v1,abc",
        "X-Api-Key": "sk_live_1",
        "Authorization": "Bearer t0k3n",
    }
    hidden = rules.headers_shown(sent, sees_secrets=False)
    assert hidden["X-Api-Key"] == hidden["Authorization"] == rules.HIDDEN_VALUE
    assert {k: v for k, v in hidden.items() if v != rules.HIDDEN_VALUE} == {
        k: sent[k] for k in ("content-type", "user-agent", "webhook-id", "webhook-signature")
    }
    assert rules.headers_shown(sent, sees_secrets=True) == sent
