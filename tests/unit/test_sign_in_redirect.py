"""After signing in, the browser goes only to a path on this console (no open redirect)."""

from __future__ import annotations

import pytest

from kwik_console.team.sessions import safe_next


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "webhooks",
        "//evil.example/phish",
        "/\\evil.example",
        "\\\\evil.example",
        "https://evil.example/",
        "/\t/evil.example/phish",
        "/\r\n/evil.example",
        "/\n/evil.example",
        "/%09/x\x00",
        "/\x7f/evil.example",
        "/\u2028/evil.example",
        "javascript:alert(1)",
        "/ /\t/evil.example",
        "///evil.example",
        "/\\/evil.example",
        "http:/evil.example",
        "https:evil.example",
        # Percent-encoded, for anything that decodes the value once more on its way to the browser.
        "/%09/evil.example/phish",
        "/%0d%0a/evil.example",
        "/%0A/evil.example",
        "/%2F/evil.example",
        "/%2f%2fevil.example",
        "/%5Cevil.example",
        "/%5c%5cevil.example",
        "/%00",
    ],
)
def test_anything_but_a_path_here_goes_to_the_list(value):
    assert safe_next(value) == "/"


@pytest.mark.parametrize(
    "value", ["/", "/webhooks", "/webhooks/12/events?status=failure", "/members#top", "/webhooks/%2F%2Fevil.example"]
)
def test_a_path_on_this_console_is_kept(value):
    assert safe_next(value) == value
