"""`POST /api/v0/image/`: a reference image becomes searchable.

The upload is checked with the same rules as a search query (`shared.imagecheck`), then, in a
thread because it is CPU work: decoded, its features extracted and its thumbnails made. The files
are written before the catalogue entry, so an image that exists in Redis always has its files; if
the catalogue write fails (the item was deleted meanwhile) the files are removed again.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import anyio.to_thread
from PIL import Image, ImageOps
from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request

from api.bodies import reference
from api.forms import read_form
from api.services import services
from api.upload_limits import read_image
from shared import catalog
from shared.config import Settings
from shared.errors import ImageNoDetails, ValidationError, WrongContentType
from shared.ids import new_id
from shared.imagecheck import inspect
from workers import tuning
from workers.decode import decode_gray
from workers.features import extract, extract_reference, recognisability

# Square thumbnails, centre-cropped (the whole square shows the object, no padding bars).
THUMB_SIZES = {"thumb_120.jpg": 120, "thumb_60.jpg": 60}
ORIGINAL = "original.jpg"  # the uploaded bytes as sent (JPEG or PNG); `api.files` sniffs the type
THUMB_QUALITY = 85
ITEM_REFERENCE = reference("item")


@dataclass(frozen=True)
class Prepared:
    """An upload after the CPU work: serialised features, the digest of the settings they were
    extracted with, their 0..5 rating, thumbnail JPEGs by name."""

    features: bytes
    extraction: str
    recognisability: int
    thumbnails: dict[str, bytes]


def image_dir(collection: str, item: str = "", image: str = "") -> str:
    """The blob prefix of a collection, an item or an image (`{collection}/{item}/{image}`)."""
    return "/".join(part for part in (collection, item, image) if part)


def thumbnails(data: bytes) -> dict[str, bytes]:
    """JPEG thumbnails of an already-checked image, upright per its EXIF orientation."""
    with Image.open(io.BytesIO(data)) as opened:
        largest = max(THUMB_SIZES.values())
        opened.draft("RGB", (2 * largest, 2 * largest))  # JPEG: decode at a reduced scale, much faster
        upright = ImageOps.exif_transpose(opened).convert("RGB")
    out = {}
    for name, side in THUMB_SIZES.items():
        buffer = io.BytesIO()
        ImageOps.fit(upright, (side, side), Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=THUMB_QUALITY)
        out[name] = buffer.getvalue()
    return out


def prepare(data: bytes, settings: Settings) -> Prepared:
    """All of an upload's CPU work; raises the contract's IMAGE_* errors."""
    inspect(data, settings)
    recognition = tuning.DEFAULT  # what the workers index and search with
    gray = decode_gray(data, settings=recognition)
    # Stars rate the picture as a camera sees it face-on; what is indexed adds tilted views
    # (whose features would inflate the rating), so the upright pass runs twice: ~6 ms an upload.
    rating = recognisability(extract(gray, settings=recognition), settings=recognition)
    if rating == 0:
        raise ImageNoDetails("The image has too few details to be recognised; upload a sharper or more textured image.")
    features = extract_reference(gray, settings=recognition).to_bytes()
    return Prepared(features, tuning.extraction_id(recognition), rating, thumbnails(data))


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
    settings = state.settings
    blobs = state.blobs
    item_id, data = await _read_upload(request, settings)
    item = await catalog.get(state.redis, catalog.ITEM, item_id, field="item")
    prepared = await anyio.to_thread.run_sync(prepare, data, settings)
    image_id = new_id()
    prefix = image_dir(item["collection"], item_id, image_id)

    def store() -> None:
        for name, blob in {ORIGINAL: data, **prepared.thumbnails}.items():
            blobs.put(f"{prefix}/{name}", blob)

    await anyio.to_thread.run_sync(store)
    try:
        return await catalog.create_image(
            state.redis,
            image_id=image_id,
            item_id=item_id,
            recognisability=prepared.recognisability,
            features=prepared.features,
            extraction=prepared.extraction,
            shards=settings.shards,
        )
    except BaseException:
        await anyio.to_thread.run_sync(blobs.delete_prefix, prefix)
        raise
