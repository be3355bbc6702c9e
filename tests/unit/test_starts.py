"""Starting the console: when the frontend built before is served again, the respawn backoff, and a quiet log."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import re
import threading
import time
import types

from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from kwik_console.delivery import scheduler
from kwik_console.runtime import frontend_build, reflex_patches


@dataclasses.dataclass
class Config:
    frontend_port: int = 3000
    api_url: str = "http://localhost:3000"
    origins: set = dataclasses.field(default_factory=lambda: {"a", "b", "c"})
    _bookkeeping: bool = False


def project(tmp_path):
    root = tmp_path / "project"
    package = root / "kwik_console"
    (package / "ui").mkdir(parents=True)
    (package / "ui" / "page.py").write_text("TITLE = 'Webhooks'\n")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "page.cpython-311.pyc").write_bytes(b"compiled")
    (root / "rxconfig.py").write_text("config = 1\n")
    (root / "assets").mkdir()
    (root / "assets" / "favicon.ico").write_bytes(b"icon")
    return root, package


def built(web_dir, parts):
    (web_dir / "build" / "client").mkdir(parents=True)
    (web_dir / "build" / "client" / "index.html").write_text("<html>")
    (web_dir / "routes.json").write_text('["/"]')
    frontend_build.record(web_dir, parts)


ENV = {"PATH": "/nonexistent", "KWIK_MODE": "local", "HOME": "/root"}


def fingerprint(root, package, config=None, env=ENV):
    return frontend_build.fingerprint(root=root, package_dir=package, config=config or Config(), env=env)


def test_the_fingerprint_is_the_same_for_the_same_inputs_and_ignores_times_and_caches(tmp_path):
    root, package = project(tmp_path)
    first = fingerprint(root, package)
    (package / "ui" / "page.py").touch()  # a checkout changes times, not contents
    (package / "__pycache__" / "page.cpython-311.pyc").write_bytes(b"compiled again")
    assert fingerprint(root, package) == first
    # Sets come out in another order in another process; Reflex's private fields are bookkeeping.
    assert fingerprint(root, package, Config(origins={"c", "a", "b"}, _bookkeeping=True)) == first
    assert fingerprint(root, package, env={**ENV, "HOME": "/elsewhere"}) == first  # not a build setting


def test_each_input_of_the_build_changes_its_part(tmp_path):
    root, package = project(tmp_path)
    first = fingerprint(root, package)

    def changed(**kw):
        parts = fingerprint(root, package, **kw)
        return sorted(name for name in parts if parts[name] != first[name])

    (package / "ui" / "page.py").write_text("TITLE = 'Hooks'\n")
    assert changed() == ["app"]
    (package / "ui" / "page.py").write_text("TITLE = 'Webhooks'\n")
    (root / "assets" / "favicon.ico").write_bytes(b"another icon")
    assert changed() == ["app"]
    (root / "assets" / "favicon.ico").write_bytes(b"icon")
    assert changed() == []
    assert changed(config=Config(frontend_port=3001, api_url="http://localhost:3001")) == ["settings"]
    assert changed(env={**ENV, "KWIK_MODE": "hosted"}) == ["settings"]
    assert changed(env={**ENV, "VITE_MINIFY": "false"}) == ["settings"]


def test_a_build_is_served_again_only_while_nothing_it_was_built_from_changed(tmp_path):
    root, package = project(tmp_path)
    web_dir = root / ".web"
    parts = fingerprint(root, package)
    assert frontend_build.changed_parts(web_dir, parts) is None  # never built

    built(web_dir, parts)
    assert frontend_build.changed_parts(web_dir, parts) == []
    assert frontend_build.built_at(web_dir) is not None

    other_port = fingerprint(root, package, Config(frontend_port=4000))
    assert frontend_build.changed_parts(web_dir, other_port) == ["settings"]

    (web_dir / "routes.json").write_text('["/", "/new"]')  # something compiled into .web since the build
    assert frontend_build.changed_parts(web_dir, parts) == ["runtime"]
    (web_dir / "routes.json").write_text('["/"]')

    (web_dir / "build" / "client" / "index.html").unlink()  # the build is gone
    assert frontend_build.changed_parts(web_dir, parts) is None


def test_every_part_that_can_change_is_named_for_the_start_output():
    assert set(frontend_build.PART_CHANGED) == {"app", "packages", "toolchain", "settings", "runtime"}


def test_a_worker_that_dies_soon_after_it_started_waits_longer_each_time_up_to_a_bound():
    waits = [reflex_patches.respawn_wait(n) for n in range(0, 9)]
    assert waits[0] == 0  # after a long life: at once
    assert waits[1:6] == [1, 2, 4, 8, 16]
    assert waits[6:] == [reflex_patches.RESPAWN_MAX_WAIT] * 3


def test_apscheduler_keeps_a_skipped_look_out_of_the_log(caplog):
    assert scheduler.POLL_JOB  # the scheduler module sets APScheduler's log level when it is imported

    async def run() -> None:
        skipped, release = asyncio.Event(), asyncio.Event()
        loop = asyncio.get_running_loop()
        aps = AsyncIOScheduler(event_loop=loop, timezone=dt.UTC, job_defaults={"max_instances": 1})

        async def look():  # a look that runs longer than the interval, as on a slow database
            await release.wait()

        aps.add_listener(lambda _event: loop.call_soon_threadsafe(skipped.set), EVENT_JOB_MAX_INSTANCES)
        aps.add_job(look, IntervalTrigger(seconds=0.05))
        aps.start()
        try:
            await asyncio.wait_for(skipped.wait(), 30)
        finally:
            release.set()
            aps.shutdown(wait=False)

    with caplog.at_level(logging.DEBUG):
        asyncio.run(run())
    assert not [r for r in caplog.records if "maximum number of running instances" in r.getMessage()]


class FakeWorker:
    def __init__(self):
        self.birth = time.monotonic()


class FakeGranian:
    """What the serve loop uses of granian's Server, with workers that are only records."""

    respawn_failed_workers = True
    workers_lifetime = None
    workers_rss = None

    def __init__(self):
        self.main_loop_interrupt = threading.Event()
        self.interrupt_children: list[int] = []
        self.interrupt_signal = self.reload_signal = False
        self.wrks = [FakeWorker()]
        self.respawned = threading.Semaphore(0)
        self.respawns = 0
        self._metrics = types.SimpleNamespace(incr_respawn_err=lambda n: None)

    def _respawn_workers(self, workers, spawn_target, target_loader):
        for idx in workers:
            self.wrks[idx] = FakeWorker()
            self.respawns += 1
            self.respawned.release()

    def die(self, idx: int = 0) -> None:  # as granian's watcher thread reports a worker's exit
        self.interrupt_children.append(idx)
        self.main_loop_interrupt.set()

    def stop(self) -> None:  # as granian's SIGTERM handler
        self.interrupt_signal = True
        self.main_loop_interrupt.set()


