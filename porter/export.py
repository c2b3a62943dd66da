"""``porter export``: images from a source into one docker-loadable, OCI-layout archive."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Callable

from .engine import Image, Stats, Transfer, copy_blobs, resolve
from .mediatypes import Platform
from .bulk import Entry
from .delta import Base
from .endpoints import Sources
from .places.archive import ArchiveWriter, members_for, omitted_layers
from .places.base import Lister, Source
from .referrers import Attachments, Finders, as_image
from .selection import Refuse, expand
from .progress import Quiet
from .reference import Reference


def export(refs: list[Reference], source_for: Callable[[Reference], Source], output: str, *,
           platform: Platform, all_platforms: bool, jobs: int, force: bool, progress: Quiet,
           strict: bool = False, since: Base | None = None, split_size: int | None = None,
           attach: Attachments = Attachments()) -> dict[str, Any]:
    """Write ``refs`` to ``output`` (a delta against ``since``; in volumes of ``split_size``);
    returns the summary ``--json`` prints. Leaves nothing behind on failure."""
    started = time.monotonic()
    writer = ArchiveWriter(output, force=force, split_size=split_size)  # refuses a bad output before any network work
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(refs)))) as pool:
            images: list[Image] = list(pool.map(
                lambda r: resolve(source_for(r), r, platform, all_platforms, strict), refs))
        if attach.enabled:
            images, source_for = with_attachments(images, source_for, attach)
        stats = write_archive(images, source_for, writer, jobs, progress, since)
        writer.commit()
    finally:
        writer.abort()
    omitted = omitted_layers(images, since) if since else {}
    return {
        "output": output,
        "images": [{"reference": str(i.ref), "digest": i.top.digest, "mediaType": i.top.media_type,
                    **({"attached_to": i.subject} if i.subject else {}),
                    "loads": i.chosen.digest if i.chosen else None,
                    **({"platform": str(i.platform)} if i.platform else {}),
                    **({"archived_digest": i.listed.digest} if i.narrowed else {}),
                    **({"zstd_layers": True} if i.chosen and any("zstd" in d.media_type for d in i.chosen.layers)
                       else {})} for i in images],
        "blobs": stats.blobs,
        "bytes": stats.bytes,
        "archive_bytes": writer.size,
        **({"delta": {"base": since.identity, "base_path": since.path, "omitted": len(omitted),
                      "omitted_bytes": sum(d.size for d in omitted.values())}} if since else {}),
        **({"volumes": writer.volumes} if split_size else {}),
        "seconds": round(time.monotonic() - started, 3),
    }


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


def write_archive(images: list[Image], source_for: Callable[[Reference], Source], writer: ArchiveWriter,
                  jobs: int, progress: Quiet, since: Base | None = None) -> Stats:
    """Lay out the archive for ``images`` and fill in every blob (but the layers ``since``
    holds); the caller commits or aborts."""
    writer.layout(members_for(images, since))
    omitted = omitted_layers(images, since) if since else {}
    transfers = [Transfer(source_for(img.ref), img.ref.repository, d) for img in images for d in img.blobs
                 if d.digest not in omitted]
    return copy_blobs(transfers, lambda d: writer.sink(d.digest), jobs, progress)


def load_into_daemon(images: list[Image], source_for: Callable[[Reference], Source], jobs: int,
                     progress: Quiet) -> dict[str, Any]:
    """Export ``images`` into a temp archive and ``docker load`` it: any source into the engine."""
    import tempfile

    from .places import daemon

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="porter-load-") as tmp:
        writer = ArchiveWriter(f"{tmp}/load.tar")
        try:
            stats = write_archive(images, source_for, writer, jobs, progress)
            writer.commit()
        finally:
            writer.abort()
        loaded = daemon.load(f"{tmp}/load.tar")
    return {"loaded": loaded, "images": [{"reference": str(i.ref), "digest": i.chosen.digest if i.chosen else None}
                                         for i in images],
            "blobs": stats.blobs, "bytes": stats.bytes, "seconds": round(time.monotonic() - started, 3)}
