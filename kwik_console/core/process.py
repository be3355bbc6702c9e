"""Tuning for a long-running process whose event loop hands work to threads (the scheduler's, the API's).

Interpreter settings, not storage: they live with the leaves every layer may use, since the scheduler
(delivery) and the API (a face) both call them at start.
"""

from __future__ import annotations

import functools
import gc
import sys
import threading

# An event loop and the threads that do its database work hand the GIL to each other all
# the time; at Python's default 5 ms switch interval every database step queues for it
# (bench/delivery.py: publish -> first attempt took seconds at 150 events/s).
GIL_SWITCH_SECONDS = 0.0005


def short_gil_turns() -> None:
    """For a process whose event loop hands database work to threads: the scheduler's, the API's."""
    sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_SECONDS))


# What the first requests and looks load (the database driver, migrations, the HTTP client):
# frozen too, this long after start-up.
FREEZE_AGAIN_AFTER_SECONDS = 10.0


@functools.cache  # once per process: what is frozen is never collected
def freeze_startup_objects() -> None:
    """For a long-running process, once its code is loaded: Python's full collections walk every
    object alive, most of them modules, classes and caches that live as long as the process; in
    the API's process each paused every request for 70 to 130 ms (bench/api.py). Frozen, they are
    left out of every later collection."""

    def freeze() -> None:
        gc.collect()
        gc.freeze()

    freeze()
    again = threading.Timer(FREEZE_AGAIN_AFTER_SECONDS, freeze)
    again.daemon = True
    again.start()
