"""Operations routes: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api import metrics
from api.services import services


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Ready when Redis answers and every shard has at least one live worker."""
    state = services(request)
    try:
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
    state = services(request)
    await metrics.refresh(state.redis, state.settings.shards)
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


routes = [
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/metrics", metrics_endpoint),
]
