"""An httpx transport over the standard library's ``http.client``.

It keeps the guarantees of httpx's own transport that porter relies on — a connect timeout apart
from the read timeout, chunked framing of request bodies of unknown length (and http.client
reads chunked or close-delimited answers), http/https only — each with a test of its own
(tests/test_units.py). ``PORTER_TRANSPORT=httpx`` switches to httpx's transport (as a proxy
does); ``make bench`` measures both.

Profiling ``make bench`` showed httpcore/h11 copying every received byte twice more through its
receive buffer: a 359 MB export spent more time there than hashing and writing together. Here
response bodies are read from the socket's buffered reader straight into the chunk handed on,
which measured 1.6x the throughput of one httpx stream on this machine. httpx keeps doing
everything above the wire (auth flow, redirects, cookies, timeouts' meaning); errors are mapped
to httpx's exception types, so retries see the same exceptions as before.
"""
from __future__ import annotations

import heapq
import http.client
import itertools
import socket
import ssl
import threading
import time
from typing import Callable, Iterator

import httpx

READ = 1 << 20


class DeadlineExceeded(httpx.ReadTimeout):
    """The request's overall deadline (``porter.deadline`` in its extensions) passed: the socket
    was shut, so a server trickling bytes cannot hold a metadata request for ever."""


_default_context: ssl.SSLContext | None = None
_default_lock = threading.Lock()


def default_ssl_context() -> ssl.SSLContext:
    """The system CAs, loaded once, on first use: loading them costs ~50 ms here, which a run
    that only speaks plain HTTP (a registry on loopback) never needs to spend."""
    global _default_context
    with _default_lock:
        if _default_context is None:
            _default_context = ssl.create_default_context()
        return _default_context


