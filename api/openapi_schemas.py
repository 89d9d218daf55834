"""The components of the OpenAPI document (`api.openapi`): object schemas, and one error response
per HTTP status whose codes are read from `shared.errors`, so the list is never written twice."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from api import bodies
from api.forms import DEFAULT_MAX_RESULTS, MAX_RESULTS_CAP
from shared.errors import RecogError, error_classes

Schema = dict[str, Any]

# Answers that tell the client when to come back.
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}
_RETRY_STATUSES = (429, 503)

ID = {"type": "string", "pattern": "^[0-9a-f]{32}$", "description": "32 lowercase hex characters (uuid4 hex)."}
TOKEN = {"type": "string", "pattern": "^[0-9a-f]{16}$", "description": "16 lowercase hex characters."}
_URI = {"type": "string", "description": "A resource URI, `/api/v0/<resource>/<id>/`."}
_URL = {"type": "string", "format": "uri"}
_TIME = {"type": "string", "format": "date-time"}
_TEXT = {"type": "string", "maxLength": bodies.MAX_TEXT}
_REFERENCE = {"type": "string", "description": "A resource URI (`/api/v0/<resource>/<id>/`) or a bare id."}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(properties: Schema, required: list[str] | None = None) -> Schema:
    return {"type": "object", "properties": properties, "required": required or list(properties)}


def _codes_by_status() -> dict[int, list[str]]:
    by_status: dict[int, list[str]] = defaultdict(list)
    for cls in error_classes():
        if cls is not RecogError:  # shares SERVER_ERROR with ServerError
            by_status[cls.status].append(cls.code)
    return {status: sorted(codes) for status, codes in sorted(by_status.items())}


def _error_response(status: int, codes: list[str]) -> Schema:
    detail = {"allOf": [ref("ErrorDetail"), {"properties": {"code": {"enum": codes}}}]}
    response: Schema = {
        "description": ", ".join(codes),
        "content": {
            "application/json": {
                "schema": obj({"error": detail}),
                "example": {"error": {"code": codes[0], "message": "A sentence a person can act on."}},
            }
        },
    }
    if status in _RETRY_STATUSES:
        response["headers"] = _RETRY_AFTER
    if status == 307:
        response["headers"] = {"Location": {"description": "The served path.", "schema": {"type": "string"}}}
    return response


def _search_form() -> Schema:
    flag = {"type": "boolean", "default": False}
    return {
        "type": "object",
        "required": ["token", "image"],
        "properties": {
            "token": TOKEN,
            "image": {"type": "string", "format": "binary", "description": "JPEG, or PNG without transparency."},
            "bboxes": {**flag, "description": "Add `bbox` to each result (`bbox` is a synonym)."},
            "bbox": {**flag, "description": "Synonym of `bboxes`."},
            "embed_custom": {**flag, "description": "Put the item's `custom` text itself in results, not a URL."},
            "embed_tracking": {**flag, "description": "Same for `tracking`."},
            "max_results": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_RESULTS_CAP,
                "default": DEFAULT_MAX_RESULTS,
            },
            "min_score": {"type": "number", "minimum": 0, "maximum": 100, "default": 0},
            "app_id": {"type": "string", "description": "v2 only; accepted and unused."},
            "version": {"type": "string", "description": "v2 only; accepted and unused."},
        },
    }


def _result_item(v2: bool) -> Schema:
    properties: Schema = {
        "uuid": ID,
        "name": {"type": "string"},
        "url": {"type": "string"},
        "custom": {"type": "string", "description": "The text with `embed_custom`, else a URL returning it."},
        "tracking": {"type": "string", "description": "The text with `embed_tracking`, else a URL returning it."},
        "content": {"type": "object"},
        "trackable": {"type": "boolean"},
    }
    if v2:
        properties["images"] = {"type": "array", "items": ID}
    return obj(properties, ["uuid", "name", "trackable", *(["images"] if v2 else [])])


def _schemas() -> Schema:
    bbox = {
        "type": "array",
        "minItems": 4,
        "maxItems": 4,
        "items": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
        "description": "Corners top-left, top-right, bottom-left, bottom-right as [x, y] / query size.",
    }
    score = {"type": "number", "minimum": 0, "maximum": 100}
    item_fields = {
        "name": {"type": "string", "maxLength": 255, "minLength": 1},
        "url": {"type": "string", "maxLength": 2048},
        "custom": _TEXT,
        "tracking": _TEXT,
        "content": {"type": ["object", "null"]},
        "trackable": {"type": "boolean"},
    }
    rate_limit = {"type": ["integer", "null"], "minimum": 1, "maximum": 100_000, "description": "Searches/s."}
    parts = {
        "type": "integer",
        "minimum": 2,
        "description": "Parts its images are indexed in (RECOG_PART_IMAGES each); absent: one.",
    }
    collection = {"uuid": ID, "name": {"type": "string"}, "parts": parts, "created_at": _TIME, "resource_uri": _URI}
    image = {
        "uuid": ID,
        "item": _URI,
        "collection": _URI,
        "file": _URL,
        "thumb_120": _URL,
        "thumb_60": _URL,
        "status": {"enum": ["indexed"]},
        "recognisability": {"type": "integer", "minimum": 0, "maximum": 5},
        "sha256": {"type": "string", "description": "SHA-256 of the uploaded bytes, hex."},
        "part": {"type": "integer", "minimum": 1, "description": "The collection part it is in; absent: 0."},
        "created_at": _TIME,
        "resource_uri": _URI,
    }
    return {
        "ErrorDetail": obj(
            {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object", "additionalProperties": {"type": "string"}},
            },
            ["code", "message"],
        ),
        "SearchForm": _search_form(),
        "SearchV1": obj(
            {
                "search_time": {"type": "integer", "description": "Milliseconds."},
                "results": {
                    "type": "array",
                    "items": obj(
                        {
                            "item": _result_item(v2=False),
                            "image": obj({"uuid": ID, "thumb_120": _URL}),
                            "score": score,
                            "bbox": bbox,
                        },
                        ["item", "image", "score"],
                    ),
                },
            }
        ),
        "SearchV2": obj(
            {
                "search_time": {"type": "integer", "description": "Milliseconds."},
                "collection": obj({"uuid": ID, "image_template": {"type": "string"}}),
                "results": {
                    "type": "array",
                    "items": obj(
                        {"item": _result_item(v2=True), "image": ID, "score": score, "bbox": bbox},
                        ["item", "image", "score"],
                    ),
                },
            }
        ),
        "Meta": obj(
            {
                "limit": {"type": "integer"},
                "offset": {"type": "integer"},
                "total_count": {"type": "integer"},
                "next": {"type": ["string", "null"]},
                "previous": {"type": ["string", "null"]},
            }
        ),
        "collection": obj(collection, [name for name in collection if name != "parts"]),
        "collectionCreated": obj({**collection, "token": TOKEN}, [name for name in collection if name != "parts"]),
        "collectionInput": obj({"name": item_fields["name"]}),
        "item": obj({"uuid": ID, "collection": _URI, **item_fields, "created_at": _TIME, "resource_uri": _URI}),
        "itemInput": obj({"collection": _REFERENCE, **item_fields}, ["collection", "name"]),
        "image": obj(image, [name for name in image if name not in ("sha256", "part")]),
        "imageInput": obj({}, []),
        "imageUpload": obj({"item": _REFERENCE, "file": {"type": "string", "format": "binary"}}),
        "token": obj(
            {"token": TOKEN, "collection": _URI, "rate_limit": rate_limit, "created_at": _TIME, "resource_uri": _URI}
        ),
        "tokenInput": obj({"collection": _REFERENCE, "rate_limit": rate_limit}, ["collection"]),
    }


def components() -> Schema:
    return {
        "schemas": _schemas(),
        "responses": {f"Error{s}": _error_response(s, codes) for s, codes in _codes_by_status().items()},
        "securitySchemes": {
            "apiKey": {"type": "apiKey", "in": "query", "name": "api_key"},
            "bearer": {"type": "http", "scheme": "bearer"},
        },
    }
