"""The HTTP/1.1 connection: uvicorn's httptools protocol with a bound on a request's head.

llhttp (under httptools) keeps no limit on the request line and headers, and uvicorn adds
none: a client could send an endless header and the process would keep it all in memory
(200 MB of one header line were accepted, and answered). Here the bytes received while a
request's head is incomplete are counted (each read that ends inside a head), and so are
the request line and headers as the parser hands them over (a head read at once); past
``max_head_bytes`` the connection gets 431 (a problem document, as every other error) and
is closed. At most one read of the socket beyond the limit is ever held. A request the
parser refuses (a bad chunk size, two Content-Length headers, an unknown method) gets a 400
problem document too, not uvicorn's plain text.
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from semantic.search.http.problems import INVALID, MEDIA_TYPE, Kind, Problem

HEAD_TOO_LARGE = Kind(431, "Request header fields too large", "INVALID_ARGUMENT")


class HeadTooLarge(Exception):
    """Raised from a parser callback: the head passed the limit (the parser stops)."""


def bounded_protocol(max_head_bytes: int) -> type[HttpToolsProtocol]:
    """uvicorn's ``http`` protocol class, with a request's head at most ``max_head_bytes``
    (request line and headers, as received)."""

    class BoundedHead(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = False
            self._heads = 0
            self._head_bytes = 0  # received in reads that ended inside the head
            self._head_size = 0  # the parsed request line and headers
            self._too_large = False

        def data_received(self, data: bytes) -> None:
            heads = self._heads
            super().data_received(data)
            # Counted: a read that leaves a request's head unfinished (no head ended in it).
            if not self._in_head or self._heads != heads or self.transport.is_closing():
                return
            self._head_bytes += len(data)
            if self._head_bytes > max_head_bytes:
                self._refuse()

        def on_message_begin(self) -> None:
            self._in_head = True
            self._head_bytes = self._head_size = 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._grow(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._grow(len(name) + len(value) + 4)  # ": " and CRLF
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._heads += 1
            super().on_headers_complete()

        def _grow(self, size: int) -> None:
            """Count parsed head bytes; past the limit, stop parsing (the parser hands the
            error to :meth:`send_400_response`, which answers 431)."""
            self._head_size += size
            if self._head_size > max_head_bytes:
                self._too_large = True
                raise HeadTooLarge

        def send_400_response(self, msg: str) -> None:
            """uvicorn's answer to a request the parser refused, as a problem document."""
            if self._too_large:
                self._refuse()
                return
            self._answer(400, "Bad Request", Problem(INVALID, f"request: {msg}"))

        def _refuse(self) -> None:
            detail = f"request line and headers: more than {max_head_bytes} bytes"
            self._answer(431, "Request Header Fields Too Large", Problem(HEAD_TOO_LARGE, detail))

        def _answer(self, status: int, reason: str, problem: Problem) -> None:
            body = json.dumps(problem.body()).encode()
            self.transport.write(
                f"HTTP/1.1 {status} {reason}\r\n".encode()
                + f"content-type: {MEDIA_TYPE}\r\n".encode()
                + f"content-length: {len(body)}\r\n".encode()
                + b"connection: close\r\n\r\n"
                + body
            )
            self.transport.close()

    return BoundedHead
