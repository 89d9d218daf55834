"""The v0 management API: `/api/v0/{collection,item,image,token}/` and `/api/v0/<resource>/<id>/`.

The five calls (list, read, create, update, delete) are written once; what differs between the
resources is data in `api.resources.RESOURCES`. Every call needs an API key.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from api import bodies
from api.auth import require_api_key
from api.resources import RESOURCES, Resource, render
from api.services import services
from api.urls import base_url
from shared import catalog
from shared.catalog import Record
from shared.errors import NotFound, ValidationError

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
# Far beyond any listing; bounds what reaches Redis (whose indexes are 64-bit).
MAX_OFFSET = 1_000_000_000


def _count(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    # isascii: str.isdigit also accepts digits of other scripts and superscripts ("²"), which int() refuses.
    if not (raw.isascii() and raw.isdigit()):
        raise ValidationError(f"'{name}' must be a whole number.", details={name: "must be a non-negative integer"})
    if len(raw) > len(str(MAX_OFFSET)) or int(raw) > MAX_OFFSET:
        raise ValidationError(f"'{name}' is too large.", details={name: f"must be at most {MAX_OFFSET}"})
    return int(raw)


def _page_url(request: Request, offset: int, limit: int) -> str:
    # Never the API key: links are logged, shared and cached; the client adds its own credentials.
    query = {k: v for k, v in request.query_params.items() if k != "api_key"}
    query.update(limit=str(limit), offset=str(offset))
    return f"{base_url(request)}{request.url.path}?{urlencode(query)}"


async def list_objects(resource: Resource, request: Request) -> Response:
    await require_api_key(request)
    params = request.query_params
    # limit=0 means "as many as allowed", as in the service this API follows.
    limit = min(_count(params, "limit", DEFAULT_LIMIT) or MAX_LIMIT, MAX_LIMIT)
    offset = _count(params, "offset", 0)
    records, total = await resource.lister(request, params, offset, limit)
    base = base_url(request)
    meta = {
        "limit": limit,
        "offset": offset,
        "total_count": total,
        "next": _page_url(request, offset + limit, limit) if offset + limit < total else None,
        "previous": _page_url(request, max(offset - limit, 0), limit) if offset > 0 else None,
    }
    return JSONResponse({"meta": meta, "objects": [render(resource, record, base) for record in records]})


def _object_id(resource: Resource, request: Request) -> str:
    object_id: str = request.path_params["object_id"]
    if not resource.id_pattern.fullmatch(object_id):
        raise NotFound(f"There is no {resource.name} {object_id[:40]!r}.")
    return object_id


async def get_object(resource: Resource, request: Request) -> Response:
    await require_api_key(request)
    record = await catalog.get(services(request).redis, resource.kind, _object_id(resource, request))
    return JSONResponse(render(resource, record, base_url(request)))


async def create_object(resource: Resource, request: Request) -> Response:
    await require_api_key(request)
    fields = (
        {}
        if resource.upload
        else bodies.clean(await bodies.read_json(request), resource.fields, partial=False, ignored=resource.ignored)
    )
    record = await resource.create(request, fields)
    return JSONResponse(render(resource, record, base_url(request)), status_code=201)


async def update_object(resource: Resource, request: Request) -> Response:
    await require_api_key(request)
    object_id = _object_id(resource, request)
    body = await bodies.read_json(request)
    current = await catalog.get(services(request).redis, resource.kind, object_id)
    changed = {name for name in resource.create_only if name in body and _differs(resource, name, body[name], current)}
    if changed:
        raise ValidationError(
            "Some fields cannot be changed after creation.", details=dict.fromkeys(changed, "cannot be changed")
        )
    writable = {name: f for name, f in resource.fields.items() if name not in resource.create_only}
    # create_only names were checked above: sending them back unchanged is fine.
    fields = bodies.clean(body, writable, partial=True, ignored=resource.ignored | resource.create_only)
    record = await resource.save(request, object_id, fields)
    return JSONResponse(render(resource, record, base_url(request)), status_code=202)


def _differs(resource: Resource, name: str, value: Any, current: Record) -> bool:
    try:
        return bool(resource.fields[name].check(value) != current[name])
    except ValueError:
        return True


async def delete_object(resource: Resource, request: Request) -> Response:
    await require_api_key(request)
    await resource.remove(request, _object_id(resource, request))
    return Response(status_code=204)


def _routes() -> list[BaseRoute]:
    """One route per path and method: Starlette picks the route whose method matches."""
    calls = (
        ("", "GET", list_objects),
        ("", "POST", create_object),
        ("{object_id}/", "GET", get_object),
        ("{object_id}/", "PUT", update_object),
        ("{object_id}/", "DELETE", delete_object),
    )
    return [
        Route(f"/api/v0/{resource.name}/{suffix}", functools.partial(handler, resource), methods=[method])
        for resource in RESOURCES
        for suffix, method, handler in calls
    ]


routes = _routes()
