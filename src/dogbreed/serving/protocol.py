"""uvicorn's HTTP/1.1 protocol with bounds on what a connection can hold without sending a request.

- A deadline for each request's head. uvicorn times out idle keep-alive connections, but any byte cancels
  that timer: a client that opens a connection and sends its headers one byte at a time (or never) would
  hold it for ever. Here every request head must be complete within `head_timeout_s` of the connection
  opening or of the previous response; the body has its own timeout in the app
  (`ServerSettings.body_timeout_s`).
- A bound on open connections that never refuses a request because of idle ones. uvicorn's
  `limit_concurrency` counts idle connections too, so a few hundred silent sockets made every request,
  `/ping` included, a 503. Here, past `max_connections` open connections, the connection idle the longest
  (no request in progress) is closed to make room; requests in flight are bounded by the app's admission
  (`server.max_queue`), not here.
- A request announcing both `Content-Length` and `Transfer-Encoding` is refused with 400 and the
  connection closed: a proxy in front that trusts the length would read the rest of the body as a second
  request (request smuggling). Protocol errors are answered in the app's JSON error format.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from dogbreed.serving.errors import BadRequestError


def ambiguous_framing(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Why a request's body length is ambiguous (RFC 9112 6.3), or None."""
    names = {name.lower() for name, _ in headers}
    if b"transfer-encoding" in names and b"content-length" in names:
        return (
            "request has both Content-Length and Transfer-Encoding headers: send one of them "
            "(the connection is closed)"
        )
    return None


class UnambiguousH11Connection(h11.Connection):
    """h11 lets Transfer-Encoding win over Content-Length; this refuses such a request instead."""

    refusal: str | None = None

    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, h11.Request):
            self.refusal = ambiguous_framing(list(event.headers))
            if self.refusal:
                raise h11.RemoteProtocolError(self.refusal, error_status_hint=400)
        return event


class BoundedH11Protocol(H11Protocol):
    head_timeout_s: float = 10.0
    max_connections: int | None = None
    # This server's idle connections, longest idle first (the class is made per server: bounded_protocol).
    idle: OrderedDict[BoundedH11Protocol, None] = OrderedDict()
    _head_deadline: asyncio.TimerHandle | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        size = self.config.h11_max_incomplete_event_size
        self.conn = (
            UnambiguousH11Connection(h11.SERVER)
            if size is None
            else UnambiguousH11Connection(h11.SERVER, max_incomplete_event_size=size)
        )

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._become_idle()
        if self.max_connections is not None and len(self.connections) > self.max_connections:
            longest_idle = next(iter(self.idle))  # this one when every other has a request in flight
            longest_idle._close_idle()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._request_in_progress():
            self._become_busy()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self._request_in_progress():  # a pipelined one may be
            self._become_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._become_busy()
        self.idle.pop(self, None)
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 refuses, in the app's JSON error format."""
        refusal = getattr(self.conn, "refusal", None)
        body = BadRequestError(refusal or f"{msg.rstrip('.')}: not a valid HTTP/1.1 request").body().encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        self.transport.write(
            self.conn.send(h11.Response(status_code=400, headers=headers, reason=b"Bad Request"))
        )
        self.transport.write(self.conn.send(h11.Data(data=body)))
        self.transport.write(self.conn.send(h11.EndOfMessage()))
        self.transport.close()

    def _request_in_progress(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _become_idle(self) -> None:
        self.idle[self] = None
        self.idle.move_to_end(self)
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        self._head_deadline = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _become_busy(self) -> None:
        self.idle.pop(self, None)
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if not self._request_in_progress():
            self._close_idle()

    def _close_idle(self) -> None:
        self.idle.pop(self, None)
        if not self.transport.is_closing():
            self.transport.close()


def bounded_protocol(head_timeout_s: float, max_connections: int | None = None) -> type[BoundedH11Protocol]:
    """The protocol class for `uvicorn.Config(http=...)`, which takes a class, not settings for it; each
    server gets a class of its own, with its own record of idle connections."""
    settings: dict[str, object] = {
        "head_timeout_s": float(head_timeout_s),
        "max_connections": max_connections,
        "idle": OrderedDict(),
    }
    return type("BoundedH11Protocol", (BoundedH11Protocol,), settings)
