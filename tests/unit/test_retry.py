import datetime as dt
import random

import pytest

from kwik_console.core.settings import DEFAULT_RETRY_SCHEDULE, SettingsError, from_env, parse_retry_schedule
from kwik_console.delivery import retry
from kwik_console.store.tables import DeliveryStatus

NOW = dt.datetime(2026, 11, 28, 15, 0, tzinfo=dt.UTC)


def decide(code, attempts, schedule=DEFAULT_RETRY_SCHEDULE, retry_after=None, seed=1):
    return retry.decide(
        http_code=code,
        attempts_made=attempts,
        schedule=schedule,
        now=NOW,
        retry_after_header=retry_after,
        rng=random.Random(seed),
    )


def test_default_schedule_is_eight_attempts_over_about_27_6_hours():
    assert len(DEFAULT_RETRY_SCHEDULE) + 1 == 8
    assert round(sum(DEFAULT_RETRY_SCHEDULE) / 3600, 1) == 27.6


@pytest.mark.parametrize("code", [200, 201, 204, 299])
def test_any_2xx_is_success(code):
    assert decide(code, 1) == (DeliveryStatus.SUCCESS, None)


@pytest.mark.parametrize("code", [None, 301, 302, 400, 404, 429, 500, 503])
def test_failures_retry_on_the_schedule_with_jitter(code):
    for attempts, base in enumerate(DEFAULT_RETRY_SCHEDULE, start=1):
        seen = set()
        for seed in range(50):
            status, when = decide(code, attempts, seed=seed)
            assert status == DeliveryStatus.RETRYING
            delay = (when - NOW).total_seconds()
            assert base * 0.8 <= delay <= base * 1.2
            seen.add(round(delay, 3))
        assert len(seen) > 10  # it really varies


def test_eighth_failure_exhausts_retries():
    assert decide(500, 8) == (DeliveryStatus.FAILURE, None)


def test_gone_stops_at_once():
    assert decide(410, 1) == (DeliveryStatus.FAILURE, None)


@pytest.mark.parametrize(
    ("code", "header", "attempts", "expected"),
    [
        (503, "120", 1, 10.0),  # clamped to 2x the 5 s delay
        (429, "7", 1, 7.0),  # within 1x..2x: honoured
        (503, "1", 2, 300.0),  # below the schedule: the schedule wins
        (503, "Sat, 28 Nov 2026 15:08:00 GMT", 2, 480.0),  # an HTTP date
        (503, "7.5", 1, 7.5),  # fractional delta-seconds
    ],
)
def test_retry_after_is_honoured_within_1x_to_2x(code, header, attempts, expected):
    status, when = decide(code, attempts, retry_after=header)
    assert status == DeliveryStatus.RETRYING
    # Never sooner than asked (within the clamp), jittered upwards by at most 20 %.
    assert expected <= (when - NOW).total_seconds() <= expected * 1.2


def test_retry_after_keeps_the_jitter():
    rng = random.Random(7)
    delays = {
        retry.decide(
            http_code=503, attempts_made=1, schedule=DEFAULT_RETRY_SCHEDULE, now=NOW, retry_after_header="7", rng=rng
        )[1]
        for _ in range(1000)
    }
    # A thousand deliveries told the same Retry-After come back spread out, not at one instant.
    assert len(delays) > 900
    spread = (max(delays) - min(delays)).total_seconds()
    assert spread > 7 * 0.15


@pytest.mark.parametrize("header", ["-1", "nan", "inf", ""])
def test_retry_after_nonsense_is_ignored(header):
    assert retry.parse_retry_after(header, NOW) is None


def test_retry_after_only_counts_on_429_and_503():
    _, when = decide(500, 1, retry_after="9")
    assert 4 <= (when - NOW).total_seconds() <= 6


def test_unreadable_retry_after_falls_back_to_the_schedule():
    assert retry.parse_retry_after("soon", NOW) is None
    _, when = decide(503, 1, retry_after="soon")
    assert 4 <= (when - NOW).total_seconds() <= 6


def test_schedule_setting():
    assert parse_retry_schedule("1, 2.5,3") == (1.0, 2.5, 3.0)
    assert from_env({"KWIK_RETRY_SCHEDULE": "2,4"}).retry_schedule == (2.0, 4.0)
    assert from_env({}).retry_schedule == DEFAULT_RETRY_SCHEDULE
    for bad in ("a,b", "5,-1", " , "):
        with pytest.raises(SettingsError, match="KWIK_RETRY_SCHEDULE"):
            from_env({"KWIK_RETRY_SCHEDULE": bad}) if bad.strip(" ,") else parse_retry_schedule(bad)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KWIK_MODE": "cloud"}, "KWIK_MODE"),
        ({"KWIK_ATTEMPT_TIMEOUT": "fast"}, "KWIK_ATTEMPT_TIMEOUT must be a number"),
        ({"KWIK_MAX_IN_FLIGHT": "0"}, "KWIK_MAX_IN_FLIGHT must be above 0"),
        (
            {"KWIK_ATTEMPT_TIMEOUT": "30", "KWIK_LEASE_SECONDS": "20"},
            "KWIK_LEASE_SECONDS must be at least twice KWIK_ATTEMPT_TIMEOUT plus 1",
        ),
        # The case: accepted before, and one process then sent 10 requests for 8 events.
        (
            {"KWIK_ATTEMPT_TIMEOUT": "0.9", "KWIK_LEASE_SECONDS": "1.5"},
            "KWIK_LEASE_SECONDS must be at least twice KWIK_ATTEMPT_TIMEOUT plus 1",
        ),
    ],
)
def test_bad_settings_name_the_variable(env, message):
    with pytest.raises(SettingsError, match=message):
        from_env(env)
