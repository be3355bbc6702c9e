"""A webhook's rules, checked without a database: each field's check, and every bad field named at once."""

from __future__ import annotations

import pytest

from kwik_console.core.errors import InvalidInput
from kwik_console.webhooks import rules
from kwik_console.webhooks.rules import WebhookInput


def test_every_bad_field_is_named_at_once():
    with pytest.raises(InvalidInput) as refused:
        rules.validate(
            WebhookInput(name=" ", url="ftp://x", events=["nope"], status="on", max_per_second="fast"), local_mode=True
        )
    assert set(refused.value.errors) == {"name", "url", "events", "status", "max_per_second"}


def test_clean_values_come_back_trimmed_in_catalogue_order_and_live_by_default():
    clean = rules.validate(
        WebhookInput(
            name="  Orders ",
            url=" https://example.com/k ",
            events=["payment.created", "customer.created", "payment.created"],
        ),
        local_mode=False,
    )
    assert (clean.name, clean.url, clean.status) == ("Orders", "https://example.com/k", "live")
    assert clean.events == ["customer.created", "payment.created"] and clean.max_per_second is None


def test_an_update_checks_only_what_it_is_given():
    assert rules.validate(WebhookInput(name="New name"), partial=True, local_mode=True) == WebhookInput(name="New name")


@pytest.mark.parametrize("value, expected", [("", None), ("2.5", 2.5), ("1,000", 1000.0), (0.1, 0.1)])
def test_max_deliveries_per_second(value, expected):
    assert rules.validate_max_per_second(value) == expected


@pytest.mark.parametrize("value", ["0.05", "1001", "nan", "inf", True, "fast"])
def test_max_deliveries_per_second_out_of_range(value):
    with pytest.raises(InvalidInput) as refused:
        rules.validate_max_per_second(value)
    assert set(refused.value.errors) == {"max_per_second"}


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com./hook",
        "https://xn--bcher-kva.example/k",
        "https://[2001:db8::1]:8443/k",
        "https://203.0.113.9/k",
        "https://a-b.c-d.example/k",
    ],
)
def test_well_formed_hosts_are_accepted(url):
    assert rules.validate_url(url, local_mode=True) == url


def test_an_international_host_is_sent_in_its_ascii_form():
    assert rules.validate_url("https://bücher.example/k", local_mode=True) == "https://xn--bcher-kva.example/k"


@pytest.mark.parametrize("url, local_mode", [("http://example.com/k", True), ("http://127.0.0.1/k", False)])
def test_plain_http_only_for_loopback_when_running_locally(url, local_mode):
    with pytest.raises(InvalidInput, match="https://"):
        rules.validate_url(url, local_mode=local_mode)
