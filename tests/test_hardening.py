"""HTTP requests a hostile client might send, refused at the door."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

from shared.testing.stack import Stack


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
