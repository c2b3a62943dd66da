"""HTTP plumbing for one registry host: TLS, scheme choice, retries, error answers.

Scheme: HTTPS first. Plain HTTP is tried only for loopback hosts (as Docker does) or with
``--insecure``, and only when the server does not speak TLS at all: a TLS server whose
certificate does not verify is an error (``--ca-cert``, ``certs.d`` or ``--insecure`` fix it).
"""
from __future__ import annotations

import email.utils
import functools
import os
import random
import ssl
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar
from contextlib import contextmanager

import httpx

from . import auth as _auth
from .auth import Credentials, RegistryAuth
from .errors import AuthError, NotFoundError, PorterError, RegistryError, TransportError
from .mediatypes import loads
from .reference import is_loopback_host, printable
from .wire import DeadlineExceeded, StdlibTransport, default_ssl_context

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
MAX_JSON_BYTES = 4 * 1024 * 1024  # tags lists, catalog pages, token answers: a few MiB at most
MAX_REDIRECTS = 10
REDIRECTS = (301, 302, 303, 307, 308)


def origin(url: httpx.URL | str) -> tuple[str, str, int]:
    """(scheme, host, port) with the scheme's default port filled in: what "same origin" compares."""
    u = httpx.URL(url) if isinstance(url, str) else url
    return u.scheme, u.host, u.port or (443 if u.scheme == "https" else 80)


def check_url(url: httpx.URL | str, insecure: bool, what: str) -> httpx.URL:
    """Only http and https; plain http only to loopback hosts unless ``--insecure``."""
    u = httpx.URL(url) if isinstance(url, str) else url
    if u.scheme not in ("http", "https"):
        raise TransportError(f"{what}: refusing a {printable(u.scheme)} URL (only http and https)")
    if u.scheme == "http" and not insecure and not is_loopback_host(u.host):
        raise TransportError(f"{what}: refusing plain HTTP to {printable(u.host)} (pass --insecure to allow it)")
    return u


def _decoder(encoding: str, what: str) -> Any:
    """A zlib decompressor for the body's Content-Encoding (None for identity). porter asks for
    identity; a server that compresses anyway is decoded here, bounded (not by httpx, unbounded)."""
    enc = encoding.strip().lower()
    if enc in ("", "identity"):
        return None
    if enc in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if enc == "deflate":
        return zlib.decompressobj()
    raise TransportError(f"{what}: unsupported Content-Encoding {printable(encoding)}")


def read_body(r: httpx.Response, limit: int, what: str, deadline: float | None = None,
              truncate: bool = False) -> bytes:
    """At most ``limit`` bytes of a streamed answer (decoded), by ``deadline``. Past the limit:
    an error, or with ``truncate`` the first ``limit`` bytes (error bodies: only for the message)."""
    declared = r.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit and not truncate and not r.headers.get("Content-Encoding"):
        raise TransportError(f"{what}: answer of {declared} bytes, more than the {limit} allowed")
    dec = _decoder(r.headers.get("Content-Encoding", ""), what)
    out = bytearray()
    try:
        for raw in r.iter_raw():
            if deadline is not None and time.monotonic() > deadline:
                raise DeadlineExceeded(f"{what}: no complete answer in time")
            data = raw if dec is None else dec.decompress(raw, limit + 1 - len(out))
            out += data
            if len(out) > limit or (dec is not None and dec.unconsumed_tail):
                if truncate:
                    return bytes(out[:limit])
                raise TransportError(f"{what}: answer larger than the {limit} bytes allowed")
    except zlib.error:
        raise TransportError(f"{what}: corrupt compressed answer") from None
    return bytes(out)


def _finished(r: httpx.Response, data: bytes) -> httpx.Response:
    """A read, closed copy of a streamed answer holding ``data`` (already decoded)."""
    headers = [(k, v) for k, v in r.headers.multi_items() if k.lower() not in ("content-encoding", "content-length")]
    done = httpx.Response(r.status_code, headers=headers, content=data, request=r.request, extensions=r.extensions)
    return done


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


def ssl_context(host: str, ca_cert: str | None) -> ssl.SSLContext | Callable[[], ssl.SSLContext]:
    """System CAs plus ``ca_cert`` and the host's certs.d files, loaded now (a bad file is an
    error before anything is sent). Hosts with nothing extra share the system CAs' context,
    returned as its loader: loaded when a TLS connection first needs it."""
    extra = [base / host for base in certs_dirs() if (base / host).is_dir()]
    if not ca_cert and not extra:
        return default_ssl_context
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
    """Turn an error answer into a typed error with the registry's own error codes (read from at
    most 64 KiB of its body)."""
    body = b""
    try:
        if response.is_closed:
            body = response.content[:MAX_ERROR_BODY]
        else:
            body = read_body(response, MAX_ERROR_BODY, what, time.monotonic() + 30, truncate=True)
    except (httpx.HTTPError, httpx.ResponseNotRead, PorterError):
        pass
    codes: tuple[str, ...] = ()
    detail = ""
    try:
        errs = loads(body, what).get("errors") or []
        codes = tuple(str(e.get("code", ""))[:64] for e in errs)
        detail = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errs)[:500]
    except (PorterError, AttributeError, TypeError):
        pass
    status = response.status_code
    msg = f"{what}: {status} {response.reason_phrase}" + (f" ({detail})" if detail else "")
    if status in (401, 403):
        return AuthError(msg + " — check the credentials (--creds, PORTER_USERNAME/PORTER_PASSWORD, docker login)", status, codes)
    if status == 404:
        return NotFoundError(msg, status, codes)
    return RegistryError(msg, status, codes)


