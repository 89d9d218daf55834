"""Reading a search request's multipart form into typed options, with the contract's errors.

Kept apart from the route so the rules (boolean spellings, `bbox` synonym, ranges) are tested on
their own and the route reads top-down.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass

from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from api.upload_limits import bounded_body, read_image, refuse_declared
from shared.config import Settings
from shared.errors import (
    BadRequest,
    ImageMissing,
    ParameterInvalid,
    TokenMissing,
    TokenWrong,
    UploadTimeout,
)
from shared.ids import TOKEN_RE

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}
MAX_RESULTS_CAP = 50
DEFAULT_MAX_RESULTS = 10

# Awaited with a plain field's value as soon as the field has arrived; it raises to refuse the
# request (what it returns is not used).
FieldCheck = Callable[[str], Awaitable[object]]


@dataclass(frozen=True, kw_only=True)
class SearchForm:
    token: str
    image: bytes
    bboxes: bool
    embed_custom: bool
    embed_tracking: bool
    max_results: int
    min_score: float


def parse_bool(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ParameterInvalid(f"'{name}' must be true or false (got {value[:20]!r}).", details={name: "not a boolean"})


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None:
        return None
    if isinstance(value, UploadFile):
        raise ParameterInvalid(f"'{name}' must be a plain field, not a file.", details={name: "not text"})
    return value


def _flag(form: FormData, *names: str) -> bool:
    for name in names:
        value = _text(form, name)
        if value is not None:
            return parse_bool(name, value)
    return False


def _number(form: FormData, name: str, low: float, high: float) -> float | None:
    value = _text(form, name)
    if value is None or value.strip() == "":
        return None
    try:
        number = float(value)
    except ValueError:
        raise ParameterInvalid(
            f"'{name}' must be a number (got {value[:20]!r}).", details={name: "not a number"}
        ) from None
    if not low <= number <= high:
        raise ParameterInvalid(f"'{name}' must be between {low:g} and {high:g}.", details={name: "out of range"})
    return number


async def read_form(request: Request, settings: Settings, early: Mapping[str, FieldCheck] | None = None) -> FormData:
    """The parsed multipart form, read no further than the upload limit; BadRequest when it is
    malformed or cut off before its closing boundary (a partial form would otherwise read as one
    whose later fields are missing).

    `early` maps field names to checks, each awaited with the first plain field of its name as soon
    as that field has arrived, before any more of the body is read: a search's token sent before
    its image is refused having cost the bytes read so far, not the whole upload.
    """
    refuse_declared(request, settings)
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data":
        # No form, or a URL-encoded one: no upload in it; its fields (if any) say what is missing.
        return await _small_form(request)
    closing = b"--" + options.get(b"boundary", b"") + b"--"
    tail = b""
    pending = dict(early or {})
    parsed = 0  # parser.items[:parsed] have been offered to `pending`

    async def body() -> AsyncGenerator[bytes, None]:
        nonlocal tail, parsed
        async for chunk in bounded_body(request, settings):
            tail = (tail + chunk[-len(closing) - 4 :])[-len(closing) - 4 :]
            yield chunk
            # The parser has taken `chunk`: check the fields it completed before reading more.
            for name, value in parser.items[parsed:]:
                if isinstance(value, str) and (check := pending.pop(name, None)):
                    await check(value)
            parsed = len(parser.items)

    parser = MultiPartParser(request.headers, body(), max_files=4, max_fields=32)
    try:
        # One timer for the whole body: a client trickling it gets 408, not a socket held open.
        async with asyncio.timeout(settings.body_timeout_seconds) as timer:
            form = await parser.parse()
    except TimeoutError:
        if not timer.expired():
            raise  # an early check's own time limit, not the body's
        raise UploadTimeout() from None
    except MultiPartException as exc:
        raise BadRequest(f"The multipart body could not be read: {exc.message}") from None
    except (ValueError, UnicodeDecodeError, AssertionError):
        # python-multipart raises these on some malformed bodies instead of MultiPartException
        raise BadRequest("The multipart body could not be read.") from None
    if not tail.rstrip(b"\r\n").endswith(closing):
        await form.close()
        raise BadRequest("The multipart body is cut off: it ends before its closing boundary.")
    return form


async def _small_form(request: Request) -> FormData:
    try:
        return await request.form(max_files=0, max_fields=32)
    except HTTPException as exc:
        raise BadRequest(f"The form could not be read: {exc.detail}") from None


def well_formed_token(token: str) -> str:
    """`token`; TokenWrong unless it is 16 lowercase hex characters (checked before any lookup)."""
    if not TOKEN_RE.fullmatch(token):
        raise TokenWrong()
    return token


def search_token(form: FormData) -> str:
    """The form's well-formed token; TokenMissing without one."""
    token = _text(form, "token")
    if token is None:
        raise TokenMissing()
    return well_formed_token(token)


async def parse_search_form(form: FormData, settings: Settings) -> SearchForm:
    """Validates the fields in the order a client would fix them: token, then image, then options."""
    token = search_token(form)
    upload = form.get("image")
    if not isinstance(upload, UploadFile):
        raise ImageMissing()
    data = await read_image(upload, settings)
    if not data:
        raise ImageMissing("The 'image' part is empty.")
    max_results = _number(form, "max_results", 1, MAX_RESULTS_CAP)
    if max_results is not None and not max_results.is_integer():
        raise ParameterInvalid("'max_results' must be a whole number.", details={"max_results": "not an integer"})
    return SearchForm(
        token=token,
        image=data,
        bboxes=_flag(form, "bboxes", "bbox"),
        embed_custom=_flag(form, "embed_custom"),
        embed_tracking=_flag(form, "embed_tracking"),
        max_results=int(max_results) if max_results is not None else DEFAULT_MAX_RESULTS,
        min_score=_number(form, "min_score", 0, 100) or 0.0,
    )
