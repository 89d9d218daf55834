"""A closed-loop load of searches that costs its machine little: HTTP/1.1 over asyncio streams.

httpx spends about 0.8 ms of CPU on each multipart search it sends; at 10x overload on a 2-core
machine that is half a core taken from the workers being measured (clients are phones, not
processes beside the workers). These clients send requests built once (the multipart body of each
photo) on keep-alive connections, read the status line, the headers and the body, and parse only
200s, on uvloop: a few tens of microseconds a request. Same interface and outcomes as
`bench.harness.Load`.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import uvloop
from tqdm import tqdm

from bench.harness import Load, Outcome, Search


def _request(host: str, search: Search) -> bytes:
    """The bytes of POST /v1/search with the search's token and photo."""
    boundary = uuid.uuid4().hex
    body = b"".join(
        [
            f'--{boundary}\r\nContent-Disposition: form-data; name="token"\r\n\r\n{search.token}\r\n'.encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'.encode(),
            b"Content-Type: image/jpeg\r\n\r\n",
            search.image,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    head = (
        f"POST /v1/search HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _outcome(search: Search, sent: float, status: int, headers: dict[str, str], body: bytes) -> Outcome:
    answered = time.monotonic()
    if status != 200:
        return Outcome(sent, answered, status, search.tag)
    document = json.loads(body)
    found = None
    if search.expected is not None:
        found = [r["item"]["uuid"] for r in document["results"][:1]] == [search.expected]
    timing = re.search(r"worker;dur=([0-9.]+)", headers.get("server-timing", ""))
    worker_ms = float(timing[1]) if timing else None
    return Outcome(sent, answered, status, search.tag, found, float(document["search_time"]), worker_ms)


@dataclass
class RawLoad(Load):
    """`bench.harness.Load`'s closed loop (same fields, same outcomes) on raw HTTP/1.1 connections."""

    def run(self) -> list[Outcome]:
        uvloop.run(self._run())
        return self.outcomes

    async def _run(self) -> None:
        address = urlsplit(self.url)
        host, port = address.hostname or "127.0.0.1", address.port or 80
        built = [(search, _request(f"{host}:{port}", search)) for search in self.searches]
        end = time.monotonic() + self.seconds
        rng = random.Random(1)
        sent = 0

        def more() -> bool:
            return time.monotonic() < end and not self.stop.is_set() and (self.limit is None or sent < self.limit)

        async def client() -> None:
            nonlocal sent
            reader, writer = await asyncio.open_connection(host, port)
            try:
                while more():
                    sent += 1
                    search, request = rng.choice(built)
                    started = time.monotonic()
                    try:
                        writer.write(request)
                        outcome = await asyncio.wait_for(self._answer(reader, search, started), self.timeout)
                    except (OSError, EOFError, IndexError, ValueError, TimeoutError):
                        # No (complete) HTTP answer: counted as status 0, on a new connection.
                        outcome = Outcome(started, time.monotonic(), 0, search.tag)
                        writer.close()
                        reader, writer = await asyncio.open_connection(host, port)
                    self.outcomes.append(outcome)
            finally:
                writer.close()

        async def ticker(bar: tqdm[None]) -> None:
            while more():
                await asyncio.sleep(1)
                bar.update(1)

        with tqdm(total=math.ceil(self.seconds) if self.limit is None else None, desc=self.desc, unit="s") as bar:
            await asyncio.gather(ticker(bar), *(client() for _ in range(self.concurrency)))

    async def _answer(self, reader: asyncio.StreamReader, search: Search, started: float) -> Outcome:
        status = int((await reader.readline()).split()[1])
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return _outcome(search, started, status, headers, body)
