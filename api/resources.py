"""The four management resources as data: what each stores, accepts, filters on and links to.

`api.management` implements the five calls once over this table; only the steps that really
differ (unique collection names, image uploads, removing files on delete) are written per resource.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import anyio.to_thread
from starlette.requests import Request

from api import bodies, uploads
from api.bodies import Field
from api.services import services
from shared import catalog
from shared.blobs import ORIGINAL, THUMB_SIZES, image_prefix
from shared.catalog import Kind, Record
from shared.errors import ValidationError
from shared.ids import ID_RE, TOKEN_RE

# Fields that name another object: stored as ids, shown as resource URIs.
REFERENCES = ("collection", "item")

Lister = Callable[[Request, Mapping[str, str], int, int], Awaitable[tuple[list[Record], int]]]


def resource_uri(resource: str, object_id: str) -> str:
    return f"/api/v0/{resource}/{object_id}/"


@dataclass(frozen=True)
class Resource:
    """What one resource does differently from the others.

    `fields`: writable on create; `create_only`: those of them a PUT may not change (moving an item
    to another collection would strand its features). `create` and `save` (a partial update) take
    the checked fields, except that `upload` resources read their own multipart body; `links` adds
    computed URLs to the rendered object. `ignored`: names a JSON body may carry that are not
    stored (the object's read-only fields, and fields of the service this API follows that we do not
    keep); any other unknown name is a VALIDATION_ERROR.
    """

    name: str
    kind: Kind
    id_pattern: re.Pattern[str]
    fields: Mapping[str, Field]
    create: Callable[[Request, Record], Awaitable[Record]]
    save: Callable[[Request, str, Record], Awaitable[Record]]
    remove: Callable[[Request, str], Awaitable[None]]
    lister: Lister
    create_only: frozenset[str] = frozenset()
    upload: bool = False
    links: Callable[[Record, str], Record] | None = None
    ignored: frozenset[str] = frozenset()


def render(resource: Resource, record: Record, base: str) -> Record:
    out = {name: resource_uri(name, value) if name in REFERENCES else value for name, value in record.items()}
    out["resource_uri"] = resource_uri(resource.name, record[resource.kind.id_field])
    if resource.links:
        out.update(resource.links(record, base))
    return out


def _children_lister(kind: Kind) -> Lister:
    """Lists all objects of `kind`, or with `?<parent>__uuid=<id>` the children of one parent."""
    assert kind.parent is not None
    filter_name = f"{kind.parent.name}__uuid"
    check = bodies.reference(kind.parent.name)

    async def lister(request: Request, params: Mapping[str, str], offset: int, limit: int) -> tuple[list[Record], int]:
        value = params.get(filter_name)
        try:
            parent_id = check(value) if value is not None else None
        except ValueError as exc:
            raise ValidationError(f"Invalid filter '{filter_name}'.", details={filter_name: str(exc)}) from None
        return await catalog.page(services(request).redis, kind, offset=offset, limit=limit, parent=parent_id)

    return lister


async def _list_collections(
    request: Request, params: Mapping[str, str], offset: int, limit: int
) -> tuple[list[Record], int]:
    redis = services(request).redis
    name, contains = params.get("name"), params.get("name__contains")
    if name is None and contains is None:
        return await catalog.page(redis, catalog.COLLECTION, offset=offset, limit=limit)
    return await catalog.find_collections(redis, name=name, contains=contains, offset=offset, limit=limit)


async def _create_collection(request: Request, fields: Record) -> Record:
    """The new collection with `token` (our own field, in this answer only): the token created with
    it, so a client can search without listing tokens first."""
    state = services(request)
    record = await catalog.create_collection(state.redis, fields["name"], state.settings.shards)
    tokens, _ = await catalog.page(state.redis, catalog.TOKEN, offset=0, limit=1, parent=record["uuid"])
    return {**record, "token": tokens[0]["token"]} if tokens else record


async def _save_collection(request: Request, collection_id: str, fields: Record) -> Record:
    redis = services(request).redis
    if "name" in fields:
        return await catalog.rename_collection(redis, collection_id, fields["name"])
    return await catalog.get(redis, catalog.COLLECTION, collection_id)


def _creator(kind: Kind, defaults: Record) -> Callable[[Request, Record], Awaitable[Record]]:
    async def create(request: Request, fields: Record) -> Record:
        return await catalog.create_child(services(request).redis, kind, {**defaults, **fields})

    return create


def _saver(kind: Kind) -> Callable[[Request, str, Record], Awaitable[Record]]:
    async def save(request: Request, object_id: str, fields: Record) -> Record:
        return await catalog.update(services(request).redis, kind, object_id, fields)

    return save


async def _create_image(request: Request, fields: Record) -> Record:
    return await uploads.create_image(request)


async def _delete_files(request: Request, prefix: str) -> None:
    await anyio.to_thread.run_sync(services(request).blobs.delete_prefix, prefix)


async def _remove_collection(request: Request, collection_id: str) -> None:
    await catalog.delete_collection(services(request).redis, collection_id, services(request).settings.shards)
    await _delete_files(request, image_prefix(collection_id))


async def _remove_item(request: Request, item_id: str) -> None:
    item = await catalog.delete_item(services(request).redis, item_id, services(request).settings.shards)
    await _delete_files(request, image_prefix(item["collection"], item_id))


async def _remove_image(request: Request, image_id: str) -> None:
    image = await catalog.delete_image(services(request).redis, image_id, services(request).settings.shards)
    await _delete_files(request, image_prefix(image["collection"], image["item"], image_id))


async def _remove_token(request: Request, token: str) -> None:
    await catalog.delete_token(services(request).redis, token)


def _image_links(record: Record, base: str) -> Record:
    """The image's file URLs, and its SHA-256 in hex (kept shorter: `catalog.picture_digest`)."""
    prefix = f"{base}/files/{image_prefix(record['collection'], record['item'], record['uuid'])}"
    digest = {"sha256": catalog.digest_hex(record["sha256"])} if "sha256" in record else {}
    return {
        "file": f"{prefix}/{ORIGINAL}",
        **{name.removesuffix(".jpg"): f"{prefix}/{name}" for name in THUMB_SIZES},
        **digest,
    }


