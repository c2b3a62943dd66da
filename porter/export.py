"""``porter export``: images from a source into one docker-loadable, OCI-layout archive."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Callable

from .bulk import Entry
from .delta import Base
from .endpoints import Sources
from .engine import Engine, Item
from .image import Image, resolve
from .mediatypes import Platform
from .places.archive import ArchiveDestination, ArchiveWriter
from .places.protocol import Lister, Source
from .pool import pmap
from .progress import Quiet
from .reference import Reference
from .referrers import Attachments, Finders, as_image
from .results import Delta, Exported, ExportResult
from .selection import Refuse, expand


def export(refs: list[Reference], source_for: Callable[[Reference], Source], output: str, *,
           platform: Platform, all_platforms: bool, jobs: int, force: bool, progress: Quiet,
           strict: bool = False, since: Base | None = None, split_size: int | None = None,
           attach: Attachments = Attachments(), retries: int = 5) -> ExportResult:
    """Write ``refs`` to ``output`` (a delta against ``since``; in volumes of ``split_size``).
    Leaves nothing behind on failure."""
    started = time.monotonic()
    writer = ArchiveWriter(output, force=force, split_size=split_size)  # refuses a bad output before any network work
    dest = ArchiveDestination(writer, since)
    try:
        images: list[Image] = pmap(lambda r: resolve(source_for(r), r, platform, all_platforms, strict), refs, jobs)
        if attach.enabled:
            images, source_for = with_attachments(images, source_for, attach)
        items = [Item(img, source_for(img.ref), dest, img.named) for img in images]
        report = Engine(jobs, progress, retries=retries).copy(items)
    finally:
        dest.close()
    omitted = dest.omitted
    return ExportResult(
        output=output,
        images=[Exported(str(i.ref), i.top.digest, i.top.media_type, i.chosen.digest if i.chosen else None,
                         attached_to=i.subject or "", platform=str(i.platform) if i.platform else "",
                         archived_digest=i.listed.digest if i.narrowed else "",
                         zstd_layers=bool(i.chosen and any("zstd" in d.media_type for d in i.chosen.layers)))
                for i in images],
        blobs=report.blobs.uploaded, bytes=report.bytes_sent, archive_bytes=writer.size,
        seconds=round(time.monotonic() - started, 3),
        delta=Delta(since.identity, since.path, len(omitted), sum(d.size for d in omitted.values())) if since else None,
        volumes=writer.volumes if split_size else [])


def with_attachments(images: list[Image], source_for: Callable[[Reference], Source], attach: Attachments
                     ) -> tuple[list[Image], Callable[[Reference], Source]]:
    """``images`` and everything attached to them (found in each one's source), and a
    ``source_for`` that also knows where the attachments come from."""
    finders = Finders(attach.types)
    extra: dict[Reference, Source] = {}
    out = list(images)
    seen: set[tuple[str, str]] = set()
    for img in images:
        source = source_for(img.ref)
        for a in finders.of(source, img):
            if (img.ref.repository, a.manifest.digest) not in seen:
                seen.add((img.ref.repository, a.manifest.digest))
                att = as_image(a, img.ref)
                extra[att.ref] = source
                out.append(att)
    return out, lambda r: extra.get(r) or source_for(r)


def expand_entries(entries: list[Entry], opts: Any, as_registry: str | None, jobs: int, refuse: Refuse
                   ) -> tuple[list[Reference], Callable[[Reference], Source], Callable[[], None]]:
    """Every image the entries name (repositories and registries expanded through their filters),
    the source each comes from (entries with the same storage and credentials share one), and a
    function that closes them all."""
    opened: dict[tuple, Sources] = {}
    by_ref: dict[Reference, Source] = {}
    refs: list[Reference] = []
    try:
        for e in entries:
            key = (e.storage, e.src_creds)
            if key not in opened:
                opened[key] = Sources(replace(opts, creds=e.src_creds) if e.src_creds else opts, e.storage, as_registry)
            sources = opened[key]
            ref = sources.parse(e.source, allow_registry=True)
            source = sources(ref)
            for r in expand(source, source if isinstance(source, Lister) else None, ref, e.filters, jobs, refuse):
                if r not in by_ref:
                    by_ref[r] = source
                    refs.append(r)
    except BaseException:
        for s in opened.values():
            s.close()
        raise

    def close() -> None:
        for s in opened.values():
            s.close()

    return refs, by_ref.__getitem__, close
