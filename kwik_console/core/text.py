"""The rule for text that people read back (names, URLs, header values): printable, storable Unicode."""

from __future__ import annotations

import re

from kwik_console.core.errors import InvalidInput

# Characters that act on a terminal or a page instead of showing themselves:
# C0/C1 controls (newline, tab, ESC of ANSI codes, NUL, DEL), line and
# paragraph separators, and the invisible bidirectional overrides that reorder
# what a person reads.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Half of a UTF-16 pair on its own: not text, and no database can store it.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def check_text(field: str, label: str, text: str) -> str:
    """Raise InvalidInput naming `field` unless `text` is printable, storable Unicode; return it."""
    if LONE_SURROGATE.search(text):
        raise InvalidInput({field: f"{label} must be valid Unicode text."})
    if CONTROL_CHARACTERS.search(text):
        raise InvalidInput({field: f"{label} must not contain control characters."})
    return text


def escape_controls(text: str, escape) -> str:
    """`text` with each control character or lone surrogate replaced by `escape(match)`, for a terminal."""
    return LONE_SURROGATE.sub(escape, CONTROL_CHARACTERS.sub(escape, text))
