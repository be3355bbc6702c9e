"""The API's error handlers: every error the app can raise answers as an RFC 9457 problem, never a bare 500 page."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from kwik_console.api.auth import check_unchecked_token
from kwik_console.api.problems import ApiProblem, from_validation, problem_response
from kwik_console.core.errors import InvalidInput, NotFound

log = logging.getLogger(__name__)

# What FastAPI says of a JSON body it could not decode for a reason other than its syntax (not UTF-8, say).
_UNPARSED = "There was an error parsing the body"
_HTTP_CODES = {404: ("not_found", "Not found"), 405: ("method_not_allowed", "Method not allowed")}


def install(app: FastAPI) -> None:
    """Each kind of error, answered as a problem."""

    @app.exception_handler(ApiProblem)
    async def _api_problem(request: Request, exc: ApiProblem):
        return problem_response(
            request.url.path, exc.status, exc.code, exc.title, exc.detail, errors=exc.errors, headers=exc.headers
        )

    @app.exception_handler(InvalidInput)
    async def _invalid(request: Request, exc: InvalidInput):
        return problem_response(request.url.path, 422, "invalid_input", "Invalid input", exc.message, errors=exc.errors)

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound):
        return problem_response(request.url.path, 404, "not_found", "Not found", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        try:  # a token is checked before anything is said about the request
            await check_unchecked_token(request)
        except ApiProblem as refusal:
            return await _api_problem(request, refusal)
        return from_validation(request, exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 400 and exc.detail == _UNPARSED:  # FastAPI's word for a body it could not decode
            return problem_response(
                request.url.path,
                400,
                "malformed_json",
                "Malformed JSON",
                "The request body is not valid JSON in UTF-8.",
            )
        code, title = _HTTP_CODES.get(exc.status_code, ("http_error", "Error"))
        detail = {
            404: f"There is no API route {request.url.path}; see /api/v1/docs.",
            405: f"{request.method} is not allowed on {request.url.path}.",
        }.get(exc.status_code, str(exc.detail))
        return problem_response(
            request.url.path, exc.status_code, code, title, detail, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(SQLAlchemyError)
    async def _database(request: Request, exc: SQLAlchemyError):
        log.exception("database error on %s %s", request.method, request.url.path)
        return problem_response(
            request.url.path,
            503,
            "database_unavailable",
            "Database unavailable",
            "The database is unavailable. Try again in a moment.",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return problem_response(
            request.url.path,
            500,
            "internal_error",
            "Internal error",
            "Something went wrong on our side; it was logged.",
        )
