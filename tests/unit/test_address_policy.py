"""The address policy (pure): which hosts and addresses a hosted console refuses, judged without a packet sent.

Host names here are only judged, never resolved.
"""

from __future__ import annotations

import ipaddress
import socket

import pytest

from kwik_console.core import network
from kwik_console.delivery.transport import (
    AddressNotAllowed,
    check_url_at_send,
    refusal_from_exception,
)

LOOPBACK = network.parse_allowed_networks("127.0.0.0/8")
REBIND_HOST = "hooks.test-rebind.invalid"  # .invalid never resolves in real DNS (RFC 6761)


# Every form in the issue, plus the ranges and embeddings the guard must know.
REFUSED_HOSTS = [
    # (host as written in the URL, the address the refusal names or None for a spelling/name refusal)
    ("169.254.169.254", "169.254.169.254"),  # cloud metadata
    ("10.0.0.1", "10.0.0.1"),
    ("172.16.5.4", "172.16.5.4"),
    ("192.168.1.1", "192.168.1.1"),
    ("127.0.0.1", "127.0.0.1"),
    ("0.0.0.0", "0.0.0.0"),
    ("100.64.0.1", "100.64.0.1"),  # CGNAT
    ("224.0.0.1", "224.0.0.1"),  # multicast
    ("239.255.255.250", "239.255.255.250"),
    ("240.0.0.1", "240.0.0.1"),  # reserved
    ("255.255.255.255", "255.255.255.255"),
    ("192.0.2.10", "192.0.2.10"),  # documentation
    ("198.18.0.1", "198.18.0.1"),  # benchmarking
    ("[::1]", "::1"),
    ("[::]", "::"),
    ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),  # IPv4-mapped
    ("[::ffff:169.254.169.254]", "::ffff:169.254.169.254"),
    ("[::ffff:7f00:1]", "::ffff:127.0.0.1"),
    ("[::127.0.0.1]", "::7f00:1"),  # IPv4-compatible (deprecated)
    ("[64:ff9b::10.0.0.1]", "64:ff9b::a00:1"),  # NAT64 well-known prefix
    ("[64:ff9b::127.0.0.1]", "64:ff9b::7f00:1"),
    ("[64:ff9b:1::1]", "64:ff9b:1::1"),  # NAT64 local-use prefix
    ("[2002:7f00:1::1]", "2002:7f00:1::1"),  # 6to4 of 127.0.0.1
    ("[2002:a9fe:a9fe::1]", "2002:a9fe:a9fe::1"),  # 6to4 of 169.254.169.254
    ("[2001:0:4136:e378:8000:63bf:80ff:fffe]", "2001:0:4136:e378:8000:63bf:80ff:fffe"),  # Teredo, client 127.0.0.1
    ("[fc00::1]", "fc00::1"),  # unique local
    ("[fd12:3456::1]", "fd12:3456::1"),
    ("[fe80::1]", "fe80::1"),  # link-local
    ("[fe80::1%25eth0]", "fe80::1"),
    ("[ff02::1]", "ff02::1"),  # multicast
    ("[2001:db8::1]", "2001:db8::1"),  # documentation
    ("[100::1]", "100::1"),  # discard-only
]

NUMERIC_SPELLINGS = [
    ("127.1", "127.0.0.1"),
    ("10.1", "10.0.0.1"),
    ("2130706433", "127.0.0.1"),  # decimal
    ("0x7f000001", "127.0.0.1"),  # hex
    ("0X7F.1", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),  # octal
    ("0251.0376.0251.0376", "169.254.169.254"),
    ("127.0.0.01", "127.0.0.1"),
    ("0xa9.254.169.254", "169.254.169.254"),
    ("127.0.0.1.", "127.0.0.1"),  # trailing dot, as browsers accept it
    ("1.2.65535", "1.2.255.255"),
    # An odd spelling is refused even for a public address: write it in full.
    ("1572395042", "93.184.216.34"),
]

# Written with characters that IDNA (and so httpx) folds into ASCII digits and dots.
UNICODE_SPELLINGS = [
    "127\u30020\u30020\u30021",
    "\uff11\uff12\uff17.0.0.1",
    "127\uff0e0\uff0e0\uff0e1",
    "127\uff610\uff610\uff611",
]

INTERNAL_NAMES = ["localhost", "LOCALHOST", "localhost.", "api.localhost", "printer.local", "metadata.google.internal"]

PUBLIC_HOSTS = [
    "93.184.216.34",
    "8.8.8.8",
    "[2606:2800:220:1::1]",
    "[::ffff:93.184.216.34]",  # mapped form of a public address: the same destination
    "[64:ff9b::93.184.216.34]",  # NAT64 of a public address
    "[2002:5db8:d822::1]",  # 6to4 of a public address
    "example.com",
    "hooks.example.com",
    "localhost.example.com",  # only the .localhost suffix is special
    "0x.example.com",
]


