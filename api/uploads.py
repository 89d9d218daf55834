"""`POST /api/v0/image/`: a reference image becomes searchable.

The front end checks the upload's header with the same rules as a search query
(`shared.imagecheck`: size, format, pixels; no pixels decoded), stores the original in the blob
store, and has a worker do the CPU work (`api.ingest`, `workers.ingest`: opacity, features,
rating, thumbnails, written beside the original). Only then is the catalogue entry written, with
the `add` event that makes workers index it, so an image that exists in Redis always has its
files; if anything fails on the way (an IMAGE_* error, no worker in time, the item deleted
meanwhile) the files are removed again. A picture already in the collection (the same bytes) is
refused: a second copy under another item would shadow the first in every search.
"""

from __future__ import annotations

import anyio.to_thread
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from api.bodies import reference
from api.forms import read_form
from api.services import Services, services
from api.upload_limits import read_image
from shared import catalog
from shared.blobs import ORIGINAL, image_prefix
from shared.config import Settings
from shared.errors import ValidationError, WrongContentType
from shared.ids import new_id
from shared.imagecheck import inspect

ITEM_REFERENCE = reference("item")


def _upload_fields(form: FormData) -> tuple[str, UploadFile]:
    """The item id and the file part, or one VALIDATION_ERROR naming every bad field."""
    details: dict[str, str] = {}
    item_id = ""
    item_value = form.get("item")
    if item_value is None:
        details["item"] = "required"
    else:
        try:
            item_id = ITEM_REFERENCE(item_value)
        except ValueError as exc:
            details["item"] = str(exc)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        details["file"] = "required (a file part)"
    if details:
        raise ValidationError(f"Invalid fields: {', '.join(sorted(details))}; see 'details'.", details=details)
    assert isinstance(upload, UploadFile)
    return item_id, upload


async def _read_upload(request: Request, settings: Settings) -> tuple[str, bytes]:
    """The item id and the file's bytes from the multipart body."""
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() != "multipart/form-data":
        raise WrongContentType("Upload images as multipart/form-data with the fields 'item' and 'file'.")
    form = await read_form(request, settings)
    try:
        item_id, upload = _upload_fields(form)
        data = await read_image(upload, settings)
    finally:
        await form.close()  # spooled parts are temporary files
    return item_id, data


async def create_image(request: Request) -> catalog.Record:
    state = services(request)
    item_id, data = await _read_upload(request, state.settings)
    inspect(data, state.settings, opacity=False)  # the header only: refused before anything is stored
    item = await catalog.get(state.redis, catalog.ITEM, item_id, field="item")
    async with state.ingester.slot():
        return await _store(state, item["collection"], item_id, data)


async def _store(state: Services, collection: str, item_id: str, data: bytes) -> catalog.Record:
    """The original stored, prepared by a worker, then recorded; its files removed on any failure."""
    sha256 = catalog.picture_digest(data)
    await catalog.refuse_duplicate(state.redis, collection, sha256)  # before any work; again when recorded
    image_id = new_id()
    prefix = image_prefix(collection, item_id, image_id)
    await anyio.to_thread.run_sync(state.blobs.put, f"{prefix}/{ORIGINAL}", data)
    try:
        rating = await state.ingester.prepare(collection, item_id, image_id)
        return await catalog.create_image(
            state.redis,
            image_id=image_id,
            item_id=item_id,
            recognisability=rating,
            sha256=sha256,
            shards=state.settings.shards,
            part_images=state.settings.part_images,
        )
    except BaseException:
        await anyio.to_thread.run_sync(state.blobs.delete_prefix, prefix)
        raise
