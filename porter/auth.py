"""Credentials and the registry auth flow (anonymous, Basic, Bearer token).

Credentials come from, in order: the command line (``--creds user:pass``), the environment
(``PORTER_USERNAME``/``PORTER_PASSWORD``), docker's ``config.json`` (``auths``, ``credHelpers``,
``credsStore`` through ``docker-credential-*``). Tokens live in memory only, cached per scope.
"""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from .errors import AuthError, PorterError, UsageError
from .mediatypes import loads
from .reference import DOCKER_HUB, printable

if TYPE_CHECKING:
    from .transport import Transport


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str

    def __repr__(self) -> str:  # never let a password reach a log or traceback
        return f"Credentials(username={self.username!r}, password=***)"

    @classmethod
    def parse(cls, text: str) -> "Credentials":
        user, sep, password = text.partition(":")
        if not sep or not user:
            raise UsageError("credentials must be given as USER:PASSWORD")
        return cls(user, password)


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _config_keys(host: str) -> list[str]:
    if host == DOCKER_HUB:
        return ["https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io"]
    return [host, f"https://{host}", f"http://{host}", f"https://{host}/v1/", f"http://{host}/v1/"]


def _from_helper(helper: str, host: str) -> Credentials | None:
    try:
        out = subprocess.run([f"docker-credential-{helper}", "get"], input=host.encode(),
                             capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AuthError(f"credential helper docker-credential-{helper} failed: {e}") from None
    if out.returncode != 0:
        return None  # "credentials not found" is the common case; fall back to anonymous
    try:
        data = json.loads(out.stdout)
        return Credentials(data["Username"], data["Secret"])
    except (ValueError, KeyError, TypeError):
        raise AuthError(f"credential helper docker-credential-{helper} returned unreadable output") from None


def from_docker_config(host: str, path: Path | None = None) -> Credentials | None:
    path = path or docker_config_path()
    try:
        cfg = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise AuthError(f"cannot read docker config {path}: {e}") from None
    keys = _config_keys(host)
    helpers = cfg.get("credHelpers") or {}
    for k in keys:
        if k in helpers:
            return _from_helper(helpers[k], k)
    auths = cfg.get("auths") or {}
    for k in keys:
        entry = auths.get(k)
        if entry and entry.get("auth"):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise AuthError(f"docker config {path}: malformed auth entry for {k}") from None
            return Credentials(user, password)
        if entry and entry.get("username"):
            return Credentials(entry["username"], entry.get("password", ""))
    if cfg.get("credsStore"):
        return _from_helper(cfg["credsStore"], keys[0])
    return None


def resolve(host: str, explicit: Credentials | None) -> Credentials | None:
    if explicit:
        return explicit
    user, password = os.environ.get("PORTER_USERNAME"), os.environ.get("PORTER_PASSWORD")
    if user:
        return Credentials(user, password or "")
    return from_docker_config(host)


_PARAM = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="…",service="…"`` → ("bearer", {realm:…, service:…})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), {m[1].lower(): m[2] if m[2] is not None else m[3] for m in _PARAM.finditer(rest)}


_REPO_PATH = re.compile(r"/v2/(.+?)/(?:manifests|blobs|tags)/")


def scope_for(request: httpx.Request) -> str:
    """The token scope a request needs, derived from its path and method."""
    path = request.url.path
    if path.startswith("/v2/_catalog"):
        return "registry:catalog:*"
    m = _REPO_PATH.match(path)
    if not m:
        return ""
    actions = "pull" if request.method in ("GET", "HEAD") else "delete" if request.method == "DELETE" else "pull,push"
    return f"repository:{m[1]}:{actions}"


_TOKEN = re.compile(r"[A-Za-z0-9._~+/=-]{1,16384}\Z")


