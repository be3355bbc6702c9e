"""RFC 9457 problem details: every error the API answers, in one shape, with field errors like the console's.

    {"type": "about:blank", "title": "Invalid input", "status": 422, "code": "invalid_input",
     "detail": "Webhook URL must use https://.", "instance": "/api/v1/webhooks",
     "errors": [{"field": "url", "detail": "Webhook URL must use https://."}]}

`code` names the kind of problem for programs; `errors` appears when fields are at fault.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field
from starlette.responses import Response

from kwik_console.core import json_scan
from kwik_console.events.publishing import (
    BODY_MAX_BYTES,
    DATA_MAX_DEPTH,
    DATA_MAX_DEPTH_MESSAGE,
    DATA_NUMBER_MESSAGE,
)

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"
# A request body larger than the largest event the console can send is a mistake, refused before it is parsed.
MAX_BODY_BYTES = BODY_MAX_BYTES
# The deepest body a route takes: an event, whose data nests up to DATA_MAX_DEPTH levels inside it.
MAX_BODY_DEPTH = DATA_MAX_DEPTH + 1
# Where the gate leaves the field errors of a body it kept from the parser, for the validation handler.
UNREADABLE_BODY = "kwik.unreadable_body"


class FieldError(BaseModel):
    field: str = Field(
        description="The field at fault: a body field (`events.0` for an item), a query parameter or a header."
    )
    detail: str


class Problem(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    code: str = Field(description="The kind of problem, for programs: invalid_input, malformed_json, not_found, ...")
    instance: str | None = None
    errors: list[FieldError] | None = None


class ApiProblem(Exception):
    """Raise to answer with a problem; `headers` go on the response (Retry-After, WWW-Authenticate, ...)."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        *,
        errors: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(detail)
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.errors, self.headers = errors, headers or {}


def problem_response(
    request_path: str | None,
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    errors: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail, "code": code}
    if request_path:
        body["instance"] = request_path
    if errors:
        body["errors"] = [{"field": f, "detail": d} for f, d in errors.items()]
    return Response(json.dumps(body, ensure_ascii=False), status_code=status, media_type=MEDIA_TYPE, headers=headers)


def unreadable_body(body: bytes, *, event: bool) -> dict[str, str] | None:
    """Field errors for a JSON body nested too deep, or with a number too long, for the routes' parsing and
    what walks its result (json_scan); None for any other body. `event`: the body of POST /events, whose
    `data` is the only field that nests, and which the event's own rules name."""
    try:
        json_scan.check(body, max_depth=MAX_BODY_DEPTH)
    except json_scan.TooDeep:
        if event:
            return {"data": DATA_MAX_DEPTH_MESSAGE}
        return {"body": f"The request body must be nested at most {MAX_BODY_DEPTH} levels deep."}
    except json_scan.NumberTooLong:
        if event:
            return {"data": DATA_NUMBER_MESSAGE}
        return {
            "body": f"The request body must not hold a whole number of more than {json_scan.INT_DIGITS_MAX:,} digits."
        }
    return None


def invalid_input(errors: dict[str, str]) -> ApiProblem:
    return ApiProblem(422, "invalid_input", "Invalid input", " ".join(errors.values()), errors=errors)


# ---------------------------------------------------------------- pydantic's errors, in the console's words

_ID_KINDS = {"webhook_id": "Webhook", "delivery_id": "Delivery", "recovery_id": "Recovery"}
_TYPE_WORDS = {
    "string_type": "must be text",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be a list",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
}


def _field(loc: tuple) -> str:
    return ".".join(str(part) for part in loc[1:]) or "body"


def _message(error: dict) -> str:
    field, kind = _field(error["loc"]), error["type"]
    if kind == "extra_forbidden":
        return f"Unknown field: {field}."
    if kind == "missing":
        return f"{field} is required." if field != "body" else "The request needs a JSON body."
    if kind in _TYPE_WORDS:
        subject = "The body" if field == "body" else field
        return f"{subject} {_TYPE_WORDS[kind]}."
    if kind.startswith(("datetime_", "date_")):
        return f"{field} must be a date or date-time, such as 2025-06-01 or 2025-06-01T09:30:00Z."
    if kind.startswith(("greater_than", "less_than")):
        return f"{field}: {error['msg'][0].lower()}{error['msg'][1:]}."
    return f"{field}: {error['msg']}."


def from_validation(request: Request, exc: RequestValidationError) -> Response:
    if unreadable := request.scope.get("state", {}).get(UNREADABLE_BODY):
        return problem_response(
            request.url.path, 422, "invalid_input", "Invalid input", " ".join(unreadable.values()), errors=unreadable
        )
    errors = exc.errors()
    for error in errors:
        if error["type"] == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "it cannot be parsed")
            return problem_response(
                request.url.path,
                400,
                "malformed_json",
                "Malformed JSON",
                f"The request body is not valid JSON: {reason}.",
            )
    for error in errors:
        if error["loc"][0] == "path":
            # /webhooks/abc names no webhook, just as /webhooks/0 does.
            name = str(error["loc"][-1])
            value = request.path_params.get(name, "")
            return problem_response(
                request.url.path,
                404,
                "not_found",
                "Not found",
                f"{_ID_KINDS.get(name, 'Resource')} {str(value)[:40]} does not exist.",
            )
    fields: dict[str, str] = {}
    for error in errors:
        name = str(error["loc"][-1]) if error["loc"][0] in ("query", "header") else _field(error["loc"])
        message = _message({**error, "loc": ("query", name)} if error["loc"][0] in ("query", "header") else error)
        fields[name] = fields.get(name, "") + (" " if name in fields else "") + message
    return problem_response(
        request.url.path, 422, "invalid_input", "Invalid input", " ".join(fields.values()), errors=fields
    )


# ---------------------------------------------------------------- the OpenAPI side

PROBLEM_STATUSES = {
    400: "Malformed JSON, or a bad header.",
    401: "No access token, or one that is unknown, revoked or expired.",
    403: "The token's scopes do not allow this.",
    404: "The webhook, delivery or recovery does not exist.",
    409: "A request with the same Idempotency-Key is still in progress; or a recovery is already running, or "
    "its webhook is Disabled (or, to cancel, the recovery is no longer running). The title says which.",
    413: f"The body is larger than {MAX_BODY_BYTES // 1024} KB.",
    415: "The body is not application/json.",
    422: "Invalid input: wrong types, unknown fields or values that break a rule; `errors` names each field.",
    429: "Too many requests for this token: wait Retry-After seconds.",
    503: "The database is unavailable.",
}
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"description": text, "content": {MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
    for status, text in PROBLEM_STATUSES.items()
}


def openapi_components() -> dict[str, Any]:
    """The Problem and FieldError schemas, for the responses above to refer to."""
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    return {"Problem": schema, **definitions}
