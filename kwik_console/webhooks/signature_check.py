"""The signature checker (Developers page): is this request's Standard Webhooks signature valid, and if not, why.

Pure logic: the page passes what the merchant pasted, and, when it found the
delivery by its `webhook-id`, the body Kwik sent and the webhook's secrets
(which are compared here and never shown).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
from urllib.parse import urlsplit

from kwik_console.webhooks.signing import SECRET_PREFIX

TOLERANCE_S = 5 * 60  # what the Standard Webhooks libraries accept either side of now


@dataclasses.dataclass(frozen=True)
class BodyDiff:
    offset: int  # first byte that differs
    line: int
    column: int
    sent: str  # a few bytes around it, as Kwik sent them
    pasted: str  # and as pasted
    sent_length: int
    pasted_length: int


@dataclasses.dataclass(frozen=True)
class Verdict:
    valid: bool
    # One entry per finding, in the order a receiver would hit them: (kind, sentence).
    findings: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    diff: BodyDiff | None = None

    @property
    def kinds(self) -> list[str]:
        return [k for k, _ in self.findings]


def secret_key(secret: str) -> tuple[bytes | None, str | None]:
    """The HMAC key of a `whsec_` secret, or why it is not one."""
    secret = secret.strip()
    if not secret:
        return None, "Paste the webhook's signing secret: it starts with whsec_."
    if not secret.startswith(SECRET_PREFIX):
        return None, f"The secret must start with {SECRET_PREFIX} (it starts with {secret[:6]!r})."
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        return None, "The part after whsec_ is not valid base64: part of the secret may be missing or extra."
    if len(key) < 24:
        return None, f"The secret is too short: {len(key)} bytes after decoding; Kwik's secrets have 32."
    return key, None


def expected_signature(key: bytes, msg_id: str, timestamp: str, body: bytes) -> bytes:
    return hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()


def parse_signatures(header: str) -> tuple[list[bytes], str | None]:
    """The v1 signatures of a webhook-signature header, or what is wrong with it."""
    parts = header.split()
    if not parts:
        return [], "The webhook-signature header is empty."
    signatures = []
    for part in parts:
        version, _, encoded = part.partition(",")
        if not encoded:
            return [], f"{part[:20]!r} in webhook-signature is not version,signature (expected v1,<base64>)."
        if version != "v1":
            continue  # other schemes may be sent alongside; receivers skip them
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return [], f"The signature after v1, is not valid base64 ({encoded[:16]}…)."
        if len(raw) != 32:
            return [], f"The signature after v1, is {len(raw)} bytes; an HMAC-SHA256 signature has 32."
        signatures.append(raw)
    if not signatures:
        return [], "The webhook-signature header has no v1 signature."
    return signatures, None


def _duration(seconds: int) -> str:
    seconds = abs(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min {seconds % 60} s"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} days"


def body_diff(sent: bytes, pasted: bytes) -> BodyDiff | None:
    if sent == pasted:
        return None
    offset = next((i for i, (a, b) in enumerate(zip(sent, pasted)) if a != b), min(len(sent), len(pasted)))
    before = sent[:offset]
    line = before.count(b"\n") + 1
    column = offset - (before.rfind(b"\n") + 1) + 1
    start = max(0, offset - 12)

    def around(data: bytes) -> str:
        return data[start : offset + 24].decode("utf-8", "replace")

    return BodyDiff(offset, line, column, around(sent), around(pasted), len(sent), len(pasted))


def check(
    *,
    secret: str,
    msg_id: str,
    timestamp: str,
    signature: str,
    body: bytes,
    now: int,
    sent_body: bytes | None = None,
    known_secrets: list[tuple[str, str]] = (),
) -> Verdict:
    """Check a request as a Standard Webhooks receiver would, and say why it fails.

    `sent_body`: the body Kwik sent for this webhook-id, if the delivery was found.
    `known_secrets`: the webhook's secrets as (label, secret), current first, e.g. ("the current secret", ...),
    ("the previous secret, replaced at ...", ...).
    """
    findings: list[tuple[str, str]] = []
    key, secret_problem = secret_key(secret)
    if secret_problem:
        findings.append(("secret", secret_problem))
    msg_id, timestamp = msg_id.strip(), timestamp.strip()
    if not msg_id:
        findings.append(("header", "The webhook-id header is empty: it is the event id, evt_…"))
    if not timestamp.isdigit():
        findings.append(
            ("header", f"webhook-timestamp must be whole Unix seconds, like 1764428645; got {timestamp[:24]!r}.")
        )
    signatures, signature_problem = parse_signatures(signature)
    if signature_problem:
        findings.append(("header", signature_problem))
    if findings:
        return Verdict(False, findings)

    skew = now - int(timestamp)
    if abs(skew) > TOLERANCE_S:
        direction = "older than now" if skew > 0 else "ahead of now"
        findings.append(
            (
                "timestamp",
                f"The timestamp is {_duration(skew)} {direction}, outside the "
                f"{TOLERANCE_S // 60}-minute tolerance: libraries refuse it as a possible "
                "replay. Check the receiver's clock, or check the request when it arrives.",
            )
        )

    def signed_by(k: bytes, data: bytes) -> bool:
        mac = expected_signature(k, msg_id, timestamp, data)
        return any(hmac.compare_digest(mac, s) for s in signatures)

    if signed_by(key, body):
        return Verdict(not findings, findings)

    diff = body_diff(sent_body, body) if sent_body is not None else None
    if diff is not None:
        findings.append(
            (
                "body",
                f"The body differs from the one Kwik sent for {msg_id}, first at byte "
                f"{diff.offset} (line {diff.line}, column {diff.column}). Verify the raw bytes as "
                "received, before any JSON parsing or re-serialising.",
            )
        )
        if signed_by(key, sent_body):
            return Verdict(False, findings, diff)
    elif sent_body is None:
        findings.append(
            (
                "body",
                "If the body was parsed and serialised again (JSON spacing, key order, escaped "
                "characters), its bytes differ from those signed: verify the raw body.",
            )
        )
    data = sent_body if sent_body is not None else body
    matched = next(
        (
            label
            for label, s in known_secrets
            if (k := secret_key(s)[0]) is not None and (signed_by(k, data) or signed_by(k, body))
        ),
        None,
    )
    pasted_label = next((label for label, s in known_secrets if s.strip() == secret.strip()), None)
    if matched is not None and matched != pasted_label:
        findings.append(
            (
                "secret",
                f"Wrong secret: this request was signed with {matched} of the webhook, not the "
                "one pasted." + (f" The one pasted is {pasted_label}." if pasted_label else ""),
            )
        )
    elif known_secrets and matched is None and not any(k == "body" for k, _ in findings):
        findings.append(
            (
                "secret",
                "The signature matches none of this webhook's secrets, current or previous: "
                "the headers may come from another request.",
            )
        )
    elif not known_secrets:
        findings.append(
            (
                "secret",
                "The signature does not match this secret and body. If the secret was rotated, "
                "the previous one keeps signing for 24 hours; try it.",
            )
        )
    return Verdict(False, findings, diff)


# The environment variable every code sample reads the signing secret from.
SECRET_ENV = "KWIK_WEBHOOK_SECRET"


def code_samples(*, webhook_name: str, url: str) -> dict[str, str]:
    """Verification code for each language, with its Standard Webhooks library, filled with the webhook's details."""

    path = urlsplit(url).path or "/"
    env = SECRET_ENV
    return {
        "Python": f'''# pip install standardwebhooks
import os
from standardwebhooks.webhooks import Webhook

# {webhook_name}: {url}
verifier = Webhook(os.environ["{env}"])  # whsec_…

def handle(request):  # POST {path}
    # Raw bytes as received, before any JSON parsing; raises WebhookVerificationError if not signed by Kwik.
    event = verifier.verify(request.body, request.headers)
    return 204''',
        "Node": f'''// npm install standardwebhooks
import express from "express";
import {{ Webhook }} from "standardwebhooks";

// {webhook_name}: {url}
const wh = new Webhook(process.env.{env}.replace(/^whsec_/, ""));
const app = express();

app.post("{path}", express.raw({{ type: "application/json" }}), (req, res) => {{
  try {{
    const event = wh.verify(req.body, req.headers); // throws unless signed by Kwik
    res.sendStatus(204);
  }} catch (err) {{
    res.sendStatus(400);
  }}
}});''',
        "Go": f'''// go get github.com/standard-webhooks/standard-webhooks/libraries
package main

import (
	"io"
	"net/http"
	"os"
	"strings"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// {webhook_name}: {url}
func main() {{
	wh, err := standardwebhooks.NewWebhook(strings.TrimPrefix(os.Getenv("{env}"), "whsec_"))
	if err != nil {{
		panic(err)
	}}
	http.HandleFunc("{path}", func(w http.ResponseWriter, r *http.Request) {{
		body, _ := io.ReadAll(r.Body) // raw bytes, as received
		if err := wh.Verify(body, r.Header); err != nil {{
			w.WriteHeader(http.StatusBadRequest)
			return
		}}
		w.WriteHeader(http.StatusNoContent)
	}})
	http.ListenAndServe(":8080", nil)
}}''',
        "PHP": f'''<?php
// composer require standard-webhooks/standard-webhooks
require "vendor/autoload.php";

use StandardWebhooks\\Webhook;

// {webhook_name}: {url}  (POST {path})
$wh = new Webhook(getenv("{env}"));
$payload = file_get_contents("php://input"); // raw bytes, as received
$headers = [
    "webhook-id" => $_SERVER["HTTP_WEBHOOK_ID"] ?? "",
    "webhook-timestamp" => $_SERVER["HTTP_WEBHOOK_TIMESTAMP"] ?? "",
    "webhook-signature" => $_SERVER["HTTP_WEBHOOK_SIGNATURE"] ?? "",
];
try {{
    $event = $wh->verify($payload, $headers); // throws unless signed by Kwik
    http_response_code(204);
}} catch (Exception $e) {{
    http_response_code(400);
}}''',
    }