class _Deadlines:
    """One daemon thread that shuts the socket of each request whose deadline passed. (A
    ``threading.Timer`` per request started a thread per request: measured, most of the
    client's CPU per metadata request.)"""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._heap: list[tuple[float, int, "_Watchdog"]] = []
        self._seq = itertools.count()
        self._cancelled = 0
        self._thread: threading.Thread | None = None

    def add(self, when: float, dog: "_Watchdog") -> None:
        with self._cv:
            heapq.heappush(self._heap, (when, next(self._seq), dog))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="porter-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is dog:
                self._cv.notify()

    def cancel(self, dog: "_Watchdog") -> None:
        with self._cv:
            if dog.cancelled or dog.fired:
                return
            dog.cancelled = True
            self._cancelled += 1
            if self._cancelled > 1024 and self._cancelled * 2 > len(self._heap):  # bounded memory
                self._heap = [e for e in self._heap if not e[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _run(self) -> None:
        with self._cv:
            while True:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                    self._cancelled = max(0, self._cancelled - 1)
                if not self._heap:
                    self._cv.wait()
                    continue
                left = self._heap[0][0] - time.monotonic()
                if left > 0:
                    self._cv.wait(left)
                    continue
                heapq.heappop(self._heap)[2].fire()


_DEADLINES = _Deadlines()


class _Watchdog:
    """Shuts a connection's socket down at a deadline, unless cancelled first."""

    def __init__(self, conn: http.client.HTTPConnection, deadline: float | None):
        self.conn, self.fired, self.cancelled = conn, False, False
        self.armed = deadline is not None
        if deadline is not None:
            _DEADLINES.add(deadline, self)

    def fire(self) -> None:
        self.fired = True
        try:
            if self.conn.sock is not None:
                self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def cancel(self) -> None:
        if self.armed:
            _DEADLINES.cancel(self)


def _wire_error(e: BaseException, request: httpx.Request, connecting: bool) -> httpx.TransportError:
    if isinstance(e, (socket.timeout, TimeoutError)):
        err: httpx.TransportError = (httpx.ConnectTimeout if connecting else httpx.ReadTimeout)(str(e) or "timed out", request=request)
    elif connecting:
        err = httpx.ConnectError(str(e) or type(e).__name__, request=request)
    elif isinstance(e, (http.client.IncompleteRead, http.client.RemoteDisconnected, http.client.BadStatusLine)):
        err = httpx.RemoteProtocolError(f"{type(e).__name__}: connection closed early", request=request)
    else:
        err = httpx.ReadError(str(e) or type(e).__name__, request=request)
    err.__cause__ = e
    return err


class _Body(httpx.SyncByteStream):
    def __init__(self, transport: "StdlibTransport", key: tuple, conn: http.client.HTTPConnection,
                 resp: http.client.HTTPResponse, request: httpx.Request, watchdog: _Watchdog):
        self.t, self.key, self.conn, self.resp, self.request = transport, key, conn, resp, request
        self.watchdog = watchdog
        self.done = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            while chunk := self.resp.read1(READ):
                yield chunk
        except (OSError, http.client.HTTPException, ValueError) as e:
            if self.watchdog.fired:
                raise DeadlineExceeded("deadline passed while reading the body", request=self.request) from None
            raise _wire_error(e, self.request, connecting=False) from None
        if self.watchdog.fired:
            raise DeadlineExceeded("deadline passed while reading the body", request=self.request)
        if self.resp.length:  # read1 ends quietly when the peer closes early
            raise httpx.RemoteProtocolError(f"connection closed with {self.resp.length} bytes of the body unread",
                                            request=self.request)
        self.done = True

    def close(self) -> None:
        self.watchdog.cancel()
        # An answer without a body (HEAD, 204, Content-Length: 0) is complete unread: keep its
        # connection. (Closing those made every HEAD and upload start open a new connection.)
        complete = self.done or (self.resp.length == 0 and not self.resp.chunked)
        reusable = complete and not self.resp.will_close and not self.watchdog.fired
        self.resp.close()
        if reusable:
            self.t._give_back(self.key, self.conn)
        else:
            self.conn.close()


class StdlibTransport(httpx.BaseTransport):
    """HTTP/1.1 with a small keep-alive pool per (scheme, host, port)."""

    def __init__(self, verify: ssl.SSLContext | bool | Callable[[], ssl.SSLContext], timeout: float,
                 max_idle: int = 16, connect_timeout: float | None = None):
        """``verify``: a context, a loader of one (called on the first TLS connection: the
        system CAs cost ~50 ms to load), True for the system CAs, False for no verification."""
        self._verify = verify
        self._ssl: ssl.SSLContext | None = verify if isinstance(verify, ssl.SSLContext) else None
        self.timeout, self.max_idle = timeout, max_idle
        self.connect_timeout = min(timeout, 15.0) if connect_timeout is None else connect_timeout
        self._idle: dict[tuple, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()

    def _take(self, key: tuple) -> http.client.HTTPConnection | None:
        with self._lock:
            idle = self._idle.get(key)
            return idle.pop() if idle else None

    def _give_back(self, key: tuple, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.max_idle:
                idle.append(conn)
                return
        conn.close()

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            if self._verify is False:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no CAs to load: nothing is verified
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            else:
                ctx = self._verify() if callable(self._verify) else default_ssl_context()
            self._ssl = ctx
        return self._ssl

    def _connect(self, key: tuple) -> http.client.HTTPConnection:
        scheme, host, port = key
        if scheme == "https":
            return http.client.HTTPSConnection(host, port, timeout=self.connect_timeout, context=self._context())
        return http.client.HTTPConnection(host, port, timeout=self.connect_timeout)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https"):  # never turn another scheme into a plain HTTP request
            raise httpx.UnsupportedProtocol(f"refusing a {url.scheme!r} URL", request=request)
        deadline = request.extensions.get("porter.deadline")
        key = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        body = None if request.method in ("GET", "HEAD") and "content-length" not in request.headers \
            else request.stream
        # A body of unknown length: httpx asked for chunked framing in the headers; frame it here.
        chunked = body is not None and request.headers.get("transfer-encoding", "").lower() == "chunked"
        for reused in (True, False):  # an idle connection the server closed: retry once on a new one
            conn = self._take(key) if reused else None
            if reused and conn is None:
                continue
            conn = conn or self._connect(key)
            try:
                if conn.sock is None:
                    conn.connect()  # within the connect timeout; then reads wait up to the read timeout
                    conn.sock.settimeout(self.timeout)
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                raise _wire_error(e, request, connecting=True) from None
            watchdog = _Watchdog(conn, deadline)
            try:
                conn.putrequest(request.method, url.raw_path.decode("ascii"), skip_host=True,
                                skip_accept_encoding=True)
                for k, v in headers:
                    conn.putheader(k, v)
                conn.endheaders()
                if body is not None:
                    for chunk in body:  # type: ignore[union-attr]
                        if chunked and chunk:
                            conn.send(b"%x\r\n" % len(chunk) + bytes(chunk) + b"\r\n")
                        elif not chunked:
                            conn.send(chunk)
                    if chunked:
                        conn.send(b"0\r\n\r\n")
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                watchdog.cancel()
                conn.close()
                if watchdog.fired:
                    raise DeadlineExceeded("deadline passed before the answer's headers", request=request) from None
                if reused and body is None:
                    continue
                raise _wire_error(e, request, connecting=False) from None
            except (OSError, http.client.HTTPException, ValueError) as e:
                watchdog.cancel()
                conn.close()
                if watchdog.fired:
                    raise DeadlineExceeded("deadline passed before the answer's headers", request=request) from None
                raise _wire_error(e, request, connecting=False) from None
            return httpx.Response(resp.status, headers=resp.getheaders(),
                                  stream=_Body(self, key, conn, resp, request, watchdog),
                                  extensions={"http_version": b"HTTP/1.1", "reason_phrase": resp.reason.encode()})
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            for conns in self._idle.values():
                for c in conns:
                    c.close()
            self._idle.clear()
