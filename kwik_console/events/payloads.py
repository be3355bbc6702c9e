"""A payload written by a person: an event's `data` as JSON text, and Stripe-style `path=value` overrides.

The payload is always the event's `data` object, never the envelope around it: Kwik writes `id`, `type`,
`created_at` and `test` itself. Test Webhook's editor, `trigger` and `events publish` read theirs here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from kwik_console.core import json_scan
from kwik_console.core.errors import InvalidInput
from kwik_console.events.publishing import DATA_MAX_DEPTH, DATA_MAX_DEPTH_MESSAGE, DATA_NUMBER_MESSAGE


def _no_constant(name: str):
    # NaN and Infinity are not JSON, though Python's parser takes them.
    raise ValueError(f"{name} is not a JSON value")


def parse_data(text: str, *, what: str = "The payload") -> dict[str, Any]:
    """`text` as a JSON object, or InvalidInput({"data": ...}) saying where it is not one.

    NaN and Infinity are read, for publishing's own check to refuse in its words.
    """
    try:
        data = json_scan.loads(text, max_depth=DATA_MAX_DEPTH)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            {"data": f"{what} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}."}
        ) from None
    except json_scan.TooDeep:
        raise InvalidInput({"data": DATA_MAX_DEPTH_MESSAGE}) from None
    except json_scan.NumberTooLong:
        raise InvalidInput({"data": DATA_NUMBER_MESSAGE}) from None
    if not isinstance(data, dict):
        raise InvalidInput({"data": "Event data must be a JSON object."})
    return data


def _value(text: str) -> Any:
    """JSON when it parses (5000, true, null, "5000", {...}), else the text itself."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return text


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    return "null" if value is None else "a list" if isinstance(value, list) else "an object"


def override(data: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """`data` with each `path=value` set, in order, as Stripe's `--override`: a dotted path (`metadata.crm_id`,
    `items.0.amount` for a list's first item; missing objects are made on the way) and a value read as JSON
    when it parses, else as text. `data` itself is left as it was."""
    out = json.loads(json.dumps(data))
    for item in overrides:
        path, sep, text = item.partition("=")
        keys = path.split(".")
        if not sep or not all(keys):
            raise InvalidInput(
                {"override": f"--override {item!r}: write it as path=value, such as amount=5000 or metadata.crm_id=x."}
            )
        node: Any = out
        for depth, key in enumerate(keys):
            last = depth == len(keys) - 1
            where = "data." + ".".join(keys[:depth]) if depth else "data"
            if isinstance(node, dict):
                if last:
                    node[key] = _value(text)
                else:
                    node = node.setdefault(key, {})
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                if last:
                    node[int(key)] = _value(text)
                else:
                    node = node[int(key)]
            elif isinstance(node, list):
                problem = f"{where} is a list of {len(node)}; {key!r} is not an index in it"
                raise InvalidInput({"override": f"--override {item!r}: {problem}."})
            else:
                raise InvalidInput({"override": f"--override {item!r}: {where} is {_kind(node)}, not an object."})
    return out
