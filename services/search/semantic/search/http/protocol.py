"""The HTTP/1.1 connection: uvicorn's httptools protocol with a bound on a request's head.

llhttp (under httptools) keeps no limit on the request line and headers, and uvicorn adds
none: a client could send an endless header and the process would keep it all in memory
(200 MB of one header line were accepted, and answered). Here the bytes received while a
request's head is incomplete are counted (each read that ends inside a head); past
``max_head_bytes`` the connection gets 431 (a problem document, as every other error) and
is closed. At most one read of the socket beyond the limit is ever held.
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from semantic.search.http.problems import MEDIA_TYPE, Kind, Problem

HEAD_TOO_LARGE = Kind(431, "Request header fields too large", "INVALID_ARGUMENT")


def bounded_protocol(max_head_bytes: int) -> type[HttpToolsProtocol]:
    """uvicorn's ``http`` protocol class, with a request's head at most ``max_head_bytes``
    (request line and headers, as received)."""

    class BoundedHead(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._in_head = False
            self._heads = 0
            self._head_bytes = 0

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
            self._head_bytes = 0
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._heads += 1
            super().on_headers_complete()

        def _refuse(self) -> None:
            detail = f"request line and headers: more than {max_head_bytes} bytes"
            body = json.dumps(Problem(HEAD_TOO_LARGE, detail).body()).encode()
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                + f"content-type: {MEDIA_TYPE}\r\n".encode()
                + f"content-length: {len(body)}\r\n".encode()
                + b"connection: close\r\n\r\n"
                + body
            )
            self.transport.close()

    return BoundedHead
