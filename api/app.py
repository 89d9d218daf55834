"""Builds the Starlette application and owns what lives as long as the process: settings, the Redis
connection pool, the blob store, the search dispatcher and the upload ingester (one `api.services.Services`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from rq import Queue
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from api import console, docs, files, management, openapi, ops, search
from api.dispatch import Dispatcher
from api.errors import EXCEPTION_HANDLERS
from api.hosts import AllowedHosts
from api.ingest import Ingester
from api.metrics import MetricsMiddleware
from api.services import Services
from api.tokens import TokenCache
from shared import queues
from shared.apikeys import ensure_admin_key
from shared.blobs import LocalBlobStore
from shared.config import Settings
from shared.redaction import redacted_url

log = logging.getLogger("recog.api")


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Every search or upload in flight may hold one connection for its blocking reply read, plus a few for
        # token and catalogue reads; redis-py 8 raises when its pool is exhausted, so size it here.
        # A frozen Redis must not hold a request for ever: reads give up a little after the longest
        # blocking pop a search makes (its deadline); searches are cut at their deadline anyway.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.redis_url,
            max_connections=settings.max_in_flight + settings.max_uploads_in_flight + 32,
            timeout=settings.deadline_ms / 1000,
            socket_timeout=settings.deadline_ms / 1000 + 2,
            socket_connect_timeout=2,
        )
        redis = aioredis.Redis(connection_pool=pool)
        dispatcher = Dispatcher(settings, redis)
        running = Services(
            settings=settings,
            redis=redis,
            blobs=LocalBlobStore(settings.data_dir / "blobs"),
            tokens=TokenCache(redis, settings.token_cache_seconds),
            dispatcher=dispatcher,
            ingester=Ingester(settings, redis, dispatcher.admission),
        )
        app.state.services = running
        await redis.sadd(Queue.redis_queues_keys, *queues.every_key(settings.shards))
        if settings.admin_api_key:
            await ensure_admin_key(redis, settings.admin_api_key)
        log.info(
            "API ready: redis %s, %d shards, deadline %d ms",
            redacted_url(settings.redis_url),
            settings.shards,
            settings.deadline_ms,
        )
        try:
            yield
        finally:
            running.dispatcher.close()
            await redis.aclose(close_connection_pool=True)

    routes: list[BaseRoute] = [
        *ops.routes,
        *search.routes,
        *management.routes,
        *files.routes,
        *openapi.routes,
        *docs.routes,
        *console.routes(settings),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=EXCEPTION_HANDLERS)
    app.router.redirect_slashes = False  # api.errors redirects with a JSON body instead (api.slashes)
    app.add_middleware(MetricsMiddleware)
    if settings.allowed_hosts:
        app.add_middleware(AllowedHosts, hosts=settings.allowed_hosts)
    elif not settings.public_url:
        log.warning(
            "links in responses follow each request's Host header: set RECOG_PUBLIC_URL or RECOG_ALLOWED_HOSTS "
            "when the API is reachable from the internet"
        )
    return app