# Shown on every object, never written: a client may send back an object as it fetched it.
READ_ONLY = frozenset({"uuid", "resource_uri", "created_at"})

ITEM_FIELDS = {
    "collection": Field(bodies.reference("collection"), required=True),
    "name": Field(bodies.text(255, blank=False), required=True),
    "url": Field(bodies.text(2048)),
    "custom": Field(bodies.text()),
    "tracking": Field(bodies.text()),
    "content": Field(bodies.json_object),
    "trackable": Field(bodies.boolean),
}

RESOURCES = (
    Resource(
        name="collection",
        kind=catalog.COLLECTION,
        id_pattern=ID_RE,
        fields={"name": Field(bodies.text(255, blank=False), required=True)},
        create=_create_collection,
        save=_save_collection,
        remove=_remove_collection,
        lister=_list_collections,
        # offline: CraftAR's official client sends `"offline": false` with every new collection.
        ignored=READ_ONLY | {"token", "offline", "parts"},
    ),
    Resource(
        name="item",
        kind=catalog.ITEM,
        id_pattern=ID_RE,
        fields=ITEM_FIELDS,
        create=_creator(catalog.ITEM, catalog.ITEM_DEFAULTS),
        save=_saver(catalog.ITEM),
        remove=_remove_item,
        lister=_children_lister(catalog.ITEM),
        create_only=frozenset({"collection"}),
        ignored=READ_ONLY | {"tags"},  # CraftAR's tags: its clients may send them
    ),
    Resource(
        name="image",
        kind=catalog.IMAGE,
        id_pattern=ID_RE,
        fields={},  # nothing to change after the upload
        create=_create_image,
        save=_saver(catalog.IMAGE),
        remove=_remove_image,
        lister=_children_lister(catalog.IMAGE),
        upload=True,
        links=_image_links,
        ignored=READ_ONLY
        | {"item", "collection", "file", "thumb_120", "thumb_60", "status", "recognisability", "sha256", "part"},
    ),
    Resource(
        name="token",
        kind=catalog.TOKEN,
        id_pattern=TOKEN_RE,
        # rate_limit (our own): searches per second this token may make; null is unlimited.
        fields={
            "collection": Field(bodies.reference("collection"), required=True),
            "rate_limit": Field(bodies.optional_count(1, 100_000)),
        },
        create=_creator(catalog.TOKEN, {"rate_limit": None}),
        save=_saver(catalog.TOKEN),
        remove=_remove_token,
        lister=_children_lister(catalog.TOKEN),
        create_only=frozenset({"collection"}),
        ignored=READ_ONLY | {"token", "tags"},
    ),
)
