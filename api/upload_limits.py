"""The upload size limit (`RECOG_MAX_UPLOAD_BYTES`), checked in one place for search and
management uploads alike: on the declared length before the body is read, on the body as it is
read (chunked or not, it stops at the limit plus the form's overhead: nothing more is read or
spooled to disk), and on the file's bytes."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from starlette.datastructures import UploadFile
from starlette.requests import Request

from shared.config import Settings
from shared.errors import ImageTooLarge

# Room for the other fields and the multipart framing around the image.
FORM_OVERHEAD = 64 * 1024


def refuse_declared(request: Request, settings: Settings) -> None:
    """ImageTooLarge when the request's Content-Length already says the body is over the limit."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_upload_bytes + FORM_OVERHEAD:
        raise ImageTooLarge(f"The upload is larger than the {settings.max_upload_bytes} byte limit.")


async def bounded_body(request: Request, settings: Settings) -> AsyncGenerator[bytes, None]:
    """The request's body chunk by chunk; ImageTooLarge as soon as it passes the limit. (Its time
    is bounded by whoever reads it: `api.forms.read_form`.)"""
    limit = settings.max_upload_bytes + FORM_OVERHEAD
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ImageTooLarge(f"The upload is larger than the {settings.max_upload_bytes} byte limit.")
        yield chunk


async def read_image(upload: UploadFile, settings: Settings) -> bytes:
    """The uploaded file's bytes; ImageTooLarge if it holds more than the limit."""
    data = await upload.read(settings.max_upload_bytes + 1)
    if len(data) > settings.max_upload_bytes:
        raise ImageTooLarge(f"The image is larger than the {settings.max_upload_bytes} byte limit.")
    return data
