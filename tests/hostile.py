"""A loopback HTTP server that plays a malicious registry (the attacker in the security tests).

Routes map a method and a path regex to a function that writes whatever it likes to the socket:
endless bodies, one byte every few seconds, gzip bombs, redirects to other schemes. What no route
matches is answered like a minimal registry (``/v2/`` → 200) or 404. Every request is recorded.
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from services import free_port


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


Handler = Callable[[BaseHTTPRequestHandler, re.Match], None]


def answer(h: BaseHTTPRequestHandler, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
    h.send_response(status)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


class Hostile:
    def __init__(self, routes: list[tuple[str, str, Handler]], host: str = "127.0.0.1"):
        self.routes = [(m, re.compile(p), fn) for m, p, fn in routes]
        self.seen: list[Seen] = []
        self.port = free_port()
        self.addr = host
        server = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _any(self):
                server.seen.append(Seen(self.command, self.path, dict(self.headers.items())))
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                for method, rx, fn in server.routes:
                    m = rx.fullmatch(self.path)
                    if m and method in (self.command, "*"):
                        try:
                            fn(self, m)
                        except (BrokenPipeError, ConnectionResetError):
                            pass
                        return
                if self.path == "/v2/":
                    answer(self, 200, b"{}", {"Docker-Distribution-API-Version": "registry/2.0"})
                else:
                    answer(self, 404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}')

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        self.httpd = ThreadingHTTPServer((host, self.port), H)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"{self.addr}:{self.port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "Hostile":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
