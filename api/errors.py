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
from api.slashes import slash_twin
from shared.errors import (
    BadRequest,
    ImageTooLarge,
    MethodNotAllowed,
    NotFound,
    RecogError,
    ServerBusy,
    ServerError,
    SlashRedirect,
)

log = logging.getLogger("recog.api")

# Starlette's own errors (no route, wrong method, unreadable form, body too large) as ours, so every
# code a client can see is one of `shared.errors`.
_HTTP_ERRORS: dict[int, type[RecogError]] = {
    400: BadRequest,
    404: NotFound,
    405: MethodNotAllowed,
    413: ImageTooLarge,
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if details:
        error["details"] = details
    return {"error": error}


def error_response(exc: RecogError) -> JSONResponse:
    observe_error(exc.code)
    return JSONResponse(error_body(exc.code, exc.message, exc.details), status_code=exc.status, headers=exc.headers())


async def recog_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RecogError)
    return error_response(exc)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404 and (twin := slash_twin(request)) is not None:
        return error_response(SlashRedirect(twin))
    error = _HTTP_ERRORS.get(exc.status_code, BadRequest if exc.status_code < 500 else ServerError)
    return JSONResponse(error_body(error.code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers)


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
