"""The small protocols every place implements a part of.

A Source only has to serve raw manifest bytes and blob bytes by digest; everything else
(platform choice, which blobs an image needs, dedup) is derived by the engine.
"""
from __future__ import annotations

from typing import Iterator, Protocol, runtime_checkable

from ..mediatypes import Descriptor, Manifest
from ..reference import Reference


@runtime_checkable
class Source(Protocol):
    name: str  # for messages: a host, "storage DIR", "archive FILE"

    def get_manifest(self, ref: Reference, digest: str | None = None) -> Manifest:
        """The manifest ``ref`` names (or, given ``digest``, that manifest in ``ref``'s repository),
        verified against its digest."""
        ...

    def blob_chunks(self, repository: str, desc: Descriptor, offset: int = 0) -> Iterator[bytes]:
        """The bytes of blob ``desc`` from ``offset`` on, as a stream of chunks. Unverified: the
        caller hashes them (a place that can resume after a dropped connection does so inside)."""
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
