"""kwik_console/reflex_patches.py against the real Redis and the installed Reflex and granian.

The reconnect patch: a tab whose worker was killed keeps its token when it reconnects to another worker,
while a real duplicate tab (its twin's worker alive) still gets a new one. "Worker A" is a separate
process holding a Reflex RedisTokenManager, so it can be SIGKILLed as granian's worker would be.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import signal
import subprocess
import sys
import time
import tomllib

import pytest
import redis
import redis.asyncio as aioredis

from kwik_console.runtime import reflex_patches
from tests.conftest import ROOT

REDIS_DB = 11  # a database of its own on the machine's Redis, emptied first
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"

WORKER_A = """
import asyncio, sys
import redis.asyncio as aioredis
from kwik_console.runtime import reflex_patches
reflex_patches.apply()
from reflex.utils.token_manager import RedisTokenManager

async def main():
    manager = RedisTokenManager(aioredis.Redis.from_url(sys.argv[1]))
    assert await manager.link_token_to_sid(sys.argv[2], "sid-on-a") is None
    print(manager.instance_id, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.fixture
def flushed():
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis.ConnectionError:
        pytest.fail("Redis is not reachable on 127.0.0.1:6379; .ci/run starts it")
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def worker_a():
    """Start worker A holding `token`'s socket; yields (process, its instance id)."""
    started: list[subprocess.Popen] = []

    def start(token: str) -> tuple[subprocess.Popen, str]:
        process = subprocess.Popen(
            [sys.executable, "-c", WORKER_A, REDIS_URL, token], cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        started.append(process)
        instance_id = process.stdout.readline().strip()
        assert instance_id, "worker A did not link the token"
        return process, instance_id

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def record(client: redis.Redis, token: str):
    raw = client.get(f"token_manager_socket_record_{token}")
    return pickle.loads(raw) if raw else None


def new_manager():
    from reflex.utils.token_manager import RedisTokenManager

    reflex_patches.apply()
    return RedisTokenManager(aioredis.Redis.from_url(REDIS_URL))


def test_the_installed_versions_are_the_pinned_ones_the_patches_were_written_for():
    reflex_patches.check_versions()  # the installed ones
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"reflex[db]=={reflex_patches.REFLEX_VERSION}" in project
    assert f"granian=={reflex_patches.GRANIAN_VERSION}" in project
    constraints = (ROOT / ".ci" / "constraints.txt").read_text().split()
    assert f"reflex=={reflex_patches.REFLEX_VERSION}" in constraints
    assert f"granian=={reflex_patches.GRANIAN_VERSION}" in constraints


def test_another_reflex_or_granian_is_refused_with_the_reason(monkeypatch):
    with pytest.raises(reflex_patches.UnsupportedVersion, match=r"reflex 0\.10\.2 \(written for 0\.10\.1\)"):
        reflex_patches.check_versions({"reflex": "0.10.2", "granian": reflex_patches.GRANIAN_VERSION})
    with pytest.raises(reflex_patches.UnsupportedVersion, match=r"granian 2\.9\.0"):
        reflex_patches.check_versions({"reflex": reflex_patches.REFLEX_VERSION, "granian": "2.9.0"})
    # apply() checks before it patches anything.
    monkeypatch.setattr(reflex_patches, "_applied", False)
    monkeypatch.setattr(reflex_patches.metadata, "version", lambda name: "0.11.0")
    with pytest.raises(reflex_patches.UnsupportedVersion, match="reflex_patches.py"):
        reflex_patches.apply()


def test_a_tab_whose_worker_was_killed_keeps_its_token(flushed, worker_a):
    token = "tab-token-1"
    process, dead_instance = worker_a(token)
    assert record(flushed, token).instance_id == dead_instance
    alive = json.loads(flushed.get(reflex_patches.alive_key(dead_instance)))
    assert alive["pid"] == process.pid  # the key names the worker's process

    process.send_signal(signal.SIGKILL)  # no shutdown: the record stays behind, as in the issue
    process.wait()

    async def reconnect():
        manager = new_manager()
        try:
            # Redis notices the closed connection at once; the key alone would stay for ALIVE_TTL.
            assert not await reflex_patches.instance_alive(manager.redis, dead_instance)
            new_token = await manager.link_token_to_sid(token, "sid-on-b")
            return new_token, manager.instance_id
        finally:
            await manager.disconnect_all()  # as Reflex's lifespan does when a worker stops
            await manager.close()

    new_token, instance_b = asyncio.run(reconnect())
    assert new_token is None  # not taken for a duplicated tab: same token, so the same state
    # B stopping as a worker does hands the socket back and drops B's alive key.
    assert record(flushed, token) is None
    assert not flushed.exists(reflex_patches.alive_key(instance_b))


def test_the_record_now_names_the_worker_the_tab_reconnected_to(flushed, worker_a):
    token = "tab-token-2"
    process, _ = worker_a(token)
    process.kill()
    process.wait()

    async def reconnect():
        manager = new_manager()
        try:
            assert await manager.link_token_to_sid(token, "sid-on-b") is None
            return (
                manager.instance_id,
                record(flushed, token),
                await reflex_patches.instance_alive(manager.redis, manager.instance_id),
            )
        finally:
            await manager.close()

    instance_b, socket_record, b_alive = asyncio.run(reconnect())
    assert (socket_record.instance_id, socket_record.sid) == (instance_b, "sid-on-b")
    assert b_alive


def test_a_duplicated_tab_still_gets_a_new_token_while_its_twins_worker_lives(flushed, worker_a):
    token = "tab-token-3"
    process, instance_a = worker_a(token)

    async def duplicate():
        manager = new_manager()
        try:
            assert await reflex_patches.instance_alive(manager.redis, instance_a)
            return await manager.link_token_to_sid(token, "sid-of-the-twin")
        finally:
            await manager.close()

    new_token = asyncio.run(duplicate())
    assert new_token and new_token != token  # Reflex's duplicate-tab rule, unchanged
    assert record(flushed, token).instance_id == instance_a  # the original tab keeps its socket
    assert process.poll() is None


def test_a_worker_counts_as_alive_only_with_both_its_key_and_its_subscription(flushed):
    async def check():
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            instance = "some-worker"
            assert not await reflex_patches.instance_alive(client, instance)
            await client.set(reflex_patches.alive_key(instance), "{}", ex=30)
            assert not await reflex_patches.instance_alive(client, instance)  # its process is gone
            async with client.pubsub() as pubsub:
                await pubsub.subscribe(reflex_patches.alive_channel(instance))
                await pubsub.get_message(timeout=5)
                assert await reflex_patches.instance_alive(client, instance)
                await client.delete(reflex_patches.alive_key(instance))
                assert not await reflex_patches.instance_alive(client, instance)  # expired: a hung host
        finally:
            await client.aclose()

    asyncio.run(check())


def test_the_alive_key_expires_unless_refreshed(flushed):
    async def check():
        manager = new_manager()
        try:
            await reflex_patches.ensure_advertised(manager)
            ttl = await manager.redis.ttl(reflex_patches.alive_key(manager.instance_id))
            assert 0 < ttl <= reflex_patches.ALIVE_TTL
            # Refreshed: the key's time to live goes up again (left alone, it only goes down).
            # Watched rather than slept on, as a loaded CI machine runs the refresh late.
            key, lowest = reflex_patches.alive_key(manager.instance_id), ttl
            deadline = time.monotonic() + 4 * reflex_patches.ALIVE_REFRESH
            while (now := await manager.redis.ttl(key)) <= lowest and time.monotonic() < deadline:
                lowest = now
                await asyncio.sleep(0.1)
            assert now > lowest
            # Reflex gives each worker a fresh id when it starts: the advertised id follows.
            old = manager.instance_id
            manager._reset_instance_id()
            await reflex_patches.ensure_advertised(manager)
            assert await reflex_patches.instance_alive(manager.redis, manager.instance_id)
            deadline = time.monotonic() + 5
            while await reflex_patches.instance_alive(manager.redis, old) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert not await reflex_patches.instance_alive(manager.redis, old)
        finally:
            await manager.close()

    asyncio.run(check())


def test_granian_servers_respawn_failed_workers_once_patched(monkeypatch):
    from granian import server

    monkeypatch.setattr(server.Server, "__init__", server.Server.__init__)  # undone after the test
    before = server.Server(target="kwik_console.kwik_console:app", workers=2, log_enabled=False)
    assert before.respawn_failed_workers is False  # what Reflex's prod run gets without the patch
    reflex_patches._patch_granian_respawn()
    after = server.Server(target="kwik_console.kwik_console:app", workers=2, log_enabled=False)
    assert after.respawn_failed_workers is True
    reloading = server.Server(target="kwik_console.kwik_console:app", reload=True, log_enabled=False)
    assert reloading.respawn_failed_workers is False  # dev mode reloads; it is left alone


def test_kwik_console_run_turns_respawn_on_in_production(monkeypatch, tmp_path):
    from kwik_console.runtime import launch

    seen = {}
    monkeypatch.setattr(launch, "serve", lambda command, *, env, grace: seen.update(env=env) or 0)
    monkeypatch.setattr(launch, "ensure_bun", lambda **kw: None)
    monkeypatch.setenv("KWIK_DATABASE_URL", f"sqlite:///{tmp_path / 'kwik.db'}")
    monkeypatch.setenv("KWIK_MODE", "local")
    for name in ("KWIK_REDIS_URL", "KWIK_RESPAWN_FAILED_WORKERS", "GRANIAN_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    from kwik_console.core import settings

    settings.get_settings.cache_clear()
    try:
        launch.run_console(port=3000)
        assert seen["env"]["KWIK_RESPAWN_FAILED_WORKERS"] == "1"
        assert seen["env"]["GRANIAN_WORKERS"] == "1"
        launch.run_console(dev=True, port=3000)
        assert "KWIK_RESPAWN_FAILED_WORKERS" not in seen["env"]  # dev mode reloads on changes instead
    finally:
        settings.get_settings.cache_clear()
        from kwik_console.store import db

        db._engine_for.cache_clear()
