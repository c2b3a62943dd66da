"""The registry as a destination: blobs (mount, chunked upload with resume) and manifests.

The engine decides per blob whether to skip, mount or send; this module sends. Uploads go in
chunks (PATCH with Content-Range); after a failed chunk the registry is asked how far it got
(GET on the upload URL) and the upload continues from there — the only place an upload resumes.
When the registry lost what it had, or a whole-blob PUT failed on the wire, the blob starts over
in a new upload (at most --retries times). Bytes are verified as the blob reader hands them on;
the upload is committed (PUT ?digest=) only when they hashed right.

An upload starts with a mount request from the repository itself (``POST ?mount=D&from=REPO``):
201 means the repository holds the blob already, 202 opens the upload — one request where a HEAD
and a POST were two. A mount from another repository that the registry refuses opens an upload
too; that one is used, not cancelled and opened again.
"""
from __future__ import annotations

from typing import Callable, Iterator

import httpx

from .. import digest as dg
from ..blob import BlobReader
from ..errors import Cancelled, DigestMismatch, NotFoundError, PorterError, RegistryError, TransportError
from ..journal import Journal
from ..mediatypes import OCI_INDEX, Manifest
from ..reference import Reference, printable
from ..transport import RETRYABLE, error_for
from .protocol import Abilities
from .registry import Registry

DEFAULT_CHUNK = 64 * 1024 * 1024
OCTET = {"Content-Type": "application/octet-stream"}


class ChunkFailed(Exception):
    """The upload cannot go on from where it stands: start the blob over in a new upload."""


