"""The OpenAPI 3.1 description of the HTTP API, served at `GET /openapi.json`, built as data.

Paths follow the routes (`tests/test_openapi.py` walks `app.routes` both ways); error codes and
their statuses are read from `shared.errors`, and the limits from the running `Settings`, so
neither is written twice. The contract itself (what each field means) is `docs/API.md`.
"""

from __future__ import annotations

from importlib.metadata import version

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api.management import MAX_LIMIT, MAX_OFFSET
from api.openapi_schemas import ID, TOKEN, Schema, components, obj, ref
from api.resources import RESOURCES
from api.services import services
from shared.blobs import SERVED
from shared.config import Settings


def _errors(*statuses: int) -> Schema:
    return {str(status): {"$ref": f"#/components/responses/Error{status}"} for status in (*statuses, 500)}


def _json(schema: Schema, description: str = "OK") -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _search(v2: bool) -> Schema:
    return {
        "post": {
            "tags": ["search"],
            "summary": f"Recognise the object in a photo ({'v2: what the official SDKs call' if v2 else 'v1'}).",
            "security": [],  # the collection token is a form field
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": ref("SearchForm")}}},
            "responses": {
                "200": _json(ref("SearchV2" if v2 else "SearchV1")),
                **_errors(400, 401, 403, 408, 413, 429, 503, 504),
            },
        }
    }


# The list filters of each resource (api.resources' listers).
_FILTERS = {
    "collection": ("name", "name__contains"),
    "item": ("collection__uuid",),
    "image": ("item__uuid",),
    "token": ("collection__uuid",),
}


def _query(name: str, schema: Schema, description: str = "") -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _resource_paths(name: str) -> dict[str, Schema]:
    upload = name == "image"
    object_id = {"name": "object_id", "in": "path", "required": True, "schema": TOKEN if name == "token" else ID}
    body = (
        {"multipart/form-data": {"schema": ref("imageUpload")}}
        if upload
        else {"application/json": {"schema": ref(f"{name}Input")}}
    )
    partial = {**ref(f"{name}Input"), "description": "Partial update: only the fields sent change."}
    listing = obj({"meta": ref("Meta"), "objects": {"type": "array", "items": ref(name)}})
    count = {"type": "integer", "minimum": 0}
    tags = [name]
    return {
        f"/api/v0/{name}/": {
            "get": {
                "tags": tags,
                "summary": f"List {name}s, oldest first.",
                "parameters": [
                    _query(
                        "limit",
                        {**count, "maximum": MAX_OFFSET, "default": 20},
                        f"Page size; 0 or more than {MAX_LIMIT} mean {MAX_LIMIT}.",
                    ),
                    _query("offset", {**count, "maximum": MAX_OFFSET, "default": 0}),
                    *(_query(f, {"type": "string"}) for f in _FILTERS[name]),
                ],
                "responses": {"200": _json(listing), **_errors(400, 403, 503)},
            },
            "post": {
                "tags": tags,
                "summary": f"Create a {name}.",
                "requestBody": {"required": True, "content": body},
                "responses": {
                    "201": _json(ref("collectionCreated" if name == "collection" else name), "Created"),
                    **_errors(400, 403, *((408, 413) if upload else ()), 415, 503),
                },
            },
        },
        f"/api/v0/{name}/{{object_id}}/": {
            "parameters": [object_id],
            "get": {
                "tags": tags,
                "summary": f"Read a {name}.",
                "responses": {"200": _json(ref(name)), **_errors(403, 404, 503)},
            },
            "put": {
                "tags": tags,
                "summary": f"Update a {name}.",
                "requestBody": {"required": True, "content": {"application/json": {"schema": partial}}},
                "responses": {"202": _json(ref(name), "Accepted"), **_errors(400, 403, 404, 415, 503)},
            },
            "delete": {
                "tags": tags,
                "summary": f"Delete a {name} and what it holds.",
                "responses": {"204": {"description": "Deleted"}, **_errors(403, 404, 503)},
            },
        },
    }


def _get(tag: str, summary: str, responses: Schema, parameters: list[Schema] | None = None) -> Schema:
    operation: Schema = {"tags": [tag], "summary": summary, "responses": responses, "security": []}
    if parameters:
        operation["parameters"] = parameters
    return {"get": operation}


def _path(name: str, schema: Schema | None = None) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": schema or ID}


def _public_paths() -> dict[str, Schema]:
    text = {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
    status = obj({"status": {"type": "string"}, "reason": {"type": "string"}}, ["status"])
    image = {
        "description": "OK",
        "content": {m: {"schema": {"type": "string", "format": "binary"}} for m in ("image/jpeg", "image/png")},
    }
    return {
        "/api/v0/item/{item}/{field}": _get(
            "files",
            "An item's custom or tracking text (the URL search results carry without embed_custom).",
            {"200": text, **_errors(404)},
            [_path("item"), _path("field", {"enum": ["custom", "tracking"]})],
        ),
        "/files/{collection}/{item}/{image}/{name}": _get(
            "files",
            "A reference image's original or thumbnail (links in image objects and results).",
            {"200": image, **_errors(404)},
            [
                *map(_path, ("collection", "item", "image")),
                _path("name", {"enum": sorted(SERVED)}),
            ],
        ),
        "/healthz": _get("operations", "200 while the process serves.", {"200": _json(status)}),
        "/readyz": _get(
            "operations",
            "200 when Redis answers and every shard has a live worker.",
            {"200": _json(status), "503": _json(status, "Not ready: `reason` says why.")},
        ),
        "/metrics": _get("operations", "Prometheus text format.", {"200": text}),
        "/openapi.json": _get("documentation", "This document.", {"200": _json({"type": "object"})}),
        "/docs": _get("documentation", "This document, browsable (Swagger UI).", {"200": {"description": "HTML"}}),
    }


def _description(settings: Settings) -> str:
    return (
        "CraftAR-compatible image recognition: the full contract, with examples, is `docs/API.md` in the "
        'repository. Errors are `{"error": {"code", "message"}}`; clients parse `code`.\n\n'
        f"Limits of this server: uploads up to {settings.max_upload_bytes} bytes and {settings.max_pixels} pixels, "
        f"query images with a shorter side of at least {settings.min_side} px, searches answered within "
        f"{settings.deadline_ms} ms.\n\n"
        "A path that differs from a served one only by its trailing slash is answered `307` with `Location` and "
        "a `TRAILING_SLASH` error body."
    )


def document(settings: Settings) -> Schema:
    """The whole OpenAPI 3.1 document, with this server's limits in its description."""
    paths: dict[str, Schema] = {"/v1/search": _search(v2=False), "/v2/search": _search(v2=True)}
    for resource in RESOURCES:
        paths.update(_resource_paths(resource.name))
    paths.update(_public_paths())
    return {
        "openapi": "3.1.0",
        "info": {"title": "recog", "version": version("recog"), "description": _description(settings)},
        "paths": paths,
        "components": components(),
        # Management needs an API key; search (its token is a form field), files and operations do not.
        "security": [{"apiKey": []}, {"bearer": []}],
    }


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(document(services(request).settings))


routes = [Route("/openapi.json", openapi_json, methods=["GET"])]
