"""HTTP plumbing for one registry host: TLS, scheme choice, retries, error answers.

Scheme: HTTPS first. Plain HTTP is tried only for loopback hosts (as Docker does) or with
``--insecure``, and only when the server does not speak TLS at all: a TLS server whose
certificate does not verify is an error (``--ca-cert``, ``certs.d`` or ``--insecure`` fix it).
"""
from __future__ import annotations

import email.utils
import json
import os
import random
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar
from contextlib import contextmanager

import httpx

from .auth import Credentials, RegistryAuth
from .errors import AuthError, NotFoundError, RegistryError, TransportError
from .reference import is_loopback_host
from .wire import StdlibTransport

T = TypeVar("T")

# httpcore reads sockets 64 KiB at a time; with blobs of hundreds of MB the per-read Python work
# dominates. 256 KiB reads cut export time by about a quarter here (measured, make bench).
try:
    import httpcore._sync.http11 as _h11

    _h11.HTTP11Connection.READ_NUM_BYTES = max(getattr(_h11.HTTP11Connection, "READ_NUM_BYTES", 0), 256 * 1024)
except ImportError:  # a future httpcore without it: the default read size still works
    pass

#: Errors on the wire worth another try: refused/reset connections, timeouts, truncated bodies.
RETRYABLE = (httpx.TransportError,)
MAX_ERROR_BODY = 64 * 1024


@dataclass
class Options:
    """What the user said about talking to registries."""

    creds: Credentials | None = None
    insecure: bool = False
    ca_cert: str | None = None
    retries: int = 5
    timeout: float = 60.0
    jobs: int = 8


def certs_dirs() -> list[Path]:
    """Docker's per-registry certificate directories (``<dir>/<host:port>/ca.crt``)."""
    env = os.environ.get("PORTER_CERTS_D")
    if env:
        return [Path(p) for p in env.split(os.pathsep)]
    return [Path("/etc/docker/certs.d"), Path.home() / ".docker" / "certs.d"]


_default_context: ssl.SSLContext | None = None


def ssl_context(host: str, ca_cert: str | None) -> ssl.SSLContext:
    """System CAs plus ``ca_cert`` and the host's certs.d files. Loading the system CAs costs
    ~20 ms, so hosts with nothing extra share one context."""
    global _default_context
    extra = [base / host for base in certs_dirs() if (base / host).is_dir()]
    if not ca_cert and not extra:
        if _default_context is None:
            _default_context = ssl.create_default_context()
        return _default_context
    ctx = ssl.create_default_context()
    if ca_cert:
        try:
            ctx.load_verify_locations(cafile=ca_cert)
        except (OSError, ssl.SSLError) as e:
            raise TransportError(f"cannot load CA certificate {ca_cert}: {e}") from None
    for d in extra:
        for f in sorted(d.iterdir()):
            if f.suffix == ".crt":
                ctx.load_verify_locations(cafile=str(f))
            elif f.suffix == ".cert" and f.with_suffix(".key").exists():
                ctx.load_cert_chain(str(f), str(f.with_suffix(".key")))
    return ctx


def _ssl_failure(exc: BaseException | None) -> ssl.SSLError | None:
    """The TLS error behind a connection failure, if that is what it was (never temporary)."""
    while exc is not None:
        if isinstance(exc, ssl.SSLError):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


def error_for(response: httpx.Response, what: str) -> RegistryError:
    """Turn an error answer into a typed error with the registry's own error codes."""
    body = b""
    try:
        if response.is_closed:
            body = response.content[:MAX_ERROR_BODY]
        else:  # a streamed answer: read at most 64 KiB of it
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) >= MAX_ERROR_BODY:
                    break
    except (httpx.HTTPError, httpx.ResponseNotRead):
        pass
    codes: tuple[str, ...] = ()
    detail = ""
    try:
        errs = json.loads(body).get("errors") or []
        codes = tuple(str(e.get("code", "")) for e in errs)
        detail = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errs)
    except (ValueError, AttributeError, TypeError):
        pass
    status = response.status_code
    msg = f"{what}: {status} {response.reason_phrase}" + (f" ({detail})" if detail else "")
    if status in (401, 403):
        return AuthError(msg + " — check the credentials (--creds, PORTER_USERNAME/PORTER_PASSWORD, docker login)", status, codes)
    if status == 404:
        return NotFoundError(msg, status, codes)
    return RegistryError(msg, status, codes)


