"""HTTP requests a hostile client might send, refused at the door."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from shared.testing.stack import Stack, stack_env, start_api


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
        answer = connection.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"REQUEST_TIMEOUT" in answer
    assert time.monotonic() - started < 4
