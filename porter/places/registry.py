"""A Distribution (OCI) registry over HTTP: the ``registry`` place."""
from __future__ import annotations

import re
from typing import Any, Iterator
from urllib.parse import urljoin

import httpx

from .. import digest as dg
from ..errors import DigestMismatch, NotFoundError, RegistryError, TransportError
from ..mediatypes import ACCEPT, MAX_MANIFEST_BYTES, OCI_INDEX, Descriptor, Manifest, loads
from ..reference import Reference, printable
from ..transport import Options, Transport

_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
MAX_LISTED = 500_000  # names in one catalog or tags list: far beyond real ones, far below memory trouble


class Registry:
    """One registry host, as a source (and the base of the registry destination)."""

    def __init__(self, ref: Reference, opts: Options):
        self.host = self.name = self.origin = ref.host
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
                                  headers={"Accept": ACCEPT}, limit=MAX_MANIFEST_BYTES)
        except NotFoundError as e:
            raise NotFoundError(f"{what}: image not found in {ref.host} ({'; '.join(e.codes) or e.status})",
                                e.status, e.codes) from None
        raw = r.content
        actual = dg.of_bytes(raw)
        header = r.headers.get("Docker-Content-Digest")
        expected = target if target.startswith("sha256:") else dg.check(header, what) if header else actual
        m = Manifest.parse(raw, r.headers.get("Content-Type", ""), actual, what)
        if actual != expected:
            raise DigestMismatch(f"{what}: manifest hashes to {actual}, registry said {expected}")
        return m

    def manifest_digest(self, repository: str, ref: str) -> str | None:
        """The digest ``repository`` stores under ``ref`` (a tag or digest), from one HEAD with the
        full Accept list; None when there is none. An empty string: served, but no digest header."""
        what = f"{self.host}/{repository}:{ref}"
        r = self.http.request("HEAD", f"/v2/{repository}/manifests/{ref}", what, ok=(200, 404), headers={"Accept": ACCEPT})
        if r.status_code != 200:
            return None
        header = r.headers.get("Docker-Content-Digest", "")
        return dg.check(header, what) if header else ""

    def blob_chunks(self, repository: str, desc: Descriptor, offset: int = 0) -> Iterator[bytes]:
        """One GET of the blob from ``offset`` (HTTP Range); the blob reader resumes after a drop."""
        what = f"blob {desc.digest} of {self.host}/{repository}"
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        with self.http.stream("GET", f"/v2/{repository}/blobs/{desc.digest}", what, ok=(200, 206), headers=headers) as r:
            skip = offset if r.status_code == 200 else 0  # the server ignored Range: skip what we have
            if r.status_code == 206 and not r.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                raise TransportError(f"{what}: asked for bytes from {offset}, got {r.headers.get('Content-Range')}")
            for chunk in r.iter_raw():  # as received: a drop loses nothing already read
                if skip:
                    cut = min(skip, len(chunk))
                    chunk, skip = chunk[cut:], skip - cut
                    if not chunk:
                        continue
                yield chunk

    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]] | None:
        """The referrers API's descriptors for ``digest`` (every page); None when the registry
        has no referrers API (it answers 404, which the API never does)."""
        url: str | None = f"/v2/{repository}/referrers/{dg.check(digest, 'referrers')}"
        what = f"{self.host}/{repository}: referrers of {digest}"
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        while url:
            seen.add(url)
            r = self.http.request("GET", url, what, ok=(200, 404), headers={"Accept": OCI_INDEX})
            if r.status_code == 404:
                return None
            doc = loads(r.content, what)
            listed = doc.get("manifests") if isinstance(doc, dict) else None
            if not isinstance(listed, list) or not all(isinstance(d, dict) for d in listed):
                return None  # not the API's answer
            out += listed
            if len(out) > MAX_LISTED:
                raise RegistryError(f"{what}: more than {MAX_LISTED} referrers")
            m = _NEXT.search(r.headers.get("Link", ""))
            url = httpx.URL(urljoin(f"http://x{url}", m[1])).raw_path.decode() if m else None
            if url in seen:
                raise RegistryError(f"{what}: the registry's Link header loops back to {printable(url)}")
        return out

    # --- listing --------------------------------------------------------------------------
    def _paged(self, path: str, key: str, what: str) -> Iterator[str]:
        """Every name of a paginated list, as the registry gives them (unvalidated: callers check
        them as names). Bounded: each page by size, the whole by MAX_LISTED names, and a ``Link``
        that leads back to a page already read ends the listing with an error."""
        url: str | None = f"{path}?n=1000"
        seen: set[str] = set()
        count = 0
        while url:
            seen.add(url)
            r = self.http.request("GET", url, what)
            doc = loads(r.content, what)
            names = doc.get(key) or [] if isinstance(doc, dict) else None  # "tags": null is an empty list
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise RegistryError(f"{what}: malformed answer ({key!r} is not a list of names)")
            count += len(names)
            if count > MAX_LISTED:
                raise RegistryError(f"{what}: more than {MAX_LISTED} names; refusing to list further")
            yield from names
            m = _NEXT.search(r.headers.get("Link", ""))
            url = None
            if m:
                nxt = httpx.URL(urljoin(f"http://x{path}", m[1]))
                url = nxt.raw_path.decode()
                if url in seen:
                    raise RegistryError(f"{what}: the registry's Link header loops back to {printable(url)}")

    def repositories(self) -> Iterator[str]:
        return self._paged("/v2/_catalog", "repositories", f"{self.host}: catalog")

    def tags(self, repository: str) -> Iterator[str]:
        try:
            yield from self._paged(f"/v2/{repository}/tags/list", "tags", f"{self.host}/{repository}: tags")
        except NotFoundError as e:
            if "NAME_UNKNOWN" not in e.codes:
                raise
            # A repository with blobs but no tags (an interrupted push leaves one): no tags.
