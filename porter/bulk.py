"""Bulk jobs: many images from a repository, a registry or a storage directory, in one run.

An entry is a source, a destination and its filters; a job is one or more entries (from the
command line, or a TOML job file: :mod:`.jobfile`) run through one bounded pool. Each source reference is
expanded into images, each image resolved on its own (a failure marks that image, not the job).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

from .auth import Credentials
from .image import Image, resolve
from .errors import PorterError
from .mediatypes import Platform
from .places.protocol import Lister, Source
from .pool import pmap
from .reference import Reference
from .selection import Filters, expand


@dataclass
class Entry:
    """One source → destination pair with its own filters and credentials."""

    source: str
    destination: str
    filters: Filters = field(default_factory=Filters)
    platform: str | None = None
    storage: str | None = None
    src_creds: Credentials | None = None
    dest_creds: Credentials | None = None

    def key(self) -> dict[str, Any]:
        f = self.filters
        return {"source": self.source, "destination": self.destination, "storage": self.storage,
                "include": f.include, "exclude": f.exclude, "tags": f.tags, "latest": f.latest,
                "shard": f.shard, "platform": self.platform}


def job_key(entries: list[Entry]) -> str:
    return json.dumps([e.key() for e in entries], sort_keys=True)


@dataclass
class Planned:
    """An expanded image: resolved (``image``) or failed before it could be (``error``)."""

    ref: Reference
    dest: Reference
    source: Source
    image: Image | None = None
    error: str = ""
    keep_path: bool = False
    base: Reference | None = None  # the entry's destination, that ``dest`` was derived from
    platform: Platform | None = None  # the entry's: every platform when None

    def __post_init__(self) -> None:
        if self.base is None:
            self.base = self.dest


def expand_entry(entry_ref: Reference, dest: Reference, source: Source, lister: Lister | None, filters: Filters,
                 jobs: int, note: Callable[[str], None] = lambda m: None) -> list[Planned]:
    """The images one entry names, unresolved (names only: a catalog costs little memory); those
    refused by name carry their error. The destination keeps repository paths for a
    whole-registry source (under dest's prefix) or a bare-registry destination."""
    if not (entry_ref.tag or entry_ref.digest) and (dest.tag or dest.digest):
        raise PorterError(f"{dest}: a repository or registry source keeps its tags; give the destination "
                          f"without a tag")
    refused: list[Planned] = []

    def refuse(name: str, why: str) -> None:
        refused.append(Planned(Reference(entry_ref.host, name), dest, source, error=why))

    refs = expand(source, lister, entry_ref, filters, jobs, refuse)
    if len(refs) > 1:
        note(f"{len(refs)} images from {entry_ref or source.name}")
    keep_path = entry_ref.is_registry or dest.is_registry or not entry_ref.repository
    return refused + [Planned(r, dest_for(r, dest, keep_path=keep_path), source, keep_path=keep_path, base=dest)
                      for r in refs]


def resolve_planned(planned: list[Planned], jobs: int) -> None:
    """Resolve each planned image in place (an error marks that image, not the job)."""

    def one(p: Planned) -> None:
        if p.error or p.image is not None:
            return
        try:
            p.image = resolve(p.source, p.ref, p.platform, all_platforms=p.platform is None, strict=True)
            assert p.base is not None
            p.dest = dest_for(p.image.ref, p.base, keep_path=p.keep_path)
        except PorterError as e:
            p.error = str(e)

    pmap(one, planned, jobs)


def dest_for(src: Reference, dest: Reference, keep_path: bool) -> Reference:
    """Where ``src`` goes: ``dest`` names the repository (and maybe tag), or with ``keep_path``
    is a registry/prefix under which the source's repository path is kept."""
    if keep_path:
        path = src.repository.removeprefix("library/") if src.host == "docker.io" else src.repository
        repo = f"{dest.repository}/{path}" if dest.repository else path
        return Reference(dest.host, repo, src.tag)
    return Reference(dest.host, dest.repository, dest.tag or src.tag)
