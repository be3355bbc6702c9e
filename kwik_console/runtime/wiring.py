"""What the delivery engine is handed at start, built in one place from operations.

Every process that may deliver calls `install()` once, before its engine starts:
the Reflex app (kwik_console.py), the `kwik-console` command, the API served alone.
"""

from __future__ import annotations

from kwik_console.delivery import hooks
from kwik_console.operations import jobs
from kwik_console.operations.after_record import operations_after_record


def install() -> None:
    """After attempts are recorded, operations moves on recoveries, health, notices and alerts in the same
    transaction; beside the looks for due deliveries, the scheduler runs operations' background jobs."""
    hooks.install(
        hooks.Hooks(
            after_record=operations_after_record,
            jobs=(
                hooks.Job("recoveries", jobs.run_recoveries, every_seconds=jobs.RECOVERY_SECONDS),
                hooks.Job("auto-disable", jobs.auto_disable, every_seconds=jobs.AUTO_DISABLE_SECONDS),
                hooks.Job("retention", jobs.purge, every_seconds=jobs.RETENTION_SECONDS, first_after_seconds=60),
                hooks.Job("alerts", jobs.send_alerts, every_seconds=jobs.ALERTS_SECONDS),
            ),
        )
    )
