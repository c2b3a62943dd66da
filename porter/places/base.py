"""The small protocols every place implements a part of.

A Source only has to serve raw manifest bytes and blob bytes by digest; everything else
(platform choice, which blobs an image needs, dedup) is derived by the engine.
"""
from __future__ import annotations

from typing import Iterator, Protocol, runtime_checkable

from ..digest import Verifier
from ..mediatypes import Manifest
from ..reference import Reference


@runtime_checkable
class Source(Protocol):
    def get_manifest(self, ref: Reference, digest: str | None = None) -> Manifest:
        """The manifest ``ref`` names (or, given ``digest``, that manifest in ``ref``'s repository),
        verified against its digest."""
        ...

    def fetch_blob(self, repository: str, sink: Verifier) -> None:
        """Stream blob ``sink.digest`` into ``sink``; ``sink.verify()`` must pass afterwards."""
        ...


@runtime_checkable
class Lister(Protocol):
    def repositories(self) -> Iterator[str]: ...

    def tags(self, repository: str) -> Iterator[str]: ...
