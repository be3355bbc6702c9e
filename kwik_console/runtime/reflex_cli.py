"""Reflex's own command line (`reflex run ...`) with Kwik's start-time patches applied first.

`kwik-console run` starts this instead of `.venv/bin/reflex`, so that a start that
changes nothing reuses the compiled app and the built frontend, and the output
says only what is so (reflex_patches.py, sections 4 and 5).
"""

from __future__ import annotations

import sys

from reflex.reflex import cli

from kwik_console.runtime import reflex_patches


def main() -> None:
    reflex_patches.apply_at_start()
    sys.exit(cli())


if __name__ == "__main__":
    main()
