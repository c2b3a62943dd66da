"""A small fault-injecting HTTP proxy in front of a real registry (loopback only).

Each scenario is a ``Fault`` object whose hooks may change the request, answer instead of the
registry, or cut a response body after N bytes. Requests are recorded for assertions.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from services import free_port

HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authorization",
       "proxy-authenticate", "host", "content-length"}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    body: bytes = b""


@dataclass
class Fault:
    """Override what you need. ``cut_after`` bytes of a matching body, then the connection drops."""

    def request(self, seen: Seen, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes] | None:
        return None  # None: forward to the registry (seen.path and headers may be changed first)

    def cut_after(self, seen: Seen) -> int | None:
        return None

    def cut_request_after(self, seen: Seen) -> int | None:
        """Forward only this many bytes of the request body to the registry, then drop both sides."""
        return None

    def mangle(self, seen: Seen, chunk: bytes, offset: int) -> bytes:
        return chunk

    def hold(self, seen: Seen) -> float:
        """Seconds to hold a request before forwarding it; dropped if the client goes away meanwhile."""
        return 0.0


class FailFirst(Fault):
    """Answer the first ``n`` requests matching ``method`` (any when None) and ``match`` with
    ``status`` and ``headers``; the registry never sees them."""

    def __init__(self, status: int, n: int, match: str, method: str | None = None, headers: dict | None = None):
        self.status, self.left, self.match, self.method, self.headers = status, n, match, method, headers or {}

    def request(self, seen, headers):
        if self.match in seen.path and (self.method is None or seen.method == self.method) and self.left > 0:
            self.left -= 1
            return self.status, self.headers, b'{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}'
        return None


class FlipFirstByte(Fault):
    """Corrupt the first byte of every body whose path names ``digest``."""

    def __init__(self, digest: str):
        self.digest = digest

    def mangle(self, seen, chunk, offset):
        if self.digest in seen.path and offset == 0 and chunk:
            return bytes([chunk[0] ^ 0xFF]) + chunk[1:]
        return chunk


class Proxy:
    def __init__(self, upstream: str, fault: Fault | None = None):
        self.upstream = upstream
        self.fault = fault or Fault()
        self.port = free_port()
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self.client = httpx.Client(timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _any(self):
                proxy.handle(self)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        headers = {k: v for k, v in h.headers.items()}
        path = h.path
        if path.startswith("http://"):  # absolute form: we are being used as a forward proxy
            path = "/" + path.split("/", 3)[3]
        seen = Seen(h.command, path, headers)
        with self._lock:
            self.seen.append(seen)
        length = int(h.headers.get("Content-Length") or 0)
        cut_req = self.fault.cut_request_after(seen)
        body = h.rfile.read(length if cut_req is None else min(cut_req, length)) if length else b""
        seen.body = body
        canned = self.fault.request(seen, headers)
        if canned is not None:
            status, rh, rbody = canned
            seen.status = status
            h.send_response(status)
            for k, v in rh.items():
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(rbody)))
            h.end_headers()
            if h.command != "HEAD":
                h.wfile.write(rbody)
            return
        fwd = {k: v for k, v in headers.items() if k.lower() not in HOP}
        if not self._held(h, self.fault.hold(seen)):
            seen.status = -2  # the client went away while held: the registry never sees it
            return
        if cut_req is not None:
            self._forward_partial(h, seen, fwd, body, length)
            return
        req = self.client.build_request(h.command, self.upstream + seen.path, headers=fwd, content=body)
        resp = self.client.send(req, stream=True)
        try:
            seen.status = resp.status_code
            h.send_response(resp.status_code)
            for k, v in resp.headers.multi_items():
                if k.lower() not in HOP:
                    h.send_header(k, v.replace(self.upstream, f"http://{self.host}"))
            if "content-length" in resp.headers:
                h.send_header("Content-Length", resp.headers["content-length"])
            cut = self.fault.cut_after(seen)
            if cut is not None:
                h.send_header("Connection", "close")
            h.end_headers()
            if h.command == "HEAD":
                return
            sent = 0
            for chunk in resp.iter_raw(65536):
                chunk = self.fault.mangle(seen, chunk, sent)
                if cut is not None and sent + len(chunk) >= cut:
                    h.wfile.write(chunk[: cut - sent])
                    h.wfile.flush()
                    h.close_connection = True
                    import socket

                    h.connection.shutdown(socket.SHUT_RDWR)
                    return
                h.wfile.write(chunk)
                sent += len(chunk)
        finally:
            resp.close()

    @staticmethod
    def _held(h, seconds: float) -> bool:
        """Wait up to ``seconds``; False as soon as the client has closed its connection."""
        import socket

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            h.connection.setblocking(False)
            try:
                if h.connection.recv(1, socket.MSG_PEEK) == b"":
                    return False
            except BlockingIOError:
                pass
            except OSError:
                return False
            finally:
                h.connection.setblocking(True)
            time.sleep(0.02)
        return True

    def _forward_partial(self, h, seen: Seen, fwd: dict, body: bytes, length: int) -> None:
        """Send the registry the head of a request body on a raw socket, then hang up on both."""
        import socket
        from urllib.parse import urlparse

        u = urlparse(self.upstream)
        with socket.create_connection((u.hostname, u.port)) as up:
            lines = [f"{h.command} {seen.path} HTTP/1.1", f"Host: {u.hostname}:{u.port}", f"Content-Length: {length}"]
            lines += [f"{k}: {v}" for k, v in fwd.items()]
            up.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            time.sleep(0.2)  # let the registry write what it got
        seen.status = -1
        h.close_connection = True
        h.connection.shutdown(socket.SHUT_RDWR)

    def requests(self, method: str | None = None, contains: str = "") -> list[Seen]:
        return [s for s in self.seen if (method is None or s.method == method) and contains in s.path]

    def stop(self) -> None:
        self.httpd.shutdown()
        self.client.close()

    def __enter__(self) -> "Proxy":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
