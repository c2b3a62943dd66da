"""A registry's raw storage directory (Distribution's filesystem driver), read with no server.

    docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data                          every blob
    docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/current/link   "sha256:<hex>"
    docker/registry/v2/repositories/<name>/_manifests/revisions/sha256/<hex>/link
    docker/registry/v2/repositories/<name>/_layers/sha256/<hex>/link

Every manifest is verified against its digest when read; every blob while it streams.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from .. import digest as dg
from .. import safepath
from ..errors import DigestMismatch, NotFoundError, PorterError, StorageError
from ..mediatypes import MAX_MANIFEST_BYTES, Descriptor, Manifest
from ..reference import Reference, check_repository, check_tag

_INTERNAL = ("_manifests", "_layers", "_uploads")
MAX_LINK_BYTES = 100  # "sha256:" + 64 hex, and a newline at most


def find_v2(path: str | Path) -> Path:
    """The ``v2`` directory of a registry root (or of ``v2`` itself); a clear error otherwise."""
    p = Path(path)
    if not p.exists():
        raise StorageError(f"{p}: no such directory")
    if not p.is_dir():
        raise StorageError(f"{p}: not a directory")
    for cand in (p / "docker" / "registry" / "v2", p / "registry" / "v2", p):
        if (cand / "repositories").is_dir() or (cand / "blobs").is_dir():
            return cand
    raise StorageError(f"{p} is not registry storage (no docker/registry/v2 with blobs/ and repositories/ in it)")


class Storage:
    """The ``storage`` place: Source and Lister over a Distribution storage directory."""

    def __init__(self, path: str | Path):
        self.root = Path(path)
        self.name, self.origin = f"storage {self.root}", None
        self.v2 = find_v2(path)
        self.repos_dir = self.v2 / "repositories"
        self._blobs = str(self.v2 / "blobs" / "sha256")

    def close(self) -> None:
        pass

    # --- paths ----------------------------------------------------------------------------
    def blob_path(self, digest: str) -> Path:
        h = dg.hex_of(digest)
        return Path(f"{self._blobs}/{h[:2]}/{h}/data")  # one Path, not five joins: gc calls this per blob

    def _repo(self, repository: str) -> Path:
        try:
            check_repository(repository)
        except PorterError as e:
            raise StorageError(str(e)) from None
        d = self.repos_dir / repository
        if not safepath.plain_dir(self.v2, d / "_manifests"):
            raise NotFoundError(f"{repository}: no such repository in {self.root}", 404)
        return d

    def read(self, path: Path, limit: int, what: str) -> bytes:
        """A regular file of the storage tree, bounded, no link followed; NotFoundError when absent."""
        try:
            return safepath.read_regular(self.v2, path, limit)
        except FileNotFoundError:
            raise NotFoundError(f"{what}: not found in {self.root}", 404) from None
        except OSError as e:
            raise StorageError(f"{what}: cannot read {path}: {e.strerror}") from None
        except StorageError as e:
            raise StorageError(f"{what}: {e}") from None

    def read_link(self, path: Path, what: str) -> str:
        """The digest a link file names (a link file holds ``sha256:<hex>``, under 100 bytes)."""
        try:
            text = self.read(path, MAX_LINK_BYTES, what).decode("ascii").strip()
            return dg.hex_of(text) and text
        except (DigestMismatch, UnicodeDecodeError):
            raise StorageError(f"{what}: link file {path} does not hold a sha256 digest") from None

    def tag_digest(self, repository: str, tag: str) -> str:
        try:
            check_tag(tag)
        except PorterError as e:
            raise StorageError(str(e)) from None
        link = Path(f"{self._repo(repository)}/_manifests/tags/{tag}/current/link")
        return self.read_link(link, f"{repository}:{tag}")

    # --- Source ---------------------------------------------------------------------------
    def get_manifest(self, ref: Reference, digest: str | None = None) -> Manifest:
        repo = self._repo(ref.repository)
        pinned = digest or ref.digest
        if pinned is None:
            tag = ref.tag or "latest"
            digest = self.tag_digest(ref.repository, tag)
            what = f"{ref.repository}:{tag}"
        else:
            digest = pinned
            what = f"{ref.repository}@{digest}"
            revision = repo / "_manifests" / "revisions" / "sha256" / dg.hex_of(digest) / "link"
            try:
                self.read_link(revision, what)
            except NotFoundError:
                raise NotFoundError(f"{what}: not a manifest of repository {ref.repository} in {self.root}",
                                    404) from None
        path = self.blob_path(digest)
        try:
            raw = self.read(path, MAX_MANIFEST_BYTES, what)
        except NotFoundError:
            raise StorageError(f"{what}: points at {digest}, whose blob is missing from storage ({path})") from None
        dg.check_bytes(raw, digest, f"{what}: manifest blob {path}")
        return Manifest.parse(raw, "", digest, what)

    def blob_chunks(self, repository: str, desc: Descriptor, offset: int = 0) -> Iterator[bytes]:
        path = self.blob_path(desc.digest)
        try:
            fd, _ = safepath.open_regular(self.v2, path)
            yield from dg.file_chunks(fd, offset)
        except FileNotFoundError:
            raise StorageError(f"blob {desc.digest} (used by {repository}) is missing from storage ({path})") from None
        except OSError as e:
            raise StorageError(f"blob {desc.digest}: cannot read {path}: {e.strerror}") from None

    def blob_digests(self) -> Iterator[str]:
        """Every blob with data under ``blobs/`` (links and stray names skipped)."""
        root = self.v2 / "blobs" / "sha256"
        prefixes, _ = safepath.scan_dirs(self.v2, root)
        for prefix in prefixes:
            names, _ = safepath.scan_dirs(self.v2, root / prefix)
            for n in names:
                if len(n) == 64 and n.startswith(prefix) and os.path.isfile(root / prefix / n / "data"):
                    yield "sha256:" + n

    # --- Lister ---------------------------------------------------------------------------
    def repositories(self) -> Iterator[str]:
        """Every repository, nested names included, in sorted order (as the registry's catalog)."""
        found: list[str] = []
        for dirpath, dirnames, _ in os.walk(self.repos_dir, onerror=self._walk_error):  # links not followed
            if "_manifests" in dirnames:
                found.append(os.path.relpath(dirpath, self.repos_dir).replace(os.sep, "/"))
            dirnames[:] = [d for d in dirnames if d not in _INTERNAL and not os.path.islink(os.path.join(dirpath, d))]
        return iter(sorted(found))

    @staticmethod
    def _walk_error(e: OSError) -> None:
        raise StorageError(f"cannot read {e.filename}: {e.strerror}")

    def tags(self, repository: str) -> Iterator[str]:
        d = self._repo(repository) / "_manifests" / "tags"
        names, _ = safepath.scan_dirs(self.v2, d)  # plain directories only: links were left out
        return iter(n for n in names if os.path.isdir(f"{d}/{n}/current") and not os.path.islink(f"{d}/{n}/current"))
