"""Public downloads: reference images and thumbnails, and items' custom and tracking data.

These are the links search results carry, which mobile apps follow without an API key; the
unguessable 128-bit ids in the paths are what keeps them private. Every path component is checked
to be an id before it reaches the blob store, so no request can name a file outside it.
"""

from __future__ import annotations

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from api.services import services
from shared import catalog
from shared.blobs import SERVED, image_prefix
from shared.errors import NotFound
from shared.ids import is_id
from shared.imagecheck import PNG_SIGNATURE

# Files never change under a given URL (a new upload gets a new image id).
IMMUTABLE = {"Cache-Control": "public, max-age=31536000, immutable"}


async def image_file(request: Request) -> Response:
    params = request.path_params
    ids = (params["collection"], params["item"], params["image"])
    if not all(is_id(part) for part in ids) or params["name"] not in SERVED:
        raise NotFound("No such file.")
    data = await anyio.to_thread.run_sync(services(request).blobs.get, f"{image_prefix(*ids)}/{params['name']}")
    # Originals are stored as uploaded, so a PNG keeps its bytes under the `.jpg` name.
    media_type = "image/png" if data.startswith(PNG_SIGNATURE) else "image/jpeg"
    return Response(data, media_type=media_type, headers=IMMUTABLE)


async def item_text(request: Request) -> Response:
    """An item's `custom` or `tracking` string, as the URL in a search result promises."""
    item_id, name = request.path_params["item"], request.path_params["field"]
    if not is_id(item_id) or name not in ("custom", "tracking"):
        raise NotFound()
    item = await catalog.get(services(request).redis, catalog.ITEM, item_id)
    return PlainTextResponse(str(item.get(name, "")))


routes: list[BaseRoute] = [
    Route("/files/{collection}/{item}/{image}/{name}", image_file, methods=["GET"]),
    Route("/api/v0/item/{item}/{field}", item_text, methods=["GET"]),
]
