"""Whose address a request is: X-Forwarded-For only through trusted proxies, as uvicorn reads it."""

from __future__ import annotations

import pytest

from kwik_console.core.client_address import forwarded_client
from kwik_console.core.network import parse_trusted_proxies
from kwik_console.core.settings import SettingsError, from_env

PROXIES = parse_trusted_proxies("127.0.0.1, 10.0.0.0/8, fd00::/8")


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        # No header, or a peer that is not a trusted proxy: the peer, whatever the header says.
        ("127.0.0.1", "", "127.0.0.1"),
        ("203.0.113.7", "198.51.100.1", "203.0.113.7"),
        ("192.0.2.50", "10.1.1.1", "192.0.2.50"),
        # Through the proxy: the address it appended.
        ("127.0.0.1", "203.0.113.7", "203.0.113.7"),
        ("127.0.0.1", "203.0.113.7:51234", "203.0.113.7"),
        ("::ffff:127.0.0.1", "2001:db8::7", "2001:db8::7"),
        ("127.0.0.1", "[2001:db8::7]:443", "2001:db8::7"),
        # A client forging the header: what it wrote is left of the address the proxy appended.
        ("127.0.0.1", "198.51.100.1, 203.0.113.7", "203.0.113.7"),
        ("127.0.0.1", "10.0.0.9, 203.0.113.7", "203.0.113.7"),
        # A chain of trusted proxies: the right-most address that is not one of them.
        ("127.0.0.1", "198.51.100.1, 203.0.113.7, 10.0.0.9, fd00::3", "203.0.113.7"),
        # Every hop trusted: the left-most.
        ("127.0.0.1", "10.0.0.8, 10.0.0.9", "10.0.0.8"),
        # A hop that is no address at all: the last one the chain vouches for.
        ("127.0.0.1", "unknown", "127.0.0.1"),
        ("127.0.0.1", "203.0.113.7, unknown, 10.0.0.9", "10.0.0.9"),
        # Lines of the header joined.
        ("10.0.0.2", "198.51.100.1,203.0.113.7", "203.0.113.7"),
        ("testclient", "203.0.113.7", "testclient"),
    ],
)
def test_the_client_behind_trusted_proxies(peer, forwarded_for, client):
    assert forwarded_client(peer, forwarded_for, PROXIES) == client


def test_without_trusted_proxies_the_header_is_ignored():
    assert forwarded_client("127.0.0.1", "203.0.113.7", ()) == "127.0.0.1"


@pytest.mark.parametrize("text", ["proxy.internal", "10.0.0.1/8", "300.1.1.1", "127.0.0.1 10.0.0.1", "*"])
def test_a_bad_setting_stops_the_start_with_its_name(text):
    with pytest.raises(SettingsError, match="KWIK_TRUSTED_PROXIES"):
        from_env({"KWIK_TRUSTED_PROXIES": text})


def test_the_setting_takes_addresses_and_networks():
    settings = from_env({"KWIK_TRUSTED_PROXIES": "127.0.0.1, ::1,10.0.0.0/8"})
    assert [str(n) for n in settings.trusted_proxies] == ["127.0.0.1/32", "::1/128", "10.0.0.0/8"]
    assert from_env({}).trusted_proxies == ()
