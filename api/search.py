"""`POST /v1/search` and `POST /v2/search`: validate cheaply, queue on the owning shard, answer.

Everything that can be refused without a worker is refused here (token, form, image header), so
workers only see images they can decode. The token comes first: a client without a valid one is
refused before its image is read when the token part comes first (as the official clients send
it), and whatever the order of the parts before anything else about its image is looked at.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from api import metrics
from api.forms import SearchForm, parse_search_form, read_form, search_token, well_formed_token
from api.render import results_v1, results_v2, thumb_template
from api.services import Services, services
from api.urls import base_url
from shared.catalog import get_items, item_image_ids
from shared.codec import Hit
from shared.errors import ServerBusy
from shared.imagecheck import inspect

# Past the deadline, what a search may still spend on Redis: its reply wait ends at the deadline
# itself (504 TIMEOUT), so only a Redis that stopped answering meets this bound.
_GRACE_SECONDS = 0.25


@dataclass(frozen=True)
class _Searched:
    form: SearchForm
    collection: str
    hits: list[Hit]
    started: float  # time.perf_counter() when the request reached the handler
    worker_ms: float  # the worker's own time for the search
    cutoff: float  # the event loop's time by which every Redis call of the search must end

    def headers(self) -> dict[str, str]:
        """`Server-Timing` (a standard header clients ignore) with the worker's share of `search_time`."""
        return {"Server-Timing": f'worker;dur={self.worker_ms:.1f};desc="recognition"'}

    def elapsed_ms(self) -> int:
        return round((time.perf_counter() - self.started) * 1000)


async def _search(request: Request) -> _Searched:
    try:
        return await _recognise(request, time.perf_counter())
    except ServerBusy:
        client = request.client
        await services(request).dispatcher.pacer.pace((client.host, client.port) if client else None)
        raise


async def _recognise(request: Request, started: float) -> _Searched:
    state = services(request)
    state.dispatcher.refuse_if_full()
    admitted: dict[str, str] = {}  # token -> its collection, once admitted

    async def admit(token: str) -> str:
        if token not in admitted:
            # Bounded like the search's other Redis calls: a frozen Redis is a 503, not a wait.
            async with asyncio.timeout(state.settings.deadline_ms / 1000 + _GRACE_SECONDS):
                admitted[token] = await state.tokens.admit(well_formed_token(token))
        return admitted[token]

    raw = await read_form(request, state.settings, early={"token": admit})
    try:
        collection = await admit(search_token(raw))  # already done if the token part came first
        form = await parse_search_form(raw, state.settings)
    finally:
        await raw.close()  # uploads past 1 MB are spooled to temporary files
    # The deadline runs from here: a slow upload (a phone on a poor network) is not the service's time.
    arrived = time.time()
    # Every Redis call of the search ends by then: a frozen Redis is a 503 at the deadline
    # (api.errors maps the TimeoutError), not a wait on a socket.
    cutoff = asyncio.get_running_loop().time() + state.settings.deadline_ms / 1000 + _GRACE_SECONDS
    async with asyncio.timeout_at(cutoff):
        return await _dispatch(state, form, collection, started, arrived, cutoff)


async def _dispatch(
    state: Services, form: SearchForm, collection: str, started: float, arrived: float, cutoff: float
) -> _Searched:
    # The header only, inline (tens of microseconds; a thread hop would cost more): the worker,
    # which decodes the pixels anyway, checks a PNG's opacity.
    inspect(form.image, state.settings, opacity=False)
    outcome = await state.dispatcher.search(
        form.token, collection, form.image, form.max_results, form.min_score, arrived
    )
    worker_ms = outcome.reply.timings.get("total", 0.0)
    metrics.observe_search(worker_ms, outcome.round_trip_ms)
    return _Searched(form, collection, outcome.reply.hits, started, worker_ms, cutoff)


async def search_v1(request: Request) -> JSONResponse:
    found = await _search(request)
    async with asyncio.timeout_at(found.cutoff):
        items = await get_items(services(request).redis, [h.item for h in found.hits])
    results = results_v1(found.hits, items, found.collection, found.form, base_url(request))
    return JSONResponse({"search_time": found.elapsed_ms(), "results": results}, headers=found.headers())


async def search_v2(request: Request) -> JSONResponse:
    found = await _search(request)
    redis = services(request).redis
    item_ids = [h.item for h in found.hits]
    async with asyncio.timeout_at(found.cutoff):
        items = await get_items(redis, item_ids)
        images = await item_image_ids(redis, item_ids)
    base = base_url(request)
    return JSONResponse(
        {
            "search_time": found.elapsed_ms(),
            "collection": {"uuid": found.collection, "image_template": thumb_template(base)},
            "results": results_v2(found.hits, items, images, found.form, base),
        },
        headers=found.headers(),
    )


routes = [
    Route("/v1/search", search_v1, methods=["POST"]),
    Route("/v2/search", search_v2, methods=["POST"]),
]
