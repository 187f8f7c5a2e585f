"""Error rules: every failure is a JSON body `{"error", "detail", ...}`, never a traceback.

- 404: a named thing does not exist (insurer, product, coverage code); the body names the value
  and lists the accepted ones.
- 413: the body is larger than MAX_BODY_BYTES.
- 422: the request is malformed or outside the limits (bad JSON, not UTF-8, nested too deeply,
  wrong types, control characters in a name, empty or oversized lists, a product listed twice,
  an insurer with several products and no product_name).
- 503: the database is unreachable or not loaded, or the lock is not INTACT.
- 500: a bug; the body says only "internal error" (the traceback goes to the server log).
"""

from __future__ import annotations

import http
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

from core.comparison import MAX_CODES, MAX_PRODUCTS
from core.errors import ConfigError, DatabaseUnavailable, IncaError, SchemaMissing, SelectionError

log = logging.getLogger("uvicorn.error")

_LIST_LIMITS = {"products": ("products", MAX_PRODUCTS), "target_coverages": ("coverage codes", MAX_CODES)}


class ApiError(Exception):
    """An expected failure with its HTTP status and body."""

    def __init__(self, status: int, error: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.body: dict[str, Any] = {"error": error, "detail": detail,
                                     **{key: value for key, value in extra.items() if value is not None}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status)


def from_inca_error(error: IncaError) -> ApiError:
    """core's one-line errors (already free of passwords) as HTTP answers."""
    if isinstance(error, SelectionError):
        return ApiError(422, "invalid selection", str(error), value=error.bad_value, closest=error.suggestions or None)
    if isinstance(error, DatabaseUnavailable):
        return ApiError(503, "database connection failed", str(error))
    if isinstance(error, SchemaMissing):
        return ApiError(503, "database not loaded", str(error))
    if isinstance(error, ConfigError):
        return ApiError(503, "configuration error", str(error))
    return ApiError(503, "service unavailable", str(error))


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(part) for part in loc if part != "body"]
    return ".".join(parts) or "body"


def validation_error(errors: list[dict[str, Any]]) -> ApiError:
    """Pydantic's list of problems as one readable 422; limits and bad JSON get their own names."""
    problems = [{"field": _field(e.get("loc", ())), "message": str(e.get("msg", ""))} for e in errors]
    for e in errors:
        kind, field, ctx = e.get("type"), _field(e.get("loc", ())), e.get("ctx") or {}
        if kind == "json_invalid":
            position = next((part for part in e.get("loc", ()) if isinstance(part, int)), None)
            where = f" at character {position}" if position is not None else ""
            return ApiError(422, "malformed JSON",
                            f"the request body is not valid JSON ({ctx.get('error', 'decode error')}{where})",
                            errors=[{"field": "body", "message": str(e.get("msg", ""))}])
        if field in _LIST_LIMITS and kind == "too_long":
            what, limit = _LIST_LIMITS[field]
            given = ctx.get("actual_length")
            return ApiError(422, f"too many {what}",
                            f"at most {limit} {what} per request ({given} given); split the request",
                            limit=limit, given=given, errors=problems)
        if field in _LIST_LIMITS and kind == "too_short":
            what, limit = _LIST_LIMITS[field]
            return ApiError(422, f"no {what}", f"`{field}` is empty: list 1 to {limit} {what}",
                            limit=limit, given=0, errors=problems)
        if field == "body" and kind == "missing":
            return ApiError(422, "missing body", 'send a JSON body like {"products": [{"insurer": "삼성화재"}], '
                                                 '"target_coverages": [{"coverage_code": "A4200_1"}]}',
                            errors=problems)
    detail = "; ".join(f"{p['field']}: {p['message']}" for p in problems) or "the request is not valid"
    return ApiError(422, "invalid request", detail, errors=problems)


async def _api_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return error.response()


async def _validation(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return validation_error(list(error.errors())).response()


async def _inca(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, IncaError)
    return from_inca_error(error).response()


async def _pool_timeout(_: Request, __: Exception) -> JSONResponse:
    return ApiError(503, "database busy", "every database connection is in use; retry in a moment").response()


#: what FastAPI says (as a 400) when the body is JSON it cannot parse, e.g. nested too deeply



async def _http(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    if error.status_code == 400:
        # FastAPI's own answer when the body cannot be decoded at all (invalid UTF-8, nesting deeper
        # than the JSON parser allows): the documented 422 "malformed JSON" shape, like any bad JSON.
        detail = ("the request body could not be parsed (invalid UTF-8, or JSON nested too deeply); "
                  "send a UTF-8 JSON object like the example in docs/api.md")
        return ApiError(422, "malformed JSON", detail, errors=[{"field": "body", "message": detail}]).response()
    phrase = http.HTTPStatus(error.status_code).phrase.lower()
    return JSONResponse({"error": phrase, "detail": str(error.detail)}, status_code=error.status_code,
                        headers=error.headers)


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    # A bug: the traceback goes to the server log (uvicorn logs it too), never to the client.
    log.error("unexpected error on %s %s: %s", request.method, request.url.path, type(error).__name__)
    return JSONResponse({"error": "internal error", "detail": "unexpected failure; see the API log"}, status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(IncaError, _inca)
    app.add_exception_handler(PoolTimeout, _pool_timeout)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
