"""The signature checker's reasons, each from a request a receiver could really get."""

from __future__ import annotations

import json
import time

import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from kwik_console.webhooks import signature_check as sc
from kwik_console.webhooks.service import new_secret
from kwik_console.webhooks.signing import signature_headers

NOW = 1_764_428_645
SECRET, OLD = new_secret(), new_secret()
BODY = json.dumps(
    {"id": "evt_1", "type": "payment.created", "data": {"amount": 4200, "email": "jane@x.example"}},
    separators=(",", ":"),
).encode()


def signed(secret=SECRET, body=BODY, ts=NOW, msg_id="evt_1"):
    return signature_headers([secret], msg_id, ts, body)


def run(headers, *, secret=SECRET, body=BODY, **kw):
    return sc.check(
        secret=secret,
        msg_id=headers["webhook-id"],
        timestamp=headers["webhook-timestamp"],
        signature=headers["webhook-signature"],
        body=body,
        now=NOW,
        **kw,
    )


def test_valid_agrees_with_the_standard_webhooks_library():
    now = int(time.time())
    headers = signed(ts=now)
    assert sc.check(
        secret=SECRET, msg_id="evt_1", timestamp=str(now), signature=headers["webhook-signature"], body=BODY, now=now
    ).valid
    Verifier(SECRET).verify(BODY, headers)  # the library agrees


@pytest.mark.parametrize(
    ("secret", "words"),
    [
        ("", "Paste"),
        ("sk_live_abc", "must start with whsec_"),
        ("whsec_not base64!", "not valid base64"),
        ("whsec_c2hvcnQ=", "too short"),
    ],
)
def test_secret_format(secret, words):
    verdict = run(signed(), secret=secret)
    assert not verdict.valid and verdict.kinds[0] == "secret" and words in verdict.findings[0][1]


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("webhook-timestamp", "2026-11-29T15:04:05Z", "whole Unix seconds"),
        ("webhook-signature", "v1 abc", "not version,signature"),
        ("webhook-signature", "v1,@@@", "not valid base64"),
        ("webhook-signature", "v1,c2hvcnQ=", "32"),
        ("webhook-signature", "v2,c2hvcnQ=", "no v1 signature"),
        ("webhook-id", "", "webhook-id"),
    ],
)
def test_malformed_headers(field, value, words):
    verdict = run(signed() | {field: value})
    assert not verdict.valid and "header" in verdict.kinds
    assert any(words in text for _, text in verdict.findings)


def test_timestamp_outside_the_tolerance_says_by_how_much():
    verdict = run(signed(ts=NOW - 512))
    assert not verdict.valid and verdict.kinds == ["timestamp"]
    assert "8 min 32 s older than now" in verdict.findings[0][1]
    assert "ahead of now" in run(signed(ts=NOW + 4000)).findings[0][1]
    assert run(signed(ts=NOW - 299)).valid


def test_a_reserialised_body_shows_where_the_bytes_differ():
    reserialised = json.dumps(json.loads(BODY), indent=2).encode()
    verdict = run(signed(), body=reserialised, sent_body=BODY)
    assert not verdict.valid and verdict.kinds == ["body"]
    assert verdict.diff.offset == 1 and (verdict.diff.line, verdict.diff.column) == (1, 2)
    assert verdict.diff.sent.startswith('{"id"') and verdict.diff.pasted.startswith('{\n  "id"')
    assert "byte 1" in verdict.findings[0][1]


def test_the_previous_secret_would_have_matched():
    known = [("the current secret", SECRET), ("the previous secret", OLD)]
    verdict = run(signed(secret=OLD), known_secrets=known, sent_body=BODY)
    assert not verdict.valid and verdict.kinds == ["secret"]
    assert "signed with the previous secret" in verdict.findings[0][1]
    assert "The one pasted is the current secret" in verdict.findings[0][1]


def test_a_wrong_secret_unknown_to_the_webhook():
    verdict = run(signed(secret=new_secret()), known_secrets=[("the current secret", SECRET)], sent_body=BODY)
    assert not verdict.valid and "matches none of this webhook's secrets" in verdict.findings[-1][1]
    alone = run(signed(secret=new_secret()))  # nothing known: the likely causes, named
    assert alone.kinds == ["body", "secret"]


def test_code_samples_name_each_library_and_the_webhook():
    samples = sc.code_samples(webhook_name="Orders service", url="https://127.0.0.1:9/kwik/hooks")
    assert set(samples) == {"Python", "Node", "Go", "PHP"}
    assert "standardwebhooks" in samples["Python"] and "standardwebhooks" in samples["Node"]
    assert "standard-webhooks/libraries/go" in samples["Go"] and "StandardWebhooks\\Webhook" in samples["PHP"]
    assert all("Orders service" in s and "/kwik/hooks" in s for s in samples.values())
