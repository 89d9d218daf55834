"""The floor the front end is compared with: a bare Starlette endpoint under uvicorn that does what
every search must do and nothing else (read the multipart form with the photo, one Redis round
trip, a small JSON answer). `bench.frontend` serves it with the same uvicorn as `recog serve`.

    uvicorn bench.bare_app:create_app --factory   (REDIS_URL: the Redis to ping)
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


def create_app() -> Starlette:
    connection = aioredis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))

    async def search(request: Request) -> JSONResponse:
        form = await request.form()
        image = form.get("image")
        size = len(await image.read()) if isinstance(image, UploadFile) else 0
        await form.close()
        await connection.ping()
        return JSONResponse({"search_time": 0, "results": [], "bytes": size})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await connection.aclose()

    return Starlette(routes=[Route("/v1/search", search, methods=["POST"])], lifespan=lifespan)
