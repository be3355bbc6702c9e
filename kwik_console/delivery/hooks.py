"""What the app hands the delivery engine at start: the work of the layers above it, as callbacks.

The engine records attempts and runs the scheduler's looks; what else moves on
with them (recoveries' counts, webhooks' health, notices, the background jobs)
belongs to operations, which imports the engine and not the other way round.
`kwik_console.runtime.wiring.install()` builds the hooks from operations.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from sqlalchemy import Engine

from kwik_console.core.settings import Settings

# (connection, recorded, *, max_attempts): `recorded` is (webhook_id, recovery_id, outcome, attempted_at) for each
# attempt just stored; called in the recording's own transaction.
AfterRecord = Callable[..., None]


@dataclasses.dataclass(frozen=True)
class Job:
    """A background job the scheduler runs in every process that delivers, on a thread of its own."""

    id: str
    run: Callable[[Engine, str, Settings], object]  # (engine, this process's owner name, settings)
    every_seconds: float
    first_after_seconds: float = 0.0  # after the scheduler starts


@dataclasses.dataclass(frozen=True)
class Hooks:
    after_record: AfterRecord | None = None
    jobs: Sequence[Job] = ()


# A module-level value rather than a parameter passed down: the engine starts in several places (the console's
# lifespan, `kwik-console worker`, deliver_now's short-lived dispatcher), and each process installs once.
_installed = Hooks()


def install(hooks: Hooks) -> None:
    global _installed
    _installed = hooks


def installed() -> Hooks:
    """The hooks installed in this process: none until the app installs them."""
    return _installed
