"""A Distribution (OCI) registry over HTTP: the ``registry`` place."""
from __future__ import annotations

import re
from typing import Iterator
from urllib.parse import urljoin

import httpx

from .. import digest as dg
from ..digest import Verifier
from ..errors import DigestMismatch, NotFoundError, TransportError
from ..mediatypes import ACCEPT, MAX_MANIFEST_BYTES, Manifest
from ..reference import Reference
from ..transport import Options, RETRYABLE, Transport

_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


class Registry:
    """One registry host. Blob downloads resume with HTTP Range after a dropped connection."""

    def __init__(self, ref: Reference, opts: Options):
        self.host = ref.host
        self.opts = opts
        self.http = Transport(ref.host, ref.api_host, opts)

    def close(self) -> None:
        self.http.close()

    # --- Source ---------------------------------------------------------------------------
    def get_manifest(self, ref: Reference, digest: str | None = None) -> Manifest:
        target = digest or ref.manifest_ref
        what = f"{ref.name}@{target}" if target.startswith("sha256:") else f"{ref.name}:{target}"
        try:
            r = self.http.request("GET", f"/v2/{ref.repository}/manifests/{target}", what,
                                  headers={"Accept": ACCEPT})
        except NotFoundError as e:
            raise NotFoundError(f"{what}: image not found in {ref.host} ({'; '.join(e.codes) or e.status})",
                                e.status, e.codes) from None
        raw = r.content
        if len(raw) > MAX_MANIFEST_BYTES:
            raise DigestMismatch(f"{what}: manifest larger than {MAX_MANIFEST_BYTES} bytes")
        actual = dg.of_bytes(raw)
        expected = target if target.startswith("sha256:") else r.headers.get("Docker-Content-Digest") or actual
        m = Manifest.parse(raw, r.headers.get("Content-Type", ""), actual, what)
        if actual != expected:
            raise DigestMismatch(f"{what}: manifest hashes to {actual}, registry said {expected}")
        return m

    def fetch_blob(self, repository: str, sink: Verifier) -> None:
        path = f"/v2/{repository}/blobs/{sink.digest}"
        what = f"blob {sink.digest} of {self.host}/{repository}"
        drops = 0
        while True:
            before = sink.offset
            headers = {"Range": f"bytes={sink.offset}-"} if sink.offset else {}
            try:
                with self.http.stream("GET", path, what, ok=(200, 206), headers=headers) as r:
                    if r.status_code == 200 and sink.offset:
                        sink.rewind()  # the server ignored Range: start over
                    for chunk in r.iter_raw():  # as received: a drop loses nothing already read
                        sink.write(chunk)
            except RETRYABLE as e:
                # A drop mid-body: resume from what we have. Count only drops that made no progress.
                drops = 0 if sink.offset > before else drops + 1
                if drops > self.opts.retries:
                    raise TransportError(f"{what}: connection kept failing ({type(e).__name__})") from e
                continue
            break
        sink.verify()

    # --- listing --------------------------------------------------------------------------
    def _paged(self, path: str, key: str, what: str) -> Iterator[str]:
        url: str | None = f"{path}?n=1000"
        while url:
            r = self.http.request("GET", url, what)
            yield from (r.json().get(key) or [])
            m = _NEXT.search(r.headers.get("Link", ""))
            url = None
            if m:
                nxt = httpx.URL(urljoin(f"http://x{path}", m[1]))
                url = nxt.raw_path.decode()

    def repositories(self) -> Iterator[str]:
        return self._paged("/v2/_catalog", "repositories", f"{self.host}: catalog")

    def tags(self, repository: str) -> Iterator[str]:
        return self._paged(f"/v2/{repository}/tags/list", "tags", f"{self.host}/{repository}: tags")