class RegistryDestination:
    """The push side of one registry host (a :class:`~porter.places.protocol.Destination`)."""

    abilities = Abilities(mount=True, resumable=True, per_repository=True, lists_tags=True, asks_on_upload=True,
                          serves_at_once=True)

    def __init__(self, registry: Registry, chunk_size: int = DEFAULT_CHUNK, journal: Journal | None = None):
        self.reg, self.http = registry, registry.http
        self.name = self.origin = registry.host
        self.chunk_size = chunk_size
        self.journal = journal
        self.chunked_ok = True  # cleared when the registry refuses PATCH: then monolithic PUTs
        self._current: dict[str, str] = {}  # journal key -> the upload URL in use (to cancel it)
        self._referrers_api: bool | None = None  # does this registry answer the referrers API?
        self._spare: dict[tuple[str, str], str] = {}  # (repo, digest) -> an upload a refused mount opened
        self.probe_ok = True  # cleared when the registry refuses a mount from the repository itself

    def prepare(self, images: list) -> None:
        pass

    def commit(self) -> None:
        pass

    def close(self) -> None:
        for key in list(self._spare):  # uploads opened by refused mounts that nothing used (interrupted)
            self._drop_spare(*key)
        self.reg.close()

    # --- blobs ----------------------------------------------------------------------------
    def has_blob(self, repo: str, digest: str) -> bool:
        r = self.http.request("HEAD", f"/v2/{repo}/blobs/{digest}", f"{self.reg.host}/{repo}: blob {digest}",
                              ok=(200, 404))
        return r.status_code == 200

    def mount(self, repo: str, digest: str, from_repo: str) -> bool:
        r = self.http.request("POST", f"/v2/{repo}/blobs/uploads/", f"{self.reg.host}/{repo}: mount {digest}",
                              ok=(201, 202), params={"mount": digest, "from": from_repo})
        self._drop_spare(repo, digest)
        if r.status_code == 201:
            self._check_created(r, digest, f"{self.reg.host}/{repo}: mount {digest}")
            return True
        self._spare[(repo, digest)] = self._location(r)  # 202: an upload opened instead; the upload uses it
        return False

    def _drop_spare(self, repo: str, digest: str) -> None:
        spare = self._spare.pop((repo, digest), None)
        if spare:
            self._abandon(spare)

    @staticmethod
    def _check_created(r: httpx.Response, digest: str, what: str) -> None:
        said = r.headers.get("Docker-Content-Digest")
        if said and said != digest:
            raise RegistryError(f"{what}: the registry answered for {printable(said)}")

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

    def write_blob(self, repo: str, blob: BlobReader, on_bytes: Callable[[int], None]) -> bool:
        what = f"{self.reg.host}/{repo}: upload of {blob.digest}"
        restarts = 0
        while True:
            try:
                if self.chunked_ok and blob.size > self.chunk_size:
                    return self._chunked(repo, blob, on_bytes, what)
                return self._monolithic(repo, blob, on_bytes, what)
            except (ChunkFailed, *RETRYABLE) as e:
                err: Exception = e
            except RegistryError as e:
                if not e.temporary:
                    raise
                err = e
            restarts += 1
            if restarts > self.reg.opts.retries:
                raise TransportError(f"{what}: started over {restarts} times ({err})") from None
            blob.restart()

    def _start(self, repo: str, digest: str) -> str | None:
        """An upload URL for ``digest`` in ``repo``; None when the repository holds it already."""
        spare = self._spare.pop((repo, digest), None)
        if spare:
            return spare
        what = f"{self.reg.host}/{repo}: start upload"
        if self.probe_ok:
            r = self.http.request("POST", f"/v2/{repo}/blobs/uploads/", what, ok=(201, 202, 400, 404, 405),
                                  params={"mount": digest, "from": repo})
            if r.status_code == 201:
                self._check_created(r, digest, what)
                return None
            if r.status_code == 202:
                return self._location(r)
            self.probe_ok = False  # a registry that refuses the mount parameters: ask, then start plainly
        if self.has_blob(repo, digest):
            return None
        return self._location(self.http.request("POST", f"/v2/{repo}/blobs/uploads/", what, ok=(202,)))

    @staticmethod
    def _with_digest(location: str, digest: str) -> str:
        return str(httpx.URL(location).copy_merge_params({"digest": digest}))

    @staticmethod
    def _counted(chunks: Iterator[bytes], on_bytes: Callable[[int], None]) -> Iterator[bytes]:
        for chunk in chunks:
            on_bytes(len(chunk))
            yield chunk

    def _monolithic(self, repo: str, blob: BlobReader, on_bytes: Callable[[int], None], what: str) -> bool:
        location = self._start(repo, blob.digest)
        if location is None:
            return False
        try:
            r = self.http.send("PUT", self._with_digest(location, blob.digest), what, timed=False,
                               content=self._counted(blob.read(), on_bytes),
                               headers={**OCTET, "Content-Length": str(blob.size)})
            if r.status_code != 201:
                raise error_for(r, what)
        except (PorterError, *RETRYABLE):
            self._abandon(location)  # a whole-blob upload cannot be resumed: never leave it behind
            raise
        return True

    def _resume_point(self, key: str, blob: BlobReader, what: str) -> tuple[str, int] | None:
        """An upload this job's journal left unfinished: where the registry says it stands, with
        ``blob`` hashed up to there. None when the registry no longer knows it."""
        saved = self.journal.upload(key) if self.journal else None
        if not saved:
            return None
        try:
            got, location = self._status(self.http.check_upload_url(saved["location"], f"{what}: journal"), what)
        except (ChunkFailed, PorterError, *RETRYABLE):
            return None
        if got > blob.size:
            return None
        for _ in blob.read(end=got, send_from=got):  # re-hash what the registry holds
            pass
        return location, got

    def _chunked(self, repo: str, blob: BlobReader, on_bytes: Callable[[int], None], what: str) -> bool:
        key = Journal.upload_key(self.reg.host, repo, blob.digest)
        resumed = self._resume_point(key, blob, what)
        if resumed is None:
            blob.restart()
            start = self._start(repo, blob.digest)
            if start is None:
                return False
            resumed = (start, 0)
        else:
            self._drop_spare(repo, blob.digest)
        location, pos = resumed
        try:
            self._send_chunks(key, location, pos, blob, on_bytes, what)
        except (PorterError, ChunkFailed, *RETRYABLE) as e:
            if not (isinstance(e, Cancelled) and self.journal):  # an interrupted job resumes it from the journal
                self._abandon(self._current.get(key, location), key)
            raise
        finally:
            self._current.pop(key, None)
        return True

    def _send_chunks(self, key: str, location: str, pos: int, blob: BlobReader,
                     on_bytes: Callable[[int], None], what: str) -> None:
        failures, skip_to = 0, None
        while pos < blob.size:
            self._current[key] = location
            end = min(pos + self.chunk_size, blob.size)
            checkpoint = blob.checkpoint()
            send_from = skip_to if skip_to is not None else pos
            body = self._counted(blob.read(end=end, send_from=skip_to), on_bytes)
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
            blob.restore(checkpoint)
            skip_to = got if got > pos else None
        blob.verifier.verify()  # never commit bytes that did not hash right
        self._current[key] = location
        r = self.http.send("PUT", self._with_digest(location, blob.digest), what, headers=OCTET)
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
        self.put_manifest(repo, tag, Manifest.parse(raw, OCI_INDEX, dg.of_bytes(raw), f"{repo}:{tag}"))
        return True

    # --- manifests ------------------------------------------------------------------------
    def tag_set(self, repo: str) -> set[str]:
        return set(self.reg.tags(repo))

    def has_manifest(self, repo: str, ref: str, digest: str) -> bool:
        """True when ``repo`` already serves ``digest`` under ``ref`` (a tag or that digest)."""
        return self.reg.manifest_digest(repo, ref) == digest

    def served(self, repo: str, ref: str) -> str | None:
        return self.reg.manifest_digest(repo, ref)

    def put_manifest(self, repo: str, ref: str, m: Manifest) -> None:
        what = f"{self.reg.host}/{repo}:{ref}" if not ref.startswith("sha256:") else f"{self.reg.host}/{repo}@{ref}"
        r = self.http.request("PUT", f"/v2/{repo}/manifests/{ref}", f"{what}: push manifest", ok=(201,),
                              content=m.raw, headers={"Content-Type": m.media_type})
        got = r.headers.get("Docker-Content-Digest")
        if got and dg.check(got, what) != m.digest:
            raise DigestMismatch(f"{what}: registry stored the manifest as {got}, not {m.digest}")
