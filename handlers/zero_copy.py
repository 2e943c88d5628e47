"""Sending a response body with sendfile(), past Tornado's IOStream, and telling Tornado it was sent."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from tornado.http1connection import HTTP1Connection
from tornado.iostream import IOStream
from tornado.web import RequestHandler

# The private attribute HTTP1Connection counts the body's bytes down in (from Content-Length); finish()
# refuses a response whose count is not zero. Tornado has no public way to say "these bytes went out
# another way", so mark_body_sent() sets it, and only it (tests/handlers/test_modelhub_sendfile.py fails
# loudly if an upgrade renames it; usable() then sends through Python instead).
_REMAINING = "_expected_content_remaining"


def usable(handler: RequestHandler) -> bool:
    """Whether this response's body may bypass the stream: plain HTTP/1 over a socket, nothing queued."""
    connection = handler.request.connection
    if not isinstance(connection, HTTP1Connection) or not hasattr(connection, _REMAINING):
        return False
    stream = connection.stream
    # Exactly IOStream: an SSLIOStream (TLS) encrypts in userspace, so the kernel cannot send the file.
    return type(stream) is IOStream and not stream.closed() and not stream.writing()


def headers_unchanged(handler: RequestHandler, length: int) -> bool:
    """After the headers went out: no output transform (gzip, chunking) altered how the body is framed."""
    headers = handler._headers  # what flush() sent, after the transforms
    return (headers.get("Content-Length") == str(length) and "Content-Encoding" not in headers
            and "Transfer-Encoding" not in headers and not handler.request.connection.stream.writing())


@contextmanager
def socket_fd(handler: RequestHandler) -> Iterator[int]:
    """A duplicate of the connection's socket descriptor, ours to wait on and close.

    A duplicate, so that Tornado closing its socket (the client went away) can never hand the number to
    another file while a sendfile() step still uses it, and our waiting for writability never touches
    Tornado's own registration of its descriptor.
    """
    fd = os.dup(handler.request.connection.stream.socket.fileno())
    try:
        yield fd
    finally:
        os.close(fd)


def mark_body_sent(connection: HTTP1Connection, count: int) -> None:
    """Tell the HTTP/1 connection that `count` body bytes went out past it (see _REMAINING)."""
    remaining = getattr(connection, _REMAINING)
    if remaining is None or remaining < count:
        raise RuntimeError(f"sent {count} body bytes but the connection expected {remaining}")
    setattr(connection, _REMAINING, remaining - count)
