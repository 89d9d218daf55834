"""The service's error tree.

Domain code raises these; `api.errors` maps them to HTTP in one place. Each class carries the
contract's error `code` and HTTP `status`, so mapping is a lookup, not a chain of `except`s::

    RecogError
     ├── SlashRedirect (307: not an error, but told in the same body)
     ├── BadRequest (400) ── TokenWrong, ImageMissing, ImageNotLoaded, ImageTransparency,
     │                       ImageTooSmall, ImageNoDetails, ParameterInvalid, InvalidJson,
     │                       ValidationError
     ├── TokenMissing (401)
     ├── Forbidden (403) ─── TokenInvalid, AuthenticationFailed
     ├── NotFound (404)
     ├── MethodNotAllowed (405)
     ├── UploadTimeout (408)
     ├── ImageTooLarge (413)
     ├── WrongContentType (415)
     ├── QuotaExceeded (429)
     ├── ServerBusy (503)
     ├── Timeout (504)
     └── ServerError (500)
"""

from __future__ import annotations

from typing import Any, ClassVar


class RecogError(Exception):
    """Base of every error a client may see; `message` is safe to show to the client."""

    code: ClassVar[str] = "SERVER_ERROR"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "The server failed to handle the request; try again later."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details
        self.retry_after = retry_after
        super().__init__(self.message)

    def headers(self) -> dict[str, str]:
        """HTTP headers the answer carries: `Retry-After` (seconds) when the client should come back."""
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


class SlashRedirect(RecogError):
    """The address differs from a served one only by its trailing slash. A 307, so clients that
    follow redirects repeat the request there with its method and body; the body tells the others."""

    code = "TRAILING_SLASH"
    status = 307
    default_message = "This address is served with a different trailing slash; see the Location header."

    def __init__(self, location: str = "") -> None:
        self.location = location
        message = f"The address is {location}: send the request there." if location else None
        super().__init__(message)

    def headers(self) -> dict[str, str]:
        return {"Location": self.location} if self.location else {}


class ServerError(RecogError):
    pass


class BadRequest(RecogError):
    code = "BAD_REQUEST"
    status = 400
    default_message = "The request could not be read."


class TokenMissing(RecogError):
    code = "TOKEN_MISSING"
    status = 401
    default_message = "The request has no 'token' field; send the collection token."


class TokenWrong(BadRequest):
    code = "TOKEN_WRONG"
    default_message = "The token must be 16 lowercase hexadecimal characters."


class Forbidden(RecogError):
    code = "FORBIDDEN"
    status = 403


class TokenInvalid(Forbidden):
    code = "TOKEN_INVALID"
    default_message = "This token does not exist or was revoked."


class AuthenticationFailed(Forbidden):
    code = "AUTHENTICATION_FAILED"
    default_message = "A valid API key is required: pass ?api_key=KEY or 'Authorization: Bearer KEY'."


class ImageMissing(BadRequest):
    code = "IMAGE_MISSING"
    default_message = "The request has no 'image' file part."


class ImageNotLoaded(BadRequest):
    code = "IMAGE_NOT_LOADED"
    default_message = "The image could not be decoded; send a JPEG or a PNG."


class ImageTransparency(BadRequest):
    code = "IMAGE_TRANSPARENCY"
    default_message = "The PNG has transparent pixels; send an opaque image."


class ImageTooSmall(BadRequest):
    code = "IMAGE_TOO_SMALL"
    default_message = "The image is too small."


class ImageTooLarge(RecogError):
    code = "IMAGE_TOO_LARGE"
    status = 413
    default_message = "The image is too large."


class ImageNoDetails(BadRequest):
    code = "IMAGE_NO_DETAILS"
    default_message = "The image has too little texture to be recognised."


class ParameterInvalid(BadRequest):
    code = "PARAMETER_INVALID"
    default_message = "A parameter has a value that cannot be read."


class InvalidJson(BadRequest):
    code = "INVALID_JSON"
    default_message = "The request body is not valid JSON."


class ValidationError(BadRequest):
    code = "VALIDATION_ERROR"
    default_message = "Some fields are invalid; see 'details'."


class NotFound(RecogError):
    code = "NOT_FOUND"
    status = 404
    default_message = "No such resource."


class MethodNotAllowed(RecogError):
    code = "METHOD_NOT_ALLOWED"
    status = 405
    default_message = "This address does not take this method."


class WrongContentType(RecogError):
    code = "WRONG_CONTENT_TYPE"
    status = 415
    default_message = "Unsupported content type."


class UploadTimeout(RecogError):
    code = "REQUEST_TIMEOUT"
    status = 408
    default_message = "The request body did not arrive in time; send it again on a faster connection."


class QuotaExceeded(RecogError):
    code = "SCAN_QUOTA_EXCEEDED"
    status = 429
    default_message = "The token's request quota is exceeded; retry later."


class ServerBusy(RecogError):
    code = "SERVER_BUSY"
    status = 503
    default_message = "The service is too busy to answer in time; retry shortly."


class Timeout(RecogError):
    code = "TIMEOUT"
    status = 504
    default_message = "No worker answered before the request deadline; retry shortly."


class CodecError(Exception):
    """A job or reply message could not be encoded or decoded (internal, never shown as is)."""


def error_classes() -> list[type[RecogError]]:
    """Every concrete error class, for the test that proves each one is mapped to HTTP."""
    seen: list[type[RecogError]] = []
    stack: list[type[RecogError]] = [RecogError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen


def by_code(code: str) -> type[RecogError]:
    """The error class for a contract code (replies from workers carry only the code)."""
    for cls in error_classes()[1:]:  # the base shares SERVER_ERROR with ServerError
        if cls.code == code:
            return cls
    return ServerError
