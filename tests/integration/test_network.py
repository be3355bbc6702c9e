"""The one loopback rule (core/network.is_loopback) and the three places that ask it.

http:// webhook URLs in local mode, API requests without a token in local mode and
/metrics without a token all mean the same thing by "this machine".
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from starlette.requests import Request

from kwik_console.api import auth
from kwik_console.api.problems import ApiProblem
from kwik_console.core.errors import InvalidInput
from kwik_console.core.network import is_loopback
from kwik_console.web import probes
from kwik_console.webhooks import rules
from tests.conftest import configure

LOOPBACK = [
    "localhost",
    "LOCALHOST",
    "127.0.0.1",
    "127.0.0.2",
    "127.9.9.9",
    "127.255.255.255",
    "::1",
    "[::1]",
    "0:0:0:0:0:0:0:1",
    "::1%lo",
    "::ffff:127.0.0.1",
    "[::ffff:127.0.0.1]",
    "::ffff:7f00:5",  # an IPv4 peer on a dual-stack socket
]
NOT_LOOPBACK = [
    None,
    "",
    "localhost.",
    "localhost:3000",
    "[localhost]",
    "sub.localhost",  # the rule is the name itself; hosted mode refuses these names anyway
    "127.1",
    "2130706433",
    "0x7f000001",
    "0177.0.0.1",  # inet_aton spellings: not an address as written
    "127.evil.example",
    "127.0.0.1.nip.io",
    "rebound.evil.example",  # names: DNS may say anything
    "[127.0.0.1]",
    "[::1",
    "::1]",
    "::",
    "::2",
    "0.0.0.0",
    "128.0.0.1",
    "10.0.0.1",
    "203.0.113.9",
    "::ffff:10.0.0.1",
    "::7f00:1",
    "64:ff9b::7f00:1",  # IPv4-compatible and NAT64 forms reach elsewhere
]


@pytest.mark.parametrize("host", LOOPBACK)
def test_loopback(host):
    assert is_loopback(host)


@pytest.mark.parametrize("host", NOT_LOOPBACK)
def test_not_loopback(host):
    assert not is_loopback(host)


# ---------------------------------------------------------------- the callers give the rule's answer

URL_HOSTS = [
    "localhost",
    "127.0.0.1",
    "127.9.9.9",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "example.com",
    "10.0.0.1",
    "[::2]",
    "127.1",
    "localhost.",
    "127.evil.example",
]


@pytest.mark.parametrize("host", URL_HOSTS)
def test_http_webhook_urls_in_local_mode(host):
    url = f"http://{host}:8080/hook"
    if is_loopback(host):
        assert rules.validate_url(url, local_mode=True) == url
    else:
        with pytest.raises(InvalidInput) as refused:
            rules.validate_url(url, local_mode=True)
        assert refused.value.errors == {
            "url": "Webhook URL must use https:// (http:// is allowed only for localhost when running locally)."
        }


def _request(address: str, host: str = "127.0.0.1:3000", path: str = "/metrics", route=None) -> Request:
    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": b"",
        "client": (address, 50123),
        "headers": [(b"host", host.encode())],
    }
    if route is not None:
        scope["route"] = route
    return Request(scope)


PEERS = ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1", "10.1.2.3", "::ffff:10.1.2.3", "203.0.113.9", ""]


@pytest.mark.parametrize("address", PEERS)
def test_metrics_from_this_host_by_peer_address(address):
    assert probes.direct_from_this_host(_request(address)) == is_loopback(address)


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "127.0.0.1",
        "127.0.0.5",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "127.evil.example",
        "rebound.evil.example",
        "10.0.0.1",
        "[::2]",
    ],
)
def test_metrics_from_this_host_by_host_header(host):
    name = host.strip("[]") if host.startswith("[") else host
    assert probes.direct_from_this_host(_request("127.0.0.1", f"{host}:3000")) == is_loopback(name)
    assert probes.direct_from_this_host(_request("127.0.0.1", host)) == is_loopback(name)


@pytest.mark.parametrize("address", PEERS)
def test_api_without_a_token_in_local_mode(address, monkeypatch, tmp_path):
    configure(monkeypatch, KWIK_DATABASE_URL=f"sqlite:///{tmp_path / 'kwik.db'}", KWIK_MODE="local")
    request = _request(address, path="/api/v1/webhooks", route=SimpleNamespace(path_format="/api/v1/webhooks"))
    if is_loopback(address):
        assert asyncio.run(auth.authorize(request)).owner == "local"
    else:
        with pytest.raises(ApiProblem) as refused:
            asyncio.run(auth.authorize(request))
        assert refused.value.status == 401
