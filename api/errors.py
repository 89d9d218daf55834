"""The one place where errors become HTTP responses.

Domain code raises `shared.errors.RecogError` subclasses; Starlette's own HTTP errors and anything
unexpected are mapped here too, so a client always gets the contract's JSON error body and never a
traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import RedisError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from api.metrics import observe_error
from shared.errors import RecogError, ServerBusy

log = logging.getLogger("recog.api")

_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 400: "BAD_REQUEST", 413: "IMAGE_TOO_LARGE"}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"error": error}


def error_response(exc: RecogError) -> JSONResponse:
    observe_error(exc.code)
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=exc.status, headers=headers)


async def recog_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RecogError)
    return error_response(exc)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)


async def redis_error(request: Request, exc: Exception) -> JSONResponse:
    """Redis failing or frozen, anywhere in a request: the client can retry; one log line, no trace."""
    log.warning("%s %s: Redis failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return error_response(ServerBusy("The service's database is not answering; retry shortly.", retry_after=1))


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(RecogError())


EXCEPTION_HANDLERS = {
    RecogError: recog_error,
    HTTPException: http_error,
    RedisError: redis_error,
    TimeoutError: redis_error,  # a Redis call cut off at the request's deadline (api.search)
    Exception: unexpected_error,
}