def granian_loop(server: FakeGranian) -> threading.Thread:
    def not_granians_own(*args):
        raise AssertionError("granian's own loop ran")

    loop = reflex_patches._serve_loop_with_backoff(not_granians_own)
    thread = threading.Thread(target=loop, args=(server, None, None), daemon=True)
    thread.start()
    return thread


def test_a_worker_that_keeps_dying_is_started_again_each_time_after_a_longer_wait(monkeypatch, caplog):
    monkeypatch.setattr(reflex_patches, "RESPAWN_FIRST_WAIT", 0.01)
    server = FakeGranian()
    thread = granian_loop(server)
    with caplog.at_level(logging.WARNING, logger="_granian"):
        for _ in range(3):  # granian alone stopped the server at the second
            server.die()
            assert server.respawned.acquire(timeout=30)
        server.stop()
        thread.join(timeout=30)
    assert not thread.is_alive() and server.respawns == 3
    waits = [re.search(r"starting it again in ([\d.]+) s", r.getMessage()) for r in caplog.records]
    assert [float(w.group(1)) for w in waits if w] == [0.01, 0.02, 0.04]


def test_a_stop_during_the_wait_ends_the_loop_without_starting_the_worker(monkeypatch):
    monkeypatch.setattr(reflex_patches, "RESPAWN_FIRST_WAIT", 3600.0)
    server = FakeGranian()
    thread = granian_loop(server)
    server.die()
    server.stop()
    thread.join(timeout=30)
    assert not thread.is_alive() and server.respawns == 0


def test_a_worker_that_lived_a_minute_is_started_again_at_once(monkeypatch):
    monkeypatch.setattr(reflex_patches, "RESPAWN_FIRST_WAIT", 3600.0)
    server = FakeGranian()
    server.wrks[0].birth -= reflex_patches.RESPAWN_STABLE_AFTER
    thread = granian_loop(server)
    server.die()
    assert server.respawned.acquire(timeout=30)  # no hour's wait: it was not crash-looping
    server.stop()
    thread.join(timeout=30)
    assert server.respawns == 1
