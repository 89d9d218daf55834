"""Operations routes: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api import metrics
from api.services import services

log = logging.getLogger("recog.api")
# Health and metrics reads give up on Redis after this long: a probe must answer, not hang.
_REDIS_SECONDS = 1.0


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Ready when Redis answers and every shard has at least one live worker."""
    state = services(request)
    try:
        async with asyncio.timeout(_REDIS_SECONDS):
            await state.redis.ping()
            workers = await metrics.live_workers(state.redis, state.settings.shards)
    except Exception as exc:  # noqa: BLE001 - any Redis failure means not ready, whatever its type
        return JSONResponse(
            {"status": "unavailable", "reason": f"Redis does not answer: {type(exc).__name__}"}, status_code=503
        )
    orphans = sorted(shard for shard, beats in workers.items() if not beats)
    if orphans:
        reason = f"no live worker serves shard(s) {', '.join(map(str, orphans))}"
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
    return JSONResponse({"status": "ready"})


async def metrics_endpoint(request: Request) -> Response:
    """This process's metrics, with the gauges read from Redis when it answers in time; without
    them (their last values) when it does not, so a Redis outage is not taken for the API's."""
    state = services(request)
    try:
        async with asyncio.timeout(_REDIS_SECONDS):
            await metrics.refresh(state.redis, state.settings.shards)
        metrics.REDIS_UP.set(1)
    except (RedisError, TimeoutError) as exc:
        metrics.REDIS_UP.set(0)
        log.warning("/metrics without the queue and worker gauges: Redis failed: %s: %s", type(exc).__name__, exc)
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


routes = [
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/metrics", metrics_endpoint),
]
