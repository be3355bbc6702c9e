"""JSON text looked over before it is parsed, without recursion.

Parsers recurse once per level of nesting (Python's gives up with a RecursionError near 1,000 levels, and
what walks the parsed value after it may give up sooner), and Python refuses to read a whole number of more
than 4,300 digits. `check` finds both in the raw text, so every face can answer with a message instead.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

# Python's own limit on the digits of a whole number it reads or prints (sys.set_int_max_str_digits).
INT_DIGITS_MAX = sys.int_info.default_max_str_digits

_BRACKETS = re.compile(rb"[\[{]")
_LONG_DIGITS = re.compile(rb"\d{%d,}" % (INT_DIGITS_MAX + 1))
# Strings whole (so nothing inside one counts), brackets, and numbers with their parts.
_TOKENS = re.compile(
    rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|-?(\d+)(\.\d+)?([eE][-+]?\d+)?',
    re.DOTALL,
)


class TooDeep(ValueError):
    """Nested deeper than the limit."""


class NumberTooLong(ValueError):
    """A whole number of more than INT_DIGITS_MAX digits."""


def check(text: str | bytes, *, max_depth: int) -> None:
    """Raise TooDeep or NumberTooLong for JSON text a parser could not read cleanly; anything else passes,
    malformed JSON included (the parser words that)."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    deep = len(_BRACKETS.findall(raw)) > max_depth
    long_digits = _LONG_DIGITS.search(raw) is not None
    if not (deep or long_digits):  # the usual body: no walk at all
        return
    depth = 0
    for token in _TOKENS.finditer(raw):
        first = raw[token.start()]
        if first in b"[{":
            depth += 1
            if depth > max_depth:
                raise TooDeep(f"nested more than {max_depth} levels deep")
        elif first in b"]}":
            depth -= 1
        elif token.group(1) and not token.group(2) and not token.group(3) and len(token.group(1)) > INT_DIGITS_MAX:
            raise NumberTooLong(f"a whole number has more than {INT_DIGITS_MAX:,} digits")


def loads(text: str | bytes, *, max_depth: int) -> Any:
    """json.loads after `check`: raises TooDeep, NumberTooLong or json.JSONDecodeError (all ValueErrors)."""
    check(text, max_depth=max_depth)
    return json.loads(text)
