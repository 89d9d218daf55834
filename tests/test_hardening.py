"""HTTP requests a hostile client might send, refused at the door."""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from shared.heartbeats import live_serving
from shared.testing import imagegen
from shared.testing.stack import Stack, stack_env, start_api
from tests.stackclient import make_collection

BOUNDARY = b"b0undary"


def test_content_length_with_chunked_encoding_is_refused(stack: Stack) -> None:
    """Both framings in one request is how requests are smuggled past a proxy: a 400, connection closed."""
    address = urlsplit(stack.url)
    request = (
        b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    )
    with socket.create_connection((address.hostname, address.port), timeout=5) as connection:
        connection.sendall(request)
        answer = connection.recv(4096)
    assert answer.startswith(b"HTTP/1.1 400 ")


@pytest.fixture
def impatient(redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    """An API that gives headers 1 s and bodies 2 s (no worker: these requests never get that far)."""
    env = stack_env(redis_url, tmp_path, RECOG_HEADER_TIMEOUT_SECONDS="1", RECOG_BODY_TIMEOUT_SECONDS="2")
    api = start_api(env)
    try:
        yield api
    finally:
        api.stop()


def read_response(connection: socket.socket) -> bytes:
    """One whole HTTP response (head and Content-Length body), however many segments it came in."""
    data = b""
    while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + _content_length(data):
        received = connection.recv(4096)
        if not received:
            break
        data += received
    return data


def _content_length(data: bytes) -> int:
    found = re.search(rb"\r\ncontent-length: *(\d+)\r\n", data, re.IGNORECASE)
    return int(found[1]) if found else 0


def closed_by_server(connection: socket.socket) -> bool:
    try:
        return connection.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_connections_that_trickle_their_headers_are_closed(impatient: Stack) -> None:
    address = urlsplit(impatient.url)
    trickling = [socket.create_connection((address.hostname, address.port), timeout=0.1) for _ in range(20)]
    try:
        started = time.monotonic()
        for connection in trickling:
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        while time.monotonic() - started < 3 and not all(closed_by_server(c) for c in trickling):
            for connection in trickling:
                with contextlib.suppress(OSError):
                    connection.sendall(b"s")  # a byte at a time, never the end of the headers
            time.sleep(0.3)
        assert all(closed_by_server(c) for c in trickling)
    finally:
        for connection in trickling:
            connection.close()
    assert httpx.get(f"{impatient.url}/healthz").status_code == 200  # others are served as before


def test_a_body_that_trickles_is_a_408(impatient: Stack) -> None:
    address = urlsplit(impatient.url)
    head = (
        b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        b"Content-Length: 100000\r\n\r\n--b\r\n"
    )
    with socket.create_connection((address.hostname, address.port), timeout=5) as connection:
        started = time.monotonic()
        connection.sendall(head)
        answer = read_response(connection)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"REQUEST_TIMEOUT" in answer
    assert time.monotonic() - started < 4


def search_parts(token: str, image_size: int) -> tuple[bytes, bytes]:
    """A search request's bytes up to its image part's data (a `token` part first, as clients send
    it), and the bytes that close the body after `image_size` bytes of image."""
    opening = (
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="token"\r\n\r\n' + token.encode() + b"\r\n"
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n"
    )
    closing = b"\r\n--" + BOUNDARY + b"--\r\n"
    head = (
        b"POST /v1/search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=" + BOUNDARY + b"\r\n"
        b"Content-Length: " + str(len(opening) + image_size + len(closing)).encode() + b"\r\n\r\n"
    )
    return head + opening, closing


@pytest.mark.parametrize(("token", "status", "code"), [("0" * 16, 403, b"TOKEN_INVALID"), ("abc", 400, b"TOKEN_WRONG")])
def test_a_bad_token_is_refused_before_the_image_is_read(stack: Stack, token: str, status: int, code: bytes) -> None:
    """The client sends the token part and the first 64 KiB of a 7 MiB image, then waits: the answer
    comes before the rest of the upload, which is never sent."""
    opening, _ = search_parts(token, 7 * 1024 * 1024)
    address = urlsplit(stack.url)
    with socket.create_connection((address.hostname, address.port), timeout=5) as connection:
        connection.sendall(opening + bytes(64 * 1024))
        answer = read_response(connection)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()) and code in answer, answer


def test_a_valid_token_waits_for_the_whole_image(stack: Stack) -> None:
    """The same request with a token that exists is read to its end, and searched."""
    with stack.admin() as admin:
        _, token = make_collection(admin)
    image = imagegen.encode_jpeg(imagegen.textured(7, 640, 480), 85)
    opening, closing = search_parts(token, len(image))
    address = urlsplit(stack.url)
    with socket.create_connection((address.hostname, address.port), timeout=0.5) as connection:
        connection.sendall(opening + image[:1024])
        with pytest.raises(TimeoutError):
            connection.recv(4096)  # no answer while the image is incomplete
        connection.settimeout(10)
        connection.sendall(image[1024:] + closing)
        answer = read_response(connection)
    assert answer.startswith(b"HTTP/1.1 200 "), answer


def test_readyz_and_metrics_name_no_worker(stack: Stack, redis_url: str) -> None:
    """Anyone who reaches the API may read these: shard numbers and counts, never a worker's name
    (`recog-HOST-PID-…`), host or pid; those are for `recog status`, which reads Redis."""
    with redis.Redis.from_url(redis_url) as db:
        names = list(live_serving(db))
    assert names
    readyz, metrics = httpx.get(f"{stack.url}/readyz"), httpx.get(f"{stack.url}/metrics")
    assert readyz.status_code == 200 and metrics.status_code == 200
    for body in (readyz.text, metrics.text):
        assert not any(name in body for name in names)
        assert not re.search(r'\b(host|hostname|pid|worker|instance)="', body)
