"""Every change Kwik makes to Reflex (and the granian server it runs), in one place.

Written for reflex 0.10.1 and granian 2.8.9 (both pinned in pyproject.toml); `apply()`
refuses any other version with an error naming this file, so an upgrade has to come
here first and re-run tests/test_reflex_patches.py and tests/e2e/test_reconnect.py.

1. Respawn (granian). `reflex run --env prod` builds granian's `Server` itself and never
   passes `respawn_failed_workers`, so one dead worker stopped the whole console. When
   `kwik-console run` sets KWIK_RESPAWN_FAILED_WORKERS=1, every granian Server built
   afterwards in that process respawns a worker that dies. This module is imported by
   the app module, which Reflex's prod supervisor imports (to compile, and to preload
   it for the fork) before it builds the Server. A respawned worker is a new process
   that runs the app's lifespan again: the delivery scheduler starts in it.

2. Reconnect (reflex.utils.token_manager.RedisTokenManager). Each worker records in
   Redis which worker holds each tab's socket (`token_manager_socket_record_<token>`,
   kept for `redis_token_expiration`, an hour). A killed worker never deletes its
   records, so the tab's reconnect to another worker found the record and was taken
   for a duplicated tab: it got a new token and an empty state. Now each worker
   advertises that it is alive, with a key that expires within ALIVE_TTL seconds
   unless refreshed and a pub/sub subscription that Redis drops the moment the
   process dies. A record whose worker is not alive is released on reconnect, and
   the tab keeps its token and the state Redis holds for it. A real duplicate tab
   (its twin's worker is alive) still gets a new token, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import pickle
import socket
from importlib import metadata

from reflex.utils.tasks import ensure_task

log = logging.getLogger(__name__)

REFLEX_VERSION = "0.10.1"
GRANIAN_VERSION = "2.8.9"

ALIVE_PREFIX = "kwik_reflex_instance_alive_"  # + instance id: {"pid", "host"}, expires unless refreshed
ALIVE_TTL = 15  # seconds: the longest a worker that vanished without closing its Redis connection counts as alive
ALIVE_REFRESH = 3.0  # seconds between refreshes of the key
READY_WAIT = 5.0  # seconds a first connect waits for its worker to be advertised alive

RESPAWN_ENV = "KWIK_RESPAWN_FAILED_WORKERS"

# Delete the record only if it is still the stale one read (another worker may have claimed the token since).
_DELETE_IF_UNCHANGED = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_applied = False


class UnsupportedVersion(RuntimeError):
    pass


def check_versions(installed: dict[str, str] | None = None) -> None:
    """Refuse to patch anything but the versions this module was written and tested for."""
    wanted = {"reflex": REFLEX_VERSION, "granian": GRANIAN_VERSION}
    installed = installed if installed is not None else {name: metadata.version(name) for name in wanted}
    wrong = [
        f"{name} {installed.get(name)} (written for {version})"
        for name, version in wanted.items()
        if installed.get(name) != version
    ]
    if wrong:
        raise UnsupportedVersion(
            "kwik_console/reflex_patches.py patches Reflex internals and refuses to run on "
            + ", ".join(wrong)
            + ". Pin the versions it names in pyproject.toml, or update the patches "
            "and re-run tests/test_reflex_patches.py and tests/e2e/test_reconnect.py."
        )


def apply() -> None:
    """Apply the patches once per process (the app module calls this)."""
    global _applied
    if _applied:
        return
    check_versions()
    _patch_token_manager()
    _patch_newline_paths()
    if os.environ.get(RESPAWN_ENV) == "1":
        _patch_granian_respawn()
    _applied = True


# --- 1. granian: respawn failed workers ---------------------------------------------------------------


def _patch_granian_respawn() -> None:
    from granian import server  # 60 ms to load: only processes that serve pay for it

    cls = server.Server  # the class reflex.utils.exec.run_granian_backend_prod builds
    if getattr(cls.__init__, "_kwik_respawn", False):
        return
    original = cls.__init__

    @functools.wraps(original)
    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if not self.reload_on_changes:  # dev mode reloads instead
            self.respawn_failed_workers = True
            log.info("granian will respawn a console worker that dies")

    __init__._kwik_respawn = True
    cls.__init__ = __init__


# --- 2. reflex: a tab whose worker died keeps its token -----------------------------------------------


def alive_key(instance_id: str) -> str:
    return f"{ALIVE_PREFIX}{instance_id}"


def alive_channel(instance_id: str) -> str:
    return f"{ALIVE_PREFIX}{instance_id}"


async def instance_alive(redis, instance_id: str) -> bool:
    """Whether the worker `instance_id` is advertised alive: its key is fresh and its subscription is open."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.exists(alive_key(instance_id))
        pipe.pubsub_numsub(alive_channel(instance_id))
        exists, numsub = await pipe.execute()
    return bool(exists) and bool(numsub) and int(numsub[0][1]) > 0


