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


def plan(entry_ref: Reference, dest: Reference, source: Source, lister: Lister | None, filters: Filters,
         platform: Platform | None, jobs: int, note: Callable[[str], None] = lambda m: None) -> list[Planned]:
    """Expand and resolve one entry. The destination keeps repository paths for a whole-registry
    source (under dest's prefix) or a bare-registry destination."""
    if not (entry_ref.tag or entry_ref.digest) and (dest.tag or dest.digest):
        raise PorterError(f"{dest}: a repository or registry source keeps its tags; give the destination "
                          f"without a tag")
    refused: list[Planned] = []

    def refuse(name: str, why: str) -> None:
        refused.append(Planned(Reference(entry_ref.host, name), dest, source, error=why))

    refs = expand(source, lister, entry_ref, filters, jobs, refuse)
    if len(refs) > 1:
        note(f"resolving {len(refs)} images from {entry_ref or source.name}")
    keep_path = entry_ref.is_registry or dest.is_registry or not entry_ref.repository

    def one(ref: Reference) -> Planned:
        p = Planned(ref, dest_for(ref, dest, keep_path=keep_path), source)
        try:
            p.image = resolve(source, ref, platform, all_platforms=platform is None, strict=True)
            p.dest = dest_for(p.image.ref, dest, keep_path=keep_path)
        except PorterError as e:
            p.error = str(e)
        return p

    return refused + pmap(one, refs, jobs)


def dest_for(src: Reference, dest: Reference, keep_path: bool) -> Reference:
    """Where ``src`` goes: ``dest`` names the repository (and maybe tag), or with ``keep_path``
    is a registry/prefix under which the source's repository path is kept."""
    if keep_path:
        path = src.repository.removeprefix("library/") if src.host == "docker.io" else src.repository
        repo = f"{dest.repository}/{path}" if dest.repository else path
        return Reference(dest.host, repo, src.tag)
    return Reference(dest.host, dest.repository, dest.tag or src.tag)
