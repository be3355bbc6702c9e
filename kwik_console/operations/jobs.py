"""The background jobs of operations, run by every process that delivers (runtime/wiring.py hands them to
delivery/scheduler.py).

Each keeps its state in the database, so any process takes over after a
restart, and each is safe to run in several processes at once.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine

from kwik_console.core.settings import Settings
from kwik_console.operations import alerts, health, recovery, retention

log = logging.getLogger(__name__)

RECOVERY_SECONDS = 1.0
AUTO_DISABLE_SECONDS = 60.0
RETENTION_SECONDS = 3600.0
ALERTS_SECONDS = 5.0
# A retention run, at most: the next one carries on (each batch is short anyway).
RETENTION_BUDGET_SECONDS = 300.0


# Each job takes what the scheduler hands every job (delivery/hooks.py): the engine, its owner name, the settings.


def run_recoveries(engine: Engine, owner: str, settings: Settings) -> int:
    return recovery.run_recoveries(engine, owner=owner)


def auto_disable(engine: Engine, owner: str, settings: Settings) -> list[int]:
    return health.disable_failing(engine, after_seconds=settings.auto_disable_after)


def purge(engine: Engine, owner: str, settings: Settings) -> retention.Purged:
    return retention.purge(engine, days=settings.retention_days, budget_seconds=RETENTION_BUDGET_SECONDS)


def send_alerts(engine: Engine, owner: str, settings: Settings) -> bool:
    return alerts.start_sending(engine, settings)