class RegistryAuth:
    """The 401 → credentials/token → retry dance, remembering what worked.

    After the first challenge, later requests carry Basic credentials or the cached token for
    their scope up front, so a run pays the challenge once per scope. Credentials and tokens go
    only to the registry's own origin, and only a challenge from that origin is answered: a host
    that a redirect led to gets nothing, whatever its 401 says. The token realm is the one the
    registry's own challenge named."""

    def __init__(self, host: str, creds: Credentials | None, transport: "Transport", token_client: httpx.Client):
        self.host, self.creds, self._token_client = host, creds, token_client
        self.transport = transport
        self._scheme: str | None = None
        self._challenge: dict[str, str] = {}
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def _basic(self) -> str:
        assert self.creds
        raw = f"{self.creds.username}:{self.creds.password}".encode()
        return "Basic " + base64.b64encode(raw).decode()

    def _cached(self, scope: str) -> str | None:
        tok = self._tokens.get(scope)
        return tok[0] if tok and tok[1] > time.monotonic() else None

    def _authorize(self, request: httpx.Request) -> bool:
        if not self.transport.same_origin(request.url):
            request.headers.pop("Authorization", None)
            return False
        scope = scope_for(request)
        if self._scheme == "basic" and self.creds:
            request.headers["Authorization"] = self._basic()
        elif self._scheme == "bearer" and (tok := self._cached(scope)):
            request.headers["Authorization"] = f"Bearer {tok}"
        else:
            return False
        return True

    def authorize(self, request: httpx.Request) -> bool:
        """Attach what is known to work for this request's scope (nothing off the registry's origin)."""
        return self._authorize(request)

    def answer(self, response: httpx.Response) -> bool:
        """Take a 401: True when there is now something new to try (credentials, a token). Only a
        challenge from the registry's own origin is answered."""
        if response.status_code != 401 or not self.transport.same_origin(response.request.url):
            return False
        scheme, params = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if scheme == "basic":
            if not self.creds or self._scheme == "basic":
                return False
            self._scheme = "basic"
            return True
        if scheme == "bearer" and params.get("realm"):
            self._fetch_token(scope_for(response.request), params)
            return True
        return False

    def _fetch_token(self, scope: str, params: dict[str, str]) -> None:
        from .transport import MAX_JSON_BYTES, check_url, read_body

        with self._lock:
            self._scheme, self._challenge = "bearer", params
            what = f"{self.host}: token server"
            realm = check_url(params["realm"], self.transport.opts.insecure, what)
            query: list[tuple[str, str | int | float | bool | None]] = []
            if params.get("service"):
                query.append(("service", params["service"]))
            scopes = {s for s in (params.get("scope", ""), scope) if s}
            query += [("scope", s) for s in sorted(scopes)]
            headers = {"Authorization": self._basic()} if self.creds else {}
            deadline = time.monotonic() + self.transport.deadline
            try:
                req = self._token_client.build_request("GET", realm, params=query, headers=headers,
                                                       extensions={"porter.deadline": deadline})
                r = self._token_client.send(req, stream=True)
                try:
                    body = read_body(r, MAX_JSON_BYTES, what, deadline, truncate=r.status_code != 200)
                finally:
                    r.close()
            except httpx.HTTPError as e:
                raise AuthError(f"token server {printable(realm.host)} unreachable: {type(e).__name__}") from None
            if r.status_code in (401, 403):
                raise AuthError(f"{self.host}: authentication failed (token server refused the credentials)", r.status_code)
            if r.status_code != 200:
                raise AuthError(f"{self.host}: token server answered {r.status_code}", r.status_code)
            try:
                doc = loads(body, what)
                token = doc.get("token") or doc.get("access_token")
                ttl = float(doc.get("expires_in") or 60)
            except (PorterError, AttributeError, TypeError, ValueError):
                token, ttl = None, 60.0
            if not isinstance(token, str) or not _TOKEN.match(token):
                raise AuthError(f"{self.host}: token server returned no usable token")
            expiry = time.monotonic() + min(max(ttl - 10, 5), 86400)
            for s in scopes | {scope}:
                self._tokens[s] = (token, expiry)
