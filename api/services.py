"""What every request handler uses, typed: settings, the Redis pool, the blob store, the token
cache, the search dispatcher and the upload ingester, built once per process by the application's lifespan.

Starlette's `app.state` is untyped; handlers read these through `services(request)` instead, so
mypy checks every use.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from starlette.requests import Request

from api.dispatch import Dispatcher
from api.ingest import Ingester
from api.tokens import TokenCache
from shared.blobs import BlobStore
from shared.config import Settings


@dataclass(frozen=True)
class Services:
    settings: Settings
    redis: aioredis.Redis
    blobs: BlobStore
    tokens: TokenCache
    dispatcher: Dispatcher
    ingester: Ingester


def services(request: Request) -> Services:
    """The services of the application serving `request`."""
    found = request.app.state.services
    if not isinstance(found, Services):
        raise RuntimeError("the application was not started through its lifespan (api.app.create_app)")
    return found
