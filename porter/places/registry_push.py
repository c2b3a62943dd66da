"""The registry as a destination: blobs (skip, mount, chunked upload with resume) and manifests.

Per blob, cheapest first: already in the repository (known or HEAD) → skip; in another
repository of this registry → mount; else upload. Each digest is uploaded once per registry at
a time (single-flight): others wait for it, then mount. Uploads go in chunks (PATCH with
Content-Range); after a failed chunk the registry is asked how far it got (GET on the upload
URL) and the upload continues from there. Bytes are verified on the way; the upload is
committed (PUT ?digest=) only when they hashed right.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Callable, Iterator

import httpx

from .. import digest as dg
from ..digest import Verifier
from ..errors import Cancelled, DigestMismatch, NotFoundError, PorterError, RegistryError, TransportError
from ..journal import Journal
from ..mediatypes import OCI_INDEX, Descriptor, Manifest
from ..reference import Reference, printable
from ..transport import RETRYABLE, error_for
from .base import Source
from .registry import Registry

DEFAULT_CHUNK = 64 * 1024 * 1024
OCTET = {"Content-Type": "application/octet-stream"}


class ChunkFailed(Exception):
    """A PATCH did not complete; the registry may hold part of it."""


class Pusher:
    """Push side of one destination registry. ``on_bytes(n)`` reports upload progress."""

    def __init__(self, registry: Registry, chunk_size: int = DEFAULT_CHUNK, journal: Journal | None = None):
        self.reg, self.http = registry, registry.http
        self.chunk_size = chunk_size
        self.journal = journal
        self._lock = threading.Lock()
        self._inflight: dict[str, Future] = {}
        self._known: dict[str, set[str]] = {}  # digest -> repositories known to hold it
        self.chunked_ok = True  # cleared when the registry refuses PATCH: then monolithic PUTs
        self._current: dict[str, str] = {}  # journal key -> the upload URL in use (to cancel it)
        self._referrers_api: bool | None = None  # does this registry answer the referrers API?

    # --- blobs ----------------------------------------------------------------------------
    def has_blob(self, repo: str, digest: str) -> bool:
        r = self.http.request("HEAD", f"/v2/{repo}/blobs/{digest}", f"{self.reg.host}/{repo}: blob {digest}",
                              ok=(200, 404))
        return r.status_code == 200

    def mount(self, repo: str, digest: str, from_repo: str) -> bool:
        r = self.http.request("POST", f"/v2/{repo}/blobs/uploads/", f"{self.reg.host}/{repo}: mount {digest}",
                              ok=(201, 202), params={"mount": digest, "from": from_repo})
        if r.status_code == 201:
            return True
        self._cancel(r)  # 202: the registry opened an upload instead; we do not need it
        return False

    def _cancel(self, started: httpx.Response) -> None:
        self._abandon(self._location(started))

    def _abandon(self, location: str, journal_key: str | None = None) -> None:
        """Cancel an upload porter gives up on (DELETE on its URL), so the registry does not keep
        its bytes under ``_uploads``; best effort."""
        if journal_key and self.journal:
            self.journal.upload_done(journal_key)
        try:
            self.http.send("DELETE", location, f"{self.reg.host}: cancel upload")
        except (PorterError, httpx.HTTPError):
            pass

    def _location(self, r: httpx.Response) -> str:
        loc = r.headers.get("Location")
        if not loc:
            raise RegistryError(f"{self.reg.host}: upload answer without a Location header", r.status_code)
        try:
            url = str(r.url.join(loc))
        except (httpx.InvalidURL, ValueError):
            raise RegistryError(f"{self.reg.host}: unreadable upload Location {printable(loc)}") from None
        return self.http.check_upload_url(url, f"{self.reg.host}: upload Location")

    def remember(self, repo: str, digest: str) -> None:
        with self._lock:
            self._known.setdefault(digest, set()).add(repo)

    def ensure_blob(self, repo: str, desc: Descriptor, source: Source, src_repo: str,
                    on_bytes: Callable[[int], None]) -> str:
        """Make blob ``desc`` present in ``repo``; returns "skipped", "mounted" or "uploaded"."""
        while True:
            with self._lock:
                current = self._inflight.get(desc.digest)
                owner = current is None or (current.done() and current.exception() is not None)
                if owner:
                    fut: Future = Future()
                    self._inflight[desc.digest] = fut
            if owner:
                break
            assert current is not None
            try:
                current.result()  # someone else is putting this digest into the registry: wait, then mount
            except Exception:
                continue  # it failed: take over
            return self._place(repo, desc, source, src_repo, on_bytes)
        try:
            result = self._place(repo, desc, source, src_repo, on_bytes)
        except BaseException as e:
            fut.set_exception(e)
            raise
        fut.set_result(result)
        return result

    def _place(self, repo: str, desc: Descriptor, source: Source, src_repo: str,
               on_bytes: Callable[[int], None]) -> str:
        known = self._known.get(desc.digest, set())
        if repo in known or self.has_blob(repo, desc.digest):
            self.remember(repo, desc.digest)
            return "skipped"
        candidates = sorted(known)
        if isinstance(source, Registry) and source.host == self.reg.host and src_repo not in candidates:
            candidates.append(src_repo)
        for other in candidates:
            if other != repo and self.mount(repo, desc.digest, other):
                self.remember(repo, desc.digest)
                return "mounted"
        self.upload(repo, desc, source, src_repo, on_bytes)
        self.remember(repo, desc.digest)
        return "uploaded"

    def _start(self, repo: str) -> str:
        r = self.http.request("POST", f"/v2/{repo}/blobs/uploads/", f"{self.reg.host}/{repo}: start upload",
                              ok=(202,))
        return self._location(r)

    @staticmethod
    def _with_digest(location: str, digest: str) -> str:
        return str(httpx.URL(location).copy_merge_params({"digest": digest}))

    def upload(self, repo: str, desc: Descriptor, source: Source, src_repo: str,
               on_bytes: Callable[[int], None]) -> None:
        what = f"{self.reg.host}/{repo}: upload of {desc.digest}"
        attempts = 0
        while True:
            try:
                if self.chunked_ok and desc.size > self.chunk_size:
                    self._chunked(repo, desc, source, src_repo, on_bytes, what)
                else:
                    self._monolithic(repo, desc, source, src_repo, on_bytes, what)
                return
            except (TransportError, ChunkFailed, *RETRYABLE) as e:
                attempts += 1
                if attempts > self.reg.opts.retries:
                    raise TransportError(f"{what}: failed {attempts} times ({e})") from None
            except RegistryError as e:
                attempts += 1
                if not e.temporary or attempts > self.reg.opts.retries:
                    raise

    def _body(self, source: Source, src_repo: str, desc: Descriptor, start: int, end: int, v: Verifier,
              on_bytes: Callable[[int], None], skip_to: int | None = None) -> Iterator[bytes]:
        """Bytes [start, end) of the source blob, hashed into ``v``; those before ``skip_to`` are
        hashed but not yielded (the registry has them already)."""
        pos = start
        for chunk in source.blob_chunks(src_repo, desc, start):
            if pos + len(chunk) > end:
                chunk = chunk[: end - pos]
            v.update(chunk)
            if skip_to is not None and pos < skip_to:
                keep = chunk[skip_to - pos:] if pos + len(chunk) > skip_to else b""
            else:
                keep = chunk
            pos += len(chunk)
            if keep:
                on_bytes(len(keep))
                yield keep
            if pos >= end:
                break
        if pos < end:
            raise DigestMismatch(f"blob {desc.digest}: source ended at byte {pos} of {desc.size}")
        if end == desc.size:
            v.verify()  # raises inside the request: the upload is never committed

    def _monolithic(self, repo: str, desc: Descriptor, source: Source, src_repo: str,
                    on_bytes: Callable[[int], None], what: str) -> None:
        location = self._start(repo)
        v = Verifier(desc.digest, desc.size, f"blob {desc.digest} from {source.name}/{src_repo}")
        body = self._body(source, src_repo, desc, 0, desc.size, v, on_bytes)
        try:
            r = self.http.with_retries(lambda: self.http.send(
                "PUT", self._with_digest(location, desc.digest), what, timed=False, content=body,
                headers={**OCTET, "Content-Length": str(desc.size)}), what, retries=0)
            if r.status_code != 201:
                raise error_for(r, what)
        except (PorterError, *RETRYABLE):
            self._abandon(location)  # a whole-blob upload cannot be resumed: never leave it behind
            raise

    def _resume_point(self, key: str, source: Source, src_repo: str, desc: Descriptor, v: Verifier,
                      what: str) -> tuple[str, int] | None:
        """An upload this job's journal left unfinished: where the registry says it stands, with
        ``v`` fed the bytes it already has. None when the registry no longer knows it."""
        saved = self.journal.upload(key) if self.journal else None
        if not saved:
            return None
        try:
            got, location = self._status(self.http.check_upload_url(saved["location"], f"{what}: journal"), what)
        except (ChunkFailed, PorterError, *RETRYABLE):
            return None
        if got > desc.size:
            return None
        for chunk in source.blob_chunks(src_repo, desc, 0):  # re-hash what the registry holds
            take = chunk[: got - v.offset]
            v.update(take)
            if v.offset >= got:
                break
        return location, got

    def _chunked(self, repo: str, desc: Descriptor, source: Source, src_repo: str,
                 on_bytes: Callable[[int], None], what: str) -> None:
        key = Journal.upload_key(self.reg.host, repo, desc.digest)
        v = Verifier(desc.digest, desc.size, f"blob {desc.digest} from {source.name}/{src_repo}")
        resumed = self._resume_point(key, source, src_repo, desc, v, what)
        if resumed is None:
            v = Verifier(desc.digest, desc.size, v.what)
        location, pos = resumed or (self._start(repo), 0)
        try:
            self._send_chunks(key, location, pos, desc, source, src_repo, v, on_bytes, what)
        except (PorterError, ChunkFailed, *RETRYABLE) as e:
            if not (isinstance(e, Cancelled) and self.journal):  # an interrupted job resumes it from the journal
                self._abandon(self._current.get(key, location), key)
            raise
        finally:
            self._current.pop(key, None)

    def _send_chunks(self, key: str, location: str, pos: int, desc: Descriptor, source: Source, src_repo: str,
                     v: Verifier, on_bytes: Callable[[int], None], what: str) -> None:
        failures, skip_to = 0, None
        while pos < desc.size:
            self._current[key] = location
            end = min(pos + self.chunk_size, desc.size)
            checkpoint = v.copy()
            send_from = skip_to if skip_to is not None else pos
            body = self._body(source, src_repo, desc, pos, end, v, on_bytes, skip_to)
            try:
                r = self.http.send("PATCH", location, what, timed=False, content=body, headers={
                    **OCTET, "Content-Range": f"{send_from}-{end - 1}", "Content-Length": str(end - send_from)})
            except RETRYABLE as e:
                r = None
                err: Exception = e
            if r is not None and r.status_code == 202:
                location, pos, skip_to, failures = self._location(r), end, None, 0
                if self.journal:
                    self.journal.upload_progress(key, location, pos)
                continue
            if r is not None and r.status_code in (400, 405, 415, 416, 501) and pos == 0 and failures == 0:
                self.chunked_ok = False  # this registry will not take chunks: whole-blob PUTs
                raise ChunkFailed(f"chunked upload refused ({r.status_code})")
            if r is not None:
                err = error_for(r, what)
                if not isinstance(err, RegistryError) or not err.temporary:
                    raise err
            failures += 1
            if failures > self.reg.opts.retries:
                raise TransportError(f"{what}: chunk at {send_from} kept failing ({err})")
            # Ask the registry how far it got, and carry on from there. (Distribution answers only
            # when it holds exactly what the last good chunk left; after a partial write it calls
            # the upload invalid, and the blob starts over in a new upload.)
            got, location = self._status(location, what)
            if got < pos:
                raise ChunkFailed(f"registry lost data before byte {pos} (has {got})")
            v, skip_to = checkpoint, (got if got > pos else None)
        v.verify()  # never commit bytes that did not hash right
        self._current[key] = location
        r = self.http.send("PUT", self._with_digest(location, desc.digest), what, headers=OCTET)
        if r.status_code != 201:
            raise error_for(r, what)
        if self.journal:
            self.journal.upload_done(key)

    def _status(self, location: str, what: str) -> tuple[int, str]:
        r = self.http.with_retries(lambda: self.http.send("GET", location, what), what)
        if r.status_code != 204:
            raise ChunkFailed(f"upload status: {r.status_code}")
        # Distribution says "0-<last byte>", and "0-0" for an empty upload too: read that as 0
        # (if it really held one byte, the next PATCH is refused and the blob starts over).
        rng = r.headers.get("Range", "0-0")
        try:
            last = int(rng.rsplit("-", 1)[1])
        except (IndexError, ValueError):
            raise ChunkFailed(f"upload status: unreadable Range {rng!r}") from None
        return (last + 1 if last > 0 else 0), self._location(r)

    # --- referrers ------------------------------------------------------------------------
    def attach_referrers(self, repo: str, subject: str, descriptors: list[dict]) -> bool:
        """Make ``descriptors`` findable as referrers of ``subject``: nothing to do where the
        registry has the referrers API (it indexes ``subject`` fields itself); elsewhere merge them
        into the ``sha256-<hex>`` fallback index, keeping what it lists. True when it changed."""
        from ..referrers import fallback_tag, merged_index

        if self._referrers_api is None:
            self._referrers_api = self.reg.referrers(repo, subject) is not None
        if self._referrers_api:
            return False
        tag = fallback_tag(subject)
        try:
            existing: Manifest | None = self.reg.get_manifest(Reference(self.reg.host, repo, tag))
        except NotFoundError:
            existing = None
        raw = merged_index(existing if existing is not None and existing.is_index else None, descriptors)
        if raw is None:
            return False
        self.put_manifest(repo, tag, Manifest.parse(raw, OCI_INDEX, dg.of_bytes(raw), f"{repo}:{tag}"), check=False)
        return True

    # --- manifests ------------------------------------------------------------------------
    def has_manifest(self, repo: str, ref: str, digest: str) -> bool:
        """True when ``repo`` already serves ``digest`` under ``ref`` (a tag or that digest)."""
        return self.reg.manifest_digest(repo, ref) == digest

    def put_manifest(self, repo: str, ref: str, m: Manifest, check: bool = True) -> bool:
        """Push ``m`` under ``ref`` unless (``check``) it is there already; True when it was pushed."""
        if check and self.has_manifest(repo, ref, m.digest):
            return False
        what = f"{self.reg.host}/{repo}:{ref}" if not ref.startswith("sha256:") else f"{self.reg.host}/{repo}@{ref}"
        r = self.http.request("PUT", f"/v2/{repo}/manifests/{ref}", f"{what}: push manifest", ok=(201,),
                              content=m.raw, headers={"Content-Type": m.media_type})
        got = r.headers.get("Docker-Content-Digest")
        if got and dg.check(got, what) != m.digest:
            raise DigestMismatch(f"{what}: registry stored the manifest as {got}, not {m.digest}")
        return True