class Transport:
    """One registry host: a shared httpx client, the chosen base URL and a retry policy."""

    def __init__(self, host: str, api_host: str, opts: Options):
        from . import auth as _auth

        self.host, self.opts = host, opts
        verify: Any = False if opts.insecure else ssl_context(api_host, opts.ca_cert)
        limits = httpx.Limits(max_connections=opts.jobs + 4, max_keepalive_connections=opts.jobs + 4)
        timeout = httpx.Timeout(opts.timeout, connect=min(opts.timeout, 15.0))
        token_client = httpx.Client(verify=verify, timeout=timeout, follow_redirects=True)
        self.auth = RegistryAuth(host, _auth.resolve(host, opts.creds), token_client)
        # Through a proxy, httpx's own transport (it speaks CONNECT); direct, the leaner one.
        proxied = any(os.environ.get(v) for v in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy",
                                                   "http_proxy", "all_proxy"))
        wire = None if proxied else StdlibTransport(verify, opts.timeout, max_idle=opts.jobs + 4)
        self.client = httpx.Client(verify=verify, timeout=timeout, limits=limits, auth=self.auth, transport=wire,
                                   follow_redirects=True, headers={"User-Agent": "porter/0.1"})
        self._clients = (self.client, token_client)
        self.api_host = api_host
        self.base: str | None = None
        self._ping_lock = threading.Lock()

    def close(self) -> None:
        for c in self._clients:
            c.close()

    def _ping(self) -> str:
        """Find the scheme that works and check that this is a v2 registry."""
        plain_ok = self.opts.insecure or is_loopback_host(self.api_host)
        last: Exception | None = None
        for scheme in ("https", "http") if plain_ok else ("https",):
            base = f"{scheme}://{self.api_host}"
            # Probing HTTPS where plain HTTP may follow: one try, the fallback has the retries.
            retries = 0 if plain_ok and scheme == "https" else self.opts.retries
            try:
                r = self.with_retries(lambda: self.client.get(base + "/v2/"), f"{self.host}: ping", retries)
            except TransportError as e:
                last = e
                cert = _ssl_failure(e.__cause__)
                if isinstance(cert, ssl.SSLCertVerificationError):
                    raise TransportError(
                        f"{self.host}: TLS certificate not trusted ({cert.verify_message}); "
                        f"pass --ca-cert FILE, put it in certs.d/{self.api_host}/ca.crt, or use --insecure") from None
                continue
            if r.status_code == 200 or r.status_code == 401 and "WWW-Authenticate" in r.headers:
                if r.status_code == 401:
                    raise error_for(r, f"{self.host}: login")
                return base
            raise TransportError(f"{self.host}: not a registry (GET /v2/ answered {r.status_code})")
        raise TransportError(f"{self.host}: registry unreachable ({last})")

    def url(self, path: str) -> str:
        if self.base is None:
            with self._ping_lock:  # the first requests often start together, from a pool
                if self.base is None:
                    self.base = self._ping()
        return self.base + path

    def with_retries(self, call: Callable[[], T], what: str, retries: int | None = None) -> T:
        """Run ``call`` until it neither raises a wire error nor returns a temporary error status.

        Backoff doubles from 0.2 s with jitter, capped at 10 s; ``Retry-After`` wins when given."""
        retries = self.opts.retries if retries is None else retries
        attempt = 0
        while True:
            try:
                result = call()
            except RETRYABLE as e:
                if attempt >= retries or _ssl_failure(e):
                    raise TransportError(f"{what}: {type(e).__name__}: {e or 'connection failed'}") from e
                delay = None
            else:
                if not (isinstance(result, httpx.Response) and (result.status_code == 429 or result.status_code >= 500)) \
                            or attempt >= retries:
                    return result
                delay = _retry_after(result)
                result.close()
            attempt += 1
            backoff = min(10.0, 0.2 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
            time.sleep(min(delay, 60.0) if delay is not None else backoff)

    def request(self, method: str, path: str, what: str, ok: tuple[int, ...] = (200,), **kw: Any) -> httpx.Response:
        """A non-streaming request with retries; an answer outside ``ok`` raises a typed error."""
        url = self.url(path)
        r = self.with_retries(lambda: self.client.request(method, url, **kw), what)
        if r.status_code not in ok:
            raise error_for(r, what)
        return r

    @contextmanager
    def stream(self, method: str, path: str, what: str, ok: tuple[int, ...], **kw: Any) -> Iterator[httpx.Response]:
        """A streaming request; the caller reads the body (and handles drops mid-body)."""
        url = self.url(path)

        def open_() -> httpx.Response:
            return self.client.send(self.client.build_request(method, url, **kw), stream=True)

        r = self.with_retries(open_, what)
        try:
            if r.status_code not in ok:
                raise error_for(r, what)
            yield r
        finally:
            r.close()
