"""Browser tests: the console in production mode, driven by Debian's Chromium through Playwright."""

from __future__ import annotations

import pytest
from playwright.sync_api import sync_playwright

from tests.e2e.server import CHROMIUM, CHROMIUM_ARGS, ConsoleServer
from tests.receiver import Receiver


@pytest.fixture(scope="module")
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def console_db(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('console') / 'kwik.db'}"


@pytest.fixture(scope="module")
def console(console_db, tmp_path_factory):
    # A short schedule, so the test can watch the Retry Counter climb.
    server = ConsoleServer(
        console_db, tmp_path_factory.mktemp("logs") / "console.log", KWIK_RETRY_SCHEDULE="1,1,600"
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, console):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.set_default_timeout(15_000)
    yield pg
    context.close()
    assert not errors, errors
