import base64
import datetime as dt
import hashlib
import hmac
import sys
import threading
import time

import pytest
from standardwebhooks.webhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from kwik_console.webhooks.service import new_secret
from kwik_console.webhooks.signing import active_secrets, sign, signature_headers


def test_standard_webhooks_published_test_vector():
    # From the Standard Webhooks specification.
    assert (
        sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_headers_verify_with_the_standardwebhooks_library():
    secret = new_secret()
    body = b'{"id":"evt_1","type":"payment.created"}'
    now = int(dt.datetime.now(dt.UTC).timestamp())
    headers = signature_headers([secret], "evt_1", now, body)
    assert Verifier(secret).verify(body, headers) == {"id": "evt_1", "type": "payment.created"}
    with pytest.raises(WebhookVerificationError):
        Verifier(secret).verify(body + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Verifier(new_secret()).verify(body, headers)


def test_during_rotation_both_secrets_sign():
    old, new = new_secret(), new_secret()
    now = dt.datetime.now(dt.UTC)
    keys = active_secrets(new, [(old, now + dt.timedelta(hours=1))], now)
    assert keys == [new, old]
    body = b"{}"
    headers = signature_headers(keys, "evt_2", int(now.timestamp()), body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Verifier(old).verify(body, headers)  # a receiver still on the old secret
    Verifier(new).verify(body, headers)  # and one that has switched


def test_every_secret_whose_overlap_lasts_signs_newest_first():
    first, second, current = new_secret(), new_secret(), new_secret()
    now = dt.datetime.now(dt.UTC)
    previous = [(first, now + dt.timedelta(hours=2)), (second, now + dt.timedelta(hours=23))]
    keys = active_secrets(current, previous, now)
    assert keys == [current, second, first]
    body = b'{"id":"evt_3"}'
    headers = signature_headers(keys, "evt_3", int(now.timestamp()), body)
    for secret in (first, second, current):
        assert Verifier(secret).verify(body, headers) == {"id": "evt_3"}


def test_previous_secret_stops_signing_after_the_overlap():
    now = dt.datetime.now(dt.UTC)
    assert active_secrets("whsec_new", [("whsec_old", now - dt.timedelta(seconds=1))], now) == ["whsec_new"]
    assert active_secrets("whsec_new", [("whsec_old", now)], now) == ["whsec_new"]  # the overlap ends at expires_at
    assert active_secrets("whsec_new", [], now) == ["whsec_new"]
    later = [("whsec_a", now - dt.timedelta(hours=1)), ("whsec_b", now + dt.timedelta(hours=1))]
    assert active_secrets("whsec_new", later, now) == ["whsec_new", "whsec_b"]


def test_new_secret_is_32_random_bytes():
    import base64

    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert secret != new_secret()


@pytest.mark.parametrize("size", [0, 1, 2046, 2047, 2048, 4095, 100_000])
def test_a_body_fed_in_pieces_signs_as_the_one_shot_hmac(size):
    secret = new_secret()
    body = bytes(range(256)) * (size // 256) + bytes(size % 256)
    mac = hmac.digest(base64.b64decode(secret.removeprefix("whsec_")), b"evt_1.1614265330." + body, hashlib.sha256)
    assert sign(secret, "evt_1", 1614265330, body) == "v1," + base64.b64encode(mac).decode()
    assert sign(secret, "evt_1", 1614265330, body) == sign(secret, "evt_1", 1614265330, body)  # the kept HMAC unchanged


def test_signing_never_lets_go_of_the_interpreter_lock():
    # Another thread counts each time it gets the lock. While this one signs and never lets go, it cannot count.
    # hmac.digest, and hashing 2,048 bytes or more at once, let go (the dispatcher's loop then waits for them).
    counted, stop = [0], threading.Event()

    def count():
        while not stop.is_set():
            counted[0] += 1
            time.sleep(0)  # lets go at once: only this test's thread's let-gos give it the lock again

    interval = sys.getswitchinterval()
    sys.setswitchinterval(100)  # no forced hand-over while signing
    counter = threading.Thread(target=count)
    try:
        counter.start()
        while counted[0] < 3:
            time.sleep(0)
        secret, big = new_secret(), b"x" * 50_000
        before = counted[0]
        for n in range(20):
            sign(secret, f"evt_{n}", 1614265330, big)
        assert counted[0] == before
        # The check can fail: the one-shot HMAC lets the counter in.
        key = base64.b64decode(secret.removeprefix("whsec_"))
        for _ in range(20):
            hmac.digest(key, big, hashlib.sha256)
        assert counted[0] > before
    finally:
        stop.set()
        sys.setswitchinterval(interval)
        counter.join()
