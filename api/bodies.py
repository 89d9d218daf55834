"""Reading management request bodies: JSON parsing and per-field checks, with the contract's errors.

Each resource declares its writable fields as a table of `Field`s; `clean` checks a whole body at
once so VALIDATION_ERROR's `details` names every bad field, not just the first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from shared.errors import BadRequest, InvalidJson, ValidationError, WrongContentType
from shared.ids import ID_PATTERN

# Item texts (custom data, tracking data) are meant to be small; this bounds what one body may hold.
MAX_BODY_BYTES = 1024 * 1024
MAX_TEXT = 65_536
# Arrays and objects nested deeper than this are refused: deeper documents break rendering (recursion).
MAX_DEPTH = 32
# Unknown field names an error names at most, each cut to this many characters.
MAX_UNKNOWN_REPORTED = 20
MAX_NAME = 100


@dataclass(frozen=True)
class Field:
    """`check` returns the value to store or raises ValueError with a message for `details`."""

    check: Callable[[Any], Any]
    required: bool = False


async def read_json(request: Request) -> dict[str, Any]:
    """The body as a JSON object (415 unless it is declared JSON, 400 INVALID_JSON if unreadable)."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise WrongContentType(
            f"Send a JSON body with 'Content-Type: application/json' (got {media_type or 'none'!r})."
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BadRequest(f"The body is larger than {MAX_BODY_BYTES} bytes.")
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError):
        raise InvalidJson() from None
    except RecursionError:
        raise InvalidJson(f"The body is nested more than {MAX_DEPTH} levels deep.") from None
    if not isinstance(value, dict):
        raise InvalidJson("The body must be a JSON object.")
    _check_storable(value)
    return value


def _refuse_constant(name: str) -> Any:
    """Python's json reads NaN and Infinity, which are not JSON: nothing could render them back."""
    raise ValueError(f"{name} is not a JSON value")


def _check_storable(document: Any) -> None:
    """InvalidJson unless every string encodes as UTF-8 (no lone surrogates such as "\\udc80") and
    nothing is nested deeper than MAX_DEPTH: what is stored must render in every listing."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise InvalidJson(f"The body is nested more than {MAX_DEPTH} levels deep.")
            children = [*value.keys(), *value.values()] if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children)
        elif isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidJson("The body holds a string that is not valid Unicode (a lone surrogate).") from None


def clean(
    body: Mapping[str, Any], fields: Mapping[str, Field], *, partial: bool, ignored: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The checked values of `fields` found in `body`; a bad or (unless `partial`) missing one is an
    error, and so is any name that is neither a field nor `ignored`: a misspelt field ("nmae") must
    not pass as a successful update that changed nothing. `ignored` names what clients legitimately
    send and we do not keep: read-only fields of an object sent back as fetched (`resource_uri`), and
    fields of the service this API follows that we do not implement (`offline`, `tags`)."""
    values: dict[str, Any] = {}
    details: dict[str, str] = {}
    for name, field in fields.items():
        if name in body:
            try:
                values[name] = field.check(body[name])
            except ValueError as exc:
                details[name] = str(exc)
        elif field.required and not partial:
            details[name] = "required"
    unknown = sorted(body.keys() - fields.keys() - ignored)
    # Named one by one, but a body of thousands of made-up names must not make an error of megabytes.
    details.update((name[:MAX_NAME], "unknown field") for name in unknown[:MAX_UNKNOWN_REPORTED])
    if details:
        more = len(unknown) - MAX_UNKNOWN_REPORTED
        extra = f" and {more} more unknown" if more > 0 else ""
        raise ValidationError(f"Invalid fields: {', '.join(sorted(details))}{extra}; see 'details'.", details=details)
    return values


def text(max_length: int = MAX_TEXT, *, blank: bool = True) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if not blank and not value.strip():
            raise ValueError("must not be empty")
        if len(value) > max_length:
            raise ValueError(f"must be at most {max_length} characters")
        return value

    return check


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


def optional_count(low: int, high: int) -> Callable[[Any], int | None]:
    """A whole number in [low, high], or null for "no limit"."""

    def check(value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be a whole number from {low} to {high}, or null")
        return value

    return check


def json_object(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    if len(json.dumps(value)) > MAX_TEXT:
        raise ValueError(f"must be at most {MAX_TEXT} characters as JSON")
    return value


def reference(resource: str) -> Callable[[Any], str]:
    """Accepts `/api/v0/<resource>/<id>/` (optionally absolute) or the bare id; returns the id."""
    pattern = re.compile(rf"(?:(?:https?://[^/]+)?/api/v0/{resource}/)?({ID_PATTERN})/?")

    def check(value: Any) -> str:
        match = pattern.fullmatch(value.strip()) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f"must be a {resource} URI (/api/v0/{resource}/<id>/) or a {resource} id")
        return match.group(1)

    return check