@pytest.mark.parametrize(("host", "address"), REFUSED_HOSTS)
def test_internal_address_is_refused_when_the_webhook_is_saved(host, address):
    assert network.host_refusal(host, ()) == (
        f"Webhook URL must not point to an internal address: address {address} is not allowed."
    )
    literal = host.strip("[]").replace("%25", "%")
    assert network.address_refusal(ipaddress.ip_address(literal), ()) == f"address {address} is not allowed"


@pytest.mark.parametrize(("host", "address"), NUMERIC_SPELLINGS)
def test_numeric_ipv4_spelling_is_read_like_inet_aton_and_refused(host, address):
    assert network.parse_ipv4_spelling(host) == ipaddress.IPv4Address(address)
    assert socket.inet_aton(host.rstrip(".")) == ipaddress.IPv4Address(address).packed
    assert network.host_refusal(host, ()) == (
        f"Webhook URL must not use a numeric IPv4 spelling such as {host.lower()}; "
        "write the address in full or use a host name."
    )
    # Even where the network is allowed: the spelling itself is refused.
    assert network.host_refusal(host, network.parse_allowed_networks("0.0.0.0/0")) is not None


@pytest.mark.parametrize("host", UNICODE_SPELLINGS)
def test_unicode_spelling_of_an_internal_address_is_refused(host):
    assert network.host_refusal(host, ()) == (
        "Webhook URL must not point to an internal address: address 127.0.0.1 is not allowed."
    )


@pytest.mark.parametrize("host", ["example.com", "256.1.1.1", "1.2.3.4.5", "08.1.1.1", "1..1", "", "0x1g"])
def test_non_ipv4_spelling_is_not_parsed_as_an_address(host):
    assert network.parse_ipv4_spelling(host) is None


@pytest.mark.parametrize("host", ["256.1.1.1", "1.2.3.4.5", "08.0.0.1", "example.0x10", "example.123"])
def test_host_ending_in_a_number_that_is_no_address_is_refused(host):
    assert network.host_refusal(host, ()) == "Webhook URL host is not a valid IP address or host name."


@pytest.mark.parametrize("host", INTERNAL_NAMES)
def test_internal_name_is_refused(host):
    name = host.lower().rstrip(".")
    assert network.host_refusal(host, ()) == (
        f"Webhook URL must not point to {name}: it names this machine or a private network."
    )
    assert network.host_refusal(host, network.parse_allowed_networks("0.0.0.0/0,::/0")) is not None


@pytest.mark.parametrize("host", PUBLIC_HOSTS)
def test_public_host_passes(host):
    assert network.host_refusal(host, ()) is None


@pytest.mark.parametrize(
    ("allowed", "host"),
    [
        ("127.0.0.0/8", "127.0.0.1"),
        ("127.0.0.0/8", "[::ffff:127.0.0.1]"),  # the mapped form is the same destination
        ("10.20.0.0/16", "10.20.3.4"),
        ("10.20.0.0/16, 192.168.7.7", "192.168.7.7"),
        ("fd00:1::/64", "[fd00:1::5]"),
        ("::1", "[::1]"),
    ],
)
def test_allowed_networks_are_exceptions(allowed, host):
    assert network.host_refusal(host, ()) is not None
    assert network.host_refusal(host, network.parse_allowed_networks(allowed)) is None


@pytest.mark.parametrize(
    ("allowed", "host"), [("10.20.0.0/16", "10.21.0.1"), ("127.0.0.0/8", "[::1]"), ("::1", "127.0.0.1")]
)
def test_allowed_networks_allow_nothing_else(allowed, host):
    assert network.host_refusal(host, network.parse_allowed_networks(allowed)) is not None


def test_allowed_networks_are_parsed():
    assert network.parse_allowed_networks("") == ()
    assert network.parse_allowed_networks(" 10.0.0.0/8 , fd00::/8,,") == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("fd00::/8"),
    )


@pytest.mark.parametrize("text", ["10.0.0.0/33", "10.0.0.1/8", "intranet", "10.0.0.0/8;192.168.0.0/16"])
def test_bad_allowed_networks_are_refused_with_a_clear_message(text):
    with pytest.raises(ValueError, match=r"KWIK_ALLOWED_NETWORKS must be comma-separated networks"):
        network.parse_allowed_networks(text)


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("https://169.254.169.254/latest/meta-data", "address 169.254.169.254 is not allowed"),
        ("https://[::ffff:127.0.0.1]/", "address ::ffff:127.0.0.1 is not allowed"),
        ("https://127.1/hooks", "host 127.1 is a numeric IPv4 spelling, which is not allowed"),
        ("https://localhost:8443/", "host localhost is not allowed"),
        ("https://hooks.example.com/", None),
        ("https://93.184.216.34/", None),
    ],
)
def test_url_is_checked_again_at_send(url, error):
    if error is None:
        check_url_at_send(url, ())
        return
    with pytest.raises(AddressNotAllowed) as caught:
        check_url_at_send(url, ())
    assert str(caught.value) == error
    assert refusal_from_exception(caught.value) == error


# ---- connect time ---------------------------------------------------------
