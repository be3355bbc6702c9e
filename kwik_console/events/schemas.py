"""JSON Schemas of each event type's `data`, derived from the catalogue's samples, and the one check of a
payload against them (pure). The API serves the schemas; Test Webhook (every face) and `trigger` check with them.

The samples of one resource (payment.created, payment.updated) share a schema, so a
field that is null in one sample and text in another (a checkout's `payment_id`) is
typed as both. Text that looks like an ISO 8601 timestamp or date gets a `format`.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import jsonschema_rs

from kwik_console.core.errors import InvalidInput
from kwik_console.events import catalog
from kwik_console.events.publishing import shape_error

DIALECT = "https://json-schema.org/draft/2020-12/schema"
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _merge(schema: dict[str, Any], value: Any) -> dict[str, Any]:
    """`schema` widened to also describe `value`."""
    kind = _type_of(value)
    types = set(schema.get("type", []) if isinstance(schema.get("type"), list) else [schema["type"]] if schema else [])
    types.add(kind)
    merged = dict(schema)
    merged["type"] = sorted(types)[0] if len(types) == 1 else sorted(types)
    if kind == "object":
        properties = dict(merged.get("properties", {}))
        for key, item in value.items():
            properties[key] = _merge(properties.get(key, {}), item)
        merged["properties"] = properties
    elif kind == "array":
        items = merged.get("items", {})
        for item in value:
            items = _merge(items, item)
        merged["items"] = items
    elif kind == "string":
        fmt = "date-time" if _DATE_TIME.match(value) else "date" if _DATE.match(value) else None
        if "format" not in merged and "string_seen" not in merged and fmt:
            merged["format"] = fmt
        elif merged.get("format") != fmt:
            merged.pop("format", None)
        merged["string_seen"] = True
    return merged


def _clean(schema: dict[str, Any]) -> dict[str, Any]:
    schema = {k: v for k, v in schema.items() if k != "string_seen"}
    if "properties" in schema:
        schema["properties"] = {k: _clean(v) for k, v in schema["properties"].items()}
    if "items" in schema:
        schema["items"] = _clean(schema["items"]) if schema["items"] else {}
    return schema


@functools.cache
def _resource_schemas() -> dict[str, dict[str, Any]]:
    schemas: dict[str, dict[str, Any]] = {}
    for resource, types in catalog.grouped().items():
        merged: dict[str, Any] = {}
        for event_type in types:
            merged = _merge(merged, event_type.sample)
        schemas[resource] = _clean(merged)
    return schemas


def data_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema of `data` for one event type (KeyError if it is not in the catalogue)."""
    event = catalog.EVENT_TYPES[event_type]
    shared = _resource_schemas()[event.resource]
    return {
        "$schema": DIALECT,
        "title": f"{event_type} data",
        "description": event.description,
        "type": "object",
        "properties": shared["properties"],
        # What every sample of this type carries; receivers may see more fields as Kwik grows.
        "required": sorted(event.sample),
        "additionalProperties": True,
    }


@functools.cache
def _validator(event_type: str):
    # Formats too: a `created_at` of "yesterday" is refused, as a receiver parsing it would.
    return jsonschema_rs.validator_for(data_schema(event_type), validate_formats=True)


def _where(path) -> str:
    return "data" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def data_error(event_type: str, data: Any) -> str | None:
    """Why `data` does not fit its type's schema, in one line, or None (KeyError if the type is unknown)."""
    if (error := shape_error(data)) is not None:  # what no event may carry, which the validator cannot walk
        return error
    errors = list(_validator(event_type).iter_errors(data))
    if not errors:
        return None
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{_where(first.instance_path)}: {first.message}{more}"


def check_data(event_type: str, data: Any) -> None:
    """InvalidInput naming the first way `data` does not fit the type's schema; nothing if it fits."""
    if (error := shape_error(data)) is not None:
        raise InvalidInput({"data": error})
    if (error := data_error(event_type, data)) is not None:
        raise InvalidInput({"data": f"The payload does not fit the {event_type} schema: {error}"})