class Transport:
    """One registry host: a shared httpx client, the chosen base URL and a retry policy.

    Credentials are scoped to the registry's origin: ``RegistryAuth`` asks ``same_origin``
    before it attaches or answers anything. Redirects are followed here (GET and HEAD only), each
    hop checked for its scheme, with a loop check; a redirect target never sees credentials."""

    def __init__(self, host: str, api_host: str, opts: Options):
        self.host, self.opts = host, opts
        tls: Any = False if opts.insecure else ssl_context(api_host, opts.ca_cert)
        limits = httpx.Limits(max_connections=opts.jobs + 4, max_keepalive_connections=opts.jobs + 4)
        timeout = httpx.Timeout(opts.timeout, connect=min(opts.timeout, 15.0))
        # Through a proxy, httpx's own transport (it speaks CONNECT); direct, the leaner one
        # (measured in make bench), unless PORTER_TRANSPORT=httpx asks for httpx's.
        proxied = any(os.environ.get(v) for v in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy",
                                                   "http_proxy", "all_proxy"))
        lean = not proxied and os.environ.get("PORTER_TRANSPORT", "") != "httpx"

        def wire() -> StdlibTransport | None:
            return StdlibTransport(tls, opts.timeout, max_idle=opts.jobs + 4, connect_timeout=timeout.connect) \
                if lean else None

        # httpx's own transport wants the context now; the lean one loads it on its first TLS connection
        verify = (tls() if callable(tls) else tls) if not lean else True

        headers = {"User-Agent": "porter/0.1", "Accept-Encoding": "identity"}
        token_client = httpx.Client(verify=verify, timeout=timeout, transport=wire(), headers=headers)
        self.auth = RegistryAuth(host, _auth.resolve(host, opts.creds), self, token_client)
        self.client = httpx.Client(verify=verify, timeout=timeout, limits=limits, transport=wire(),
                                   follow_redirects=False, headers=headers)
        self._clients = (self.client, token_client)
        self.api_host = api_host
        self.base: str | None = None
        self._ping_lock = threading.Lock()
        self.deadline = 3 * opts.timeout  # a metadata answer must be complete within this

    def close(self) -> None:
        for c in self._clients:
            c.close()

    def same_origin(self, url: httpx.URL | str) -> bool:
        """Is ``url`` on this registry's origin (scheme, host, port)? Before the scheme is known,
        either scheme porter may use counts."""
        return origin(url) in self._origins(self.base)

    @functools.lru_cache(maxsize=4)
    def _origins(self, base: str | None) -> frozenset[tuple[str, str, int]]:
        schemes = [httpx.URL(base).scheme] if base else ["https", "http"]
        return frozenset(origin(f"{s}://{self.api_host}/") for s in schemes)

    def _ping(self) -> str:
        """Find the scheme that works and check that this is a v2 registry. HTTPS first — except
        on loopback, where plain HTTP is the common case: asked first, it spares loading the
        system CAs; a TLS port answers it with an error, not a registry's 200 or 401, and HTTPS
        is tried next. (The ping carries no credentials.)"""
        loopback = is_loopback_host(self.api_host)
        plain_ok = self.opts.insecure or loopback
        schemes = ("http", "https") if loopback else ("https", "http") if plain_ok else ("https",)
        last: Exception | None = None
        answered: TransportError | None = None  # a scheme that spoke HTTP, but not as a registry
        for n, scheme in enumerate(schemes):
            base = f"{scheme}://{self.api_host}"
            # Probing where another scheme may follow: one try, the fallback has the retries.
            retries = 0 if n < len(schemes) - 1 else self.opts.retries
            try:
                r = self.with_retries(lambda: self.send("GET", base + "/v2/", f"{self.host}: ping"),
                                      f"{self.host}: ping", retries)
            except TransportError as e:
                last = e
                if answered is None and not isinstance(e.__cause__, httpx.TransportError):
                    answered = e  # e.g. a login refused: more telling than the other scheme's wire error
                cert = _ssl_failure(e.__cause__)
                if cert is not None and not plain_ok and cert.reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE",
                                                                         "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST"):
                    raise TransportError(f"{self.host} speaks plain HTTP, not HTTPS; pass --insecure to allow "
                                         f"plain HTTP to it") from None
                if isinstance(cert, ssl.SSLCertVerificationError):
                    raise TransportError(
                        f"{self.host}: TLS certificate not trusted ({cert.verify_message}); "
                        f"pass --ca-cert FILE, put it in certs.d/{self.api_host}/ca.crt, or use --insecure") from None
                continue
            if r.status_code == 200 or r.status_code == 401 and "WWW-Authenticate" in r.headers:
                if r.status_code == 401:
                    raise error_for(r, f"{self.host}: login")
                return base
            answered = answered or TransportError(f"{self.host}: not a registry (GET /v2/ answered {r.status_code})")
        raise answered or TransportError(f"{self.host}: registry unreachable ({last})")

    def url(self, path: str) -> str:
        if self.base is None:
            with self._ping_lock:  # the first requests often start together, from a pool
                if self.base is None:
                    self.base = self._ping()
        return self.base + path

    def check_upload_url(self, url: str, what: str) -> str:
        """An upload URL (a ``Location``, or one a journal kept) must be on this registry's origin:
        it receives blob bytes and credentials."""
        if not self.same_origin(check_url(url, self.opts.insecure, what)):
            raise TransportError(f"{what}: refusing upload URL {printable(url)} on another origin than {self.base}")
        return url

    def open(self, method: str, url: str, what: str, deadline: float | None = None, **kw: Any) -> httpx.Response:
        """Send one request and return the answer unread (the caller closes it). GET and HEAD
        follow redirects, each hop http/https only (plain http to loopback or with --insecure)."""
        ext = {"porter.deadline": deadline} if deadline is not None else None
        seen: set[str] = set()
        target = check_url(url, self.opts.insecure, what)
        request = self.client.build_request(method, target, extensions=ext, **kw)
        for _ in range(MAX_REDIRECTS + 1):
            self.auth.authorize(request)
            r = self.client.send(request, stream=True)
            if r.status_code == 401 and not isinstance(kw.get("content"), Iterator) and self.auth.answer(r):
                r.close()  # unread: a 401's body is never needed
                request = self.client.build_request(method, request.url, extensions=ext, **kw)
                self.auth.authorize(request)
                r = self.client.send(request, stream=True)
            nxt = r.next_request if method in ("GET", "HEAD") and r.status_code in REDIRECTS else None
            if nxt is None:
                return r
            r.close()
            hop = str(nxt.url)
            if hop in seen:
                raise TransportError(f"{what}: redirect loop at {printable(hop)}")
            seen.add(hop)
            check_url(nxt.url, self.opts.insecure, f"{what}: redirect")
            request = nxt
        raise TransportError(f"{what}: more than {MAX_REDIRECTS} redirects")

    def send(self, method: str, url: str, what: str, limit: int = MAX_JSON_BYTES, timed: bool = True,
             **kw: Any) -> httpx.Response:
        """One request whose answer is read whole, at most ``limit`` bytes (an error answer:
        64 KiB of it), and — when ``timed`` (not for a request that carries a chunk of a blob) —
        complete within 3 × --timeout."""
        deadline = time.monotonic() + self.deadline if timed else None
        r = self.open(method, url, what, deadline, **kw)
        try:
            data = b"" if method == "HEAD" else read_body(r, limit if r.status_code < 400 else MAX_ERROR_BODY,
                                                          what, deadline, truncate=r.status_code >= 400)
        finally:
            r.close()
        return _finished(r, data)

    def with_retries(self, call: Callable[[], T], what: str, retries: int | None = None) -> T:
        """Run ``call`` until it neither raises a wire error nor returns a temporary error status.
        The only retry loop for requests: callers above it do not retry again.

        Backoff doubles from 0.2 s with jitter, capped at 10 s; ``Retry-After`` wins when given."""
        retries = self.opts.retries if retries is None else retries
        attempt = 0
        while True:
            try:
                result = call()
            except DeadlineExceeded as e:  # a trickling server would trickle again
                raise TransportError(f"{what}: no complete answer within {self.deadline:g}s ({e})") from None
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

    def request(self, method: str, path: str, what: str, ok: tuple[int, ...] = (200,),
                limit: int = MAX_JSON_BYTES, **kw: Any) -> httpx.Response:
        """A metadata request with retries, its answer read whole (bounded in size and time);
        an answer outside ``ok`` raises a typed error."""
        url = self.url(path)
        r = self.with_retries(lambda: self.send(method, url, what, limit, **kw), what)
        if r.status_code not in ok:
            raise error_for(r, what)
        return r

    @contextmanager
    def stream(self, method: str, path: str, what: str, ok: tuple[int, ...], **kw: Any) -> Iterator[httpx.Response]:
        """A streaming request (blob bytes); the caller reads the body (and handles drops mid-body)."""
        url = self.url(path)
        r = self.with_retries(lambda: self.open(method, url, what, **kw), what)
        try:
            if r.status_code not in ok:
                raise error_for(r, what)
            yield r
        finally:
            r.close()