async def _advertise(manager, instance_id: str, ready: asyncio.Event) -> None:
    """Keep `instance_id` alive in Redis for as long as this process runs (restarted on Redis errors)."""
    value = json.dumps({"pid": os.getpid(), "host": socket.gethostname()})
    async with manager.redis.pubsub() as pubsub:
        await pubsub.subscribe(alive_channel(instance_id))
        while await pubsub.get_message(timeout=READY_WAIT) is None:  # the subscription is confirmed
            pass
        while True:
            await manager.redis.set(alive_key(instance_id), value, ex=ALIVE_TTL)
            ready.set()
            # Reading the connection also notices when it breaks: the task then starts again.
            await pubsub.get_message(timeout=ALIVE_REFRESH)


async def ensure_advertised(manager) -> None:
    """Start advertising this worker (once per instance id) and wait until it is."""
    if getattr(manager, "_kwik_alive_for", None) != manager.instance_id:
        # First use in this process, or Reflex gave the worker a fresh id when it started.
        if (task := getattr(manager, "_kwik_alive_task", None)) is not None:
            task.cancel()
        manager._kwik_alive_task = None
        manager._kwik_alive_for = manager.instance_id
        manager._kwik_alive_ready = asyncio.Event()
    ensure_task(
        owner=manager,
        task_attribute="_kwik_alive_task",
        coro_function=_advertise,
        manager=manager,
        instance_id=manager.instance_id,
        ready=manager._kwik_alive_ready,
        suppress_exceptions=[Exception],
        exception_limit=10**9,
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(manager._kwik_alive_ready.wait(), READY_WAIT)


async def release_if_owner_gone(manager, token: str) -> bool:
    """Delete the socket record of `token` if the worker it names is no longer alive; True if deleted."""
    key = manager._get_redis_key(token)
    raw = await manager.redis.get(key)
    if not raw:
        return False
    owner = pickle.loads(raw).instance_id
    if owner == manager.instance_id or await instance_alive(manager.redis, owner):
        return False
    released = bool(await manager.redis.eval(_DELETE_IF_UNCHANGED, 1, key, raw))
    cached = manager.token_to_socket.get(token)
    if cached is not None and cached.instance_id == owner:  # a copy this worker fetched earlier
        manager.token_to_socket.pop(token, None)
        if manager.sid_to_token.get(cached.sid) == token:
            manager.sid_to_token.pop(cached.sid, None)
    if released:
        log.info(
            "a tab reconnected from a worker that is gone; it keeps its session token", extra={"dead_instance": owner}
        )
    return released


def _patch_token_manager() -> None:
    # 250 ms to load (Redis and Reflex's state managers): paid only where the patches are applied
    from reflex.utils.token_manager import RedisTokenManager

    if getattr(RedisTokenManager.link_token_to_sid, "_kwik_patched", False):
        return
    original_link = RedisTokenManager.link_token_to_sid
    original_close = RedisTokenManager.close

    @functools.wraps(original_link)
    async def link_token_to_sid(self, token: str, sid: str) -> str | None:
        record = self.token_to_socket.get(token)
        if record is None or record.sid != sid:  # not Reflex's same-socket fast path
            try:
                await ensure_advertised(self)  # before this worker's name goes on any record
                await release_if_owner_gone(self, token)
            except Exception as e:  # Redis trouble: Reflex's own handling follows
                log.warning("could not check the worker of a reconnecting tab: %s", e)
        return await original_link(self, token, sid)

    @functools.wraps(original_close)
    async def close(self) -> None:
        task = getattr(self, "_kwik_alive_task", None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._kwik_alive_task = None
        if getattr(self, "_kwik_alive_for", None):
            with contextlib.suppress(Exception):
                await self.redis.delete(alive_key(self._kwik_alive_for))
        await original_close(self)

    link_token_to_sid._kwik_patched = True
    RedisTokenManager.link_token_to_sid = link_token_to_sid
    RedisTokenManager.close = close


# --- 3. reflex: a path with a newline reaches Kwik's apps -------------------------------------------------
# Reflex mounts every app at "" on Starlette, whose pattern (".*") does not match a newline: a path with one
# inside ("/api/v1/webhooks/1%0A/pause") got Starlette's plain-text 404 before any of Kwik's apps saw it, not
# the API's problem. The top app now sees the newline percent-escaped, a path no route takes, and Kwik's apps
# answer it as any other unknown path.


def newline_safe(app):
    """`app` (ASGI), seeing each newline of a request's path as %0A."""

    async def safe(scope, receive, send):
        if scope["type"] in ("http", "websocket") and "\n" in scope.get("path", ""):
            scope = dict(scope, path=scope["path"].replace("\n", "%0A"))
        await app(scope, receive, send)

    return safe


def _patch_newline_paths() -> None:
    from reflex.app import App  # seconds to load: only the app module, which builds one, pays for it

    if getattr(App.__call__, "_kwik_newline_safe", False):
        return
    original = App.__call__

    @functools.wraps(original)
    def __call__(self):
        return newline_safe(original(self))

    __call__._kwik_newline_safe = True
    App.__call__ = __call__
