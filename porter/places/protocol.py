"""What a place where images live can do: the only interface the copy engine sees.

A place implements what it can. Every source serves raw manifests and blob bytes by digest; the
engine derives the rest (platforms, which blobs an image needs, dedup). Every destination takes
blobs and manifests and says what it can do beyond that through its abilities — the engine asks
them and never looks at a place's type.

Sources: registry, storage directory, archive (reader), docker daemon.
Destinations: registry, archive (writer), docker daemon.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Protocol, runtime_checkable

from ..mediatypes import Descriptor, Manifest
from ..reference import Reference

if TYPE_CHECKING:
    from ..blob import BlobReader
    from ..image import Image


@runtime_checkable
class Source(Protocol):
    name: str  # for messages: a host, "storage DIR", "archive FILE"
    origin: str | None  # a registry's host (a destination there can mount from it); None elsewhere

    def get_manifest(self, ref: Reference, digest: str | None = None) -> Manifest:
        """The manifest ``ref`` names (or, given ``digest``, that manifest in ``ref``'s repository),
        verified against its digest."""
        ...

    def blob_chunks(self, repository: str, desc: Descriptor, offset: int = 0) -> Iterator[bytes]:
        """The bytes of blob ``desc`` from ``offset`` on, as one stream of chunks. Unverified and
        not retried: the blob reader (:mod:`porter.blob`) hashes them and resumes after a drop."""
        ...


@runtime_checkable
class Lister(Protocol):
    def repositories(self) -> Iterator[str]:
        """Every repository name, as the place lists them (unvalidated: callers check them)."""
        ...

    def tags(self, repository: str) -> Iterator[str]:
        """Every tag of ``repository``, as the place lists them (unvalidated)."""
        ...


@runtime_checkable
class BlobIndex(Protocol):
    def blob_digests(self) -> Iterator[str]:
        """Every blob the place holds, straight from its store (no manifest walk needed)."""
        ...


@dataclass(frozen=True)
class Abilities:
    """What a destination can do beyond taking blobs and manifests."""

    mount: bool = False  # a blob in one repository can be linked into another without sending it
    resumable: bool = False  # an interrupted upload continues from an offset (the journal keeps it)
    per_repository: bool = False  # blobs are held per repository (else one store for the whole place)
    lists_tags: bool = False  # tag_set(repository) lists a repository's tags in one request
    asks_on_upload: bool = False  # write_blob finds a blob already there itself: no has_blob first
    serves_at_once: bool = False  # what is put is served straight away (no commit step): images
    #                               are committed one by one as their blobs land


@runtime_checkable
class Destination(Protocol):
    name: str  # for messages
    origin: str | None  # a registry's host; None elsewhere
    abilities: Abilities

    def prepare(self, images: "list[Image]") -> None:
        """Everything this job will write here, before any blob moves (an archive lays itself out)."""
        ...

    def has_manifest(self, repository: str, ref: str, digest: str) -> bool:
        """True when ``repository`` serves ``digest`` under ``ref`` (a tag or that digest) already."""
        ...

    def has_blob(self, repository: str, digest: str) -> bool:
        """True when ``repository`` holds blob ``digest`` already."""
        ...

    def tag_set(self, repository: str) -> set[str]:
        """Every tag ``repository`` has (with the ``lists_tags`` ability; else empty)."""
        ...

    def mount(self, repository: str, digest: str, from_repository: str) -> bool:
        """Link blob ``digest`` from ``from_repository`` into ``repository``; False when refused."""
        ...

    def write_blob(self, repository: str, blob: "BlobReader", on_bytes: Callable[[int], None]) -> bool:
        """Store the blob ``blob`` reads (verified as it is read); resumes from an offset if it can.
        False when it found the blob there already (``asks_on_upload``) and sent nothing."""
        ...

    def put_manifest(self, repository: str, ref: str, manifest: Manifest) -> None:
        """Store ``manifest``'s exact bytes under ``ref`` (a tag, or its digest)."""
        ...

    def commit(self) -> None:
        """Make the job's writes visible (rename the archive, load it into the daemon)."""
        ...

    def served(self, repository: str, ref: str) -> str | None:
        """The post-condition: the digest this place now serves under ``ref`` (None: nothing)."""
        ...

    def close(self) -> None:
        """Release connections and temp files; what was not committed is dropped."""
        ...
