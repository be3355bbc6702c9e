"""JSON text checked for what parsers cannot take cleanly: nesting too deep, and whole numbers too long.

Parsers and what walks their result recurse once per level of nesting (Python's parser gives up with a
RecursionError near 1,000 levels, pydantic's serializer sooner), and Python refuses to read a whole number
of more than 4,300 digits. `loads` turns both into exceptions of their own, with the depth measured without
recursion, so every face can answer with a message instead of a traceback.
"""

from __future__ import annotations

import json
import sys
from typing import Any

# Python's own limit on the digits of a whole number it reads or prints (sys.set_int_max_str_digits).
INT_DIGITS_MAX = sys.int_info.default_max_str_digits


class TooDeep(ValueError):
    """Nested deeper than the limit."""


class NumberTooLong(ValueError):
    """A whole number of more than INT_DIGITS_MAX digits."""


def loads(text: str | bytes, *, max_depth: int) -> Any:
    """json.loads, refusing more than `max_depth` levels of arrays and objects (TooDeep) and whole numbers
    Python cannot read (NumberTooLong); malformed text raises json.JSONDecodeError (or UnicodeDecodeError for
    bytes), as ever. All are ValueErrors."""
    try:
        value = json.loads(text)
    except RecursionError:  # the parser's own limit, far past any we set
        raise TooDeep(f"nested more than {max_depth} levels deep") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise
    except ValueError:  # the parser reads every other number it finds: this is the digit limit
        raise NumberTooLong(f"a whole number has more than {INT_DIGITS_MAX:,} digits") from None
    opening = (b"[", b"{") if isinstance(text, bytes) else ("[", "{")
    if text.count(opening[0]) + text.count(opening[1]) > max_depth and _deeper_than(value, max_depth):
        raise TooDeep(f"nested more than {max_depth} levels deep")
    return value


def check(text: str | bytes, *, max_depth: int) -> None:
    """`loads`' refusals for JSON text that is parsed later, by another; malformed text passes (that parser
    words it). The usual body, with few brackets and too short for a long number, is not parsed here."""
    opening = (b"[", b"{") if isinstance(text, bytes) else ("[", "{")
    if text.count(opening[0]) + text.count(opening[1]) <= max_depth and len(text) <= INT_DIGITS_MAX:
        return
    try:
        loads(text, max_depth=max_depth)
    except (json.JSONDecodeError, UnicodeDecodeError):
        pass


def _deeper_than(value: Any, max_depth: int) -> bool:
    """Whether arrays and objects nest more than `max_depth` levels in `value`: walked a level at a time, not
    by recursion."""
    level = [value] if isinstance(value, dict | list) else []
    if not level:
        return False
    for _ in range(max_depth):
        below = []
        for item in level:
            below += [c for c in (item.values() if isinstance(item, dict) else item) if isinstance(c, dict | list)]
        if not below:
            return False
        level = below
    return True
