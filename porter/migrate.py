"""The import and mirror jobs: plan every entry, copy through the one engine (into a registry or
the docker engine), then optionally delete what moved from the source. Printing is the caller's."""
from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any, Callable

from . import digest as dg
from . import engine
from . import progress as progress_
from .bulk import Entry, Planned as BulkPlanned, dest_for, expand_entry, job_key, resolve_planned
from .endpoints import DAEMON, Destinations, Sources
from .engine import Engine, Item, Report
from .errors import ArchiveError, PorterError
from .image import Image, resolve
from .journal import Journal, default_path
from .mediatypes import Platform, loads
from .places.protocol import Lister
from .pool import ahead, pmap
from .reference import Reference, check_tag, parse
from .referrers import (COSIGN_SUFFIXES, DESCRIPTOR_ANNOTATION, SUBJECT_ANNOTATION, Attachments, attachment_items,
                        artifact_type_of, is_attachment_tag, update_fallbacks)
from .results import Copied, Loaded, LoadResult, Planned, PreviewResult, PushResult


def push_result(rows: list[Copied], report: Report) -> PushResult:
    """The summary of a push: each image as it ended, and how its blobs got there."""
    return PushResult(rows, sum(r.state == "copied" for r in rows), sum(r.state == "present" for r in rows),
                      sum(r.state == "failed" for r in rows),
                      sum(1 for r in rows if r.attached_to and r.state in ("copied", "present")),
                      report.blobs, report.bytes_sent, report.bytes_skipped, report.seconds)


def copied(i: Item) -> Copied:
    img = i.image
    return Copied(str(img.ref), str(i.target), i.state, img.listed.digest, img.listed.media_type, i.error,
                  img.top.digest if img.narrowed else "", str(img.platform) if img.narrowed else "",
                  img.subject or "")


def load(images: list[Image], source_for: Callable[[Reference], Any], jobs: int, quiet: bool,
         retries: int) -> LoadResult:
    """``images`` into the docker engine: the one engine, with the daemon as the destination."""
    from .places.daemon import DaemonDestination

    dest = DaemonDestination()
    try:
        items = [Item(img, source_for(img.ref), dest, img.named) for img in images]
        report = Engine(jobs, progress_.make(quiet), retries=retries).copy(items)
    finally:
        dest.close()
    return LoadResult(dest.loaded, [Loaded(str(i.ref), i.chosen.digest if i.chosen else None) for i in images],
                      report.blobs.uploaded, report.bytes_sent, report.seconds)


def import_archive(archive: str, destination: str, opts: Any, chunk: int, attach: Attachments,
                   platform: Platform | None, jobs: int, quiet: bool) -> PushResult | LoadResult:
    """Every image of ``archive`` into a registry (or the docker engine).
    Attachments in the archive (signatures, SBOMs) go beside the images they are attached to."""
    from .places.archive_reader import ArchiveSource

    to_daemon = destination.startswith(DAEMON)
    if to_daemon and destination != DAEMON:
        raise PorterError("import into the docker daemon keeps the archive's names: use plain 'docker-daemon:'")
    dest = None if to_daemon else parse(destination)
    source = ArchiveSource(archive)
    dests = Destinations(opts, chunk)
    try:
        if source.delta_base and to_daemon:
            raise PorterError(f"{archive} is a delta archive (it leaves out layers its base holds): import it into "
                              f"the registry that holds the base, not into docker-daemon:")
        found = [e for e in source.images() if subject_of(e) is None]
        attached = [e for e in source.images() if subject_of(e) is not None and attach.enabled and not to_daemon]
        distinct = len({e.desc.digest for e in found})
        planned: dict[str, tuple[Reference, Image]] = {}  # by destination: one push per name
        repos: dict[str, Reference] = {}  # source repository -> where its images go
        for entry in found:
            target = destination_of(entry, dest, distinct, archive)
            ref = Reference(target.host, target.repository, target.tag, entry.desc.digest)
            if to_daemon:  # docker load takes one platform per image
                img = resolve(source, ref, platform or Platform.host(), all_platforms=False, strict=platform is not None)
            else:
                if platform is None:
                    check_platforms_present(source, ref, entry.name or entry.desc.digest)
                img = resolve(source, ref, platform, all_platforms=platform is None, strict=True)
            planned[str(target)] = (target, img)
            if entry.name and ("/" in entry.name or ":" in entry.name):
                repos.setdefault(parse(entry.name).repository, target)
        for entry in attached:
            tag_only = entry.name is not None and "/" not in entry.name and ":" not in entry.name
            try:
                named = parse(entry.name) if entry.name and not tag_only else None
            except PorterError as e:
                raise ArchiveError(f"{archive}: attachment {entry.desc.digest} has an invalid name: {e}") from None
            home = repos.get(named.repository) if named else None
            if home is None and dest is not None and not dest.tag:
                home = destination_of(entry, dest, 1, archive)
            elif home is None:
                if not planned:
                    raise PorterError(f"{archive} holds only attachments (signatures, SBOMs), no image to attach them to")
                home = next(iter(planned.values()))[0]
            target = Reference(home.host, home.repository, entry.name if tag_only else named.tag if named else None)
            ref = Reference(target.host, target.repository, target.tag, entry.desc.digest)
            m = source.get_manifest(ref)
            descriptor = entry.desc.annotations.get(DESCRIPTOR_ANNOTATION)
            listed = loads(descriptor, f"{archive}: referrer descriptor") if descriptor else None
            listed = listed if isinstance(listed, dict) else None
            if attach.types and artifact_type_of(m, listed) not in attach.types:
                continue
            planned[str(target) + "@" + m.digest] = (target, Image(ref, m, m, [m], m, subject=subject_of(entry),
                                                                   descriptor=listed))
        source.check_complete([m for _, img in planned.values() for m in img.manifests])
        if to_daemon:
            return load([img for _, img in planned.values()], lambda r: source, jobs, quiet, opts.retries)
        items = [Item(img, source, dests(d), d) for d, img in planned.values()]
        if source.delta_base:
            check_delta(items, source, archive, jobs)
        eng = Engine(jobs, progress_.make(quiet), retries=opts.retries)
        eng.copy(items)
        update_fallbacks(items)
        return push_result([copied(i) for i in items], eng.report)
    finally:
        dests.close()
        source.close()


def subject_of(entry: Any) -> str | None:
    """What an archived image is attached to: the annotation porter writes, else a cosign tag's name."""
    ann = entry.desc.annotations
    if ann.get(SUBJECT_ANNOTATION):
        return dg.check(ann[SUBJECT_ANNOTATION], "archive: attachment subject")
    tag = None
    if entry.name and "/" not in entry.name and ":" not in entry.name:
        tag = entry.name  # a tag-only name (skopeo oci:DIR:TAG, umoci)
    elif entry.name:
        try:
            tag = parse(entry.name).tag
        except PorterError:
            tag = None  # an invalid name is reported where the image is planned
    if tag and is_attachment_tag(tag) and tag.endswith(COSIGN_SUFFIXES):
        return "sha256:" + tag[7:71]
    return None


def destination_of(entry: Any, dest: Reference | None, count: int, archive: str) -> Reference:
    """Where an archived image goes. A full reference keeps its path under DEST's prefix; a name
    that is only a tag (``v1``, as skopeo ``oci:dir:v1`` and umoci write) is a tag of the
    repository DEST names; an unnamed image needs DEST to name it. A tag in DEST names the one
    image of a one-image archive. (For the docker engine, DEST is None: the archive's names.)"""
    name, digest = entry.name, entry.desc.digest
    if dest is not None and dest.tag:
        if count != 1:
            raise PorterError(f"{dest}: a tag names one image, but {archive} holds {count}; give REGISTRY[/PREFIX]")
        return Reference(dest.host, dest.repository, dest.tag)
    how = f"porter import {archive} {dest.host if dest else 'REGISTRY'}/REPOSITORY[:TAG]"
    if name is None:
        raise PorterError(f"{archive}: image {digest} carries no name; name it: {how}"
                          + ("" if count == 1 else " (one image per archive)"))
    if "/" not in name and ":" not in name:  # only a tag
        try:
            check_tag(name, "tag in the archive")
        except PorterError as e:
            raise ArchiveError(f"{archive}: {e}") from None
        if dest is None or not dest.repository:
            raise PorterError(f"{archive}: image {digest} is named only by the tag {name!r}; give the repository: {how}")
        return Reference(dest.host, dest.repository, name)
    try:
        named = parse(name)
    except PorterError as e:
        raise ArchiveError(f"{archive}: image {digest} has an invalid name: {e}") from None
    return named.with_default_tag() if dest is None else dest_for(named.with_default_tag(), dest, keep_path=True)


def check_delta(items: list[Item], source: Any, archive: str, jobs: int) -> None:
    """A delta leaves out layers its base holds: the destination must have each of them (in the
    image's repository, or mountable from another repository this import writes to) before
    anything is pushed. Otherwise name what is missing and the base, and tag nothing."""
    need = [(i, d) for i in items for d in i.image.blobs if d.digest in source.omitted]
    there = pmap(lambda idesc: idesc[0].dest.has_blob(idesc[0].target.repository, idesc[1].digest), need, jobs)
    holders = {(id(i.dest), d.digest): i.target.repository for (i, d), ok in zip(need, there) if ok}
    missing = [(i, d) for (i, d), ok in zip(need, there) if not ok and not (
        (other := holders.get((id(i.dest), d.digest))) and i.dest.mount(i.target.repository, d.digest, other))]
    if missing:
        i, d = missing[0]
        raise PorterError(f"{archive} is a delta, and the destination lacks {len(missing)} blob(s) it leaves out "
                          f"({d.digest} of {i.target}{', …' if len(missing) > 1 else ''}): import the base it was made "
                          f"against first (base {source.delta_base}); nothing was tagged")


def check_platforms_present(source: Any, ref: Reference, name: str) -> None:
    """An index of which the archive holds only some platforms (``ctr images export`` without
    --all-platforms) can be imported one platform at a time: say which are there."""
    top = source.get_manifest(ref)
    kids = top.children
    missing = [c for c in kids if not source.has(c.digest)]
    if not missing:
        return
    present = [str(c.platform) for c in kids if c not in missing and c.platform]
    raise PorterError(f"{name}: the archive holds only some platforms of this multi-platform image (present: "
                      f"{', '.join(present) or 'none'}); pass --platform "
                      f"{present[0] if present else 'OS/ARCH'} to import one")


def mirror_to_daemon(e: Entry, base: Any, as_registry: str | None, jobs: int, quiet: bool) -> LoadResult:
    """One image from anywhere into the docker engine (like ``docker pull``), optionally renamed."""
    sources = Sources(replace(base, creds=e.src_creds) if e.src_creds else base, e.storage, as_registry)
    try:
        ref = sources.parse(e.source)
        source = sources(ref)
        img = resolve(source, ref, Platform.parse(e.platform) if e.platform else Platform.host(), all_platforms=False,
                      strict=bool(e.platform))
        name = e.destination[len(DAEMON):]
        if name:
            img.rename = replace(parse(name).with_default_tag(), digest=None)
        return load([img], lambda r: source, jobs, quiet, base.retries)
    finally:
        sources.close()


BATCH = 250  # images resolved and copied at a time (the next batch resolving meanwhile): memory
#             stays flat however large the catalog


def mirror(entries: list[Entry], base: Any, as_registry: str | None, chunk: int, jobs: int, *, dry_run: bool,
           state_file: str | None, delete_source: bool, quiet: bool, say: Callable[[str], None],
           attach: Attachments = Attachments()) -> PushResult | PreviewResult:
    """Run a mirror job. One explicit image stops at its first error; anything larger keeps
    going past failed images and journals its progress. The images are named first (a catalog
    costs only its names), then resolved and copied BATCH at a time through one engine, which
    remembers across batches where each blob is; the next batch is resolved while one is copied."""
    key = job_key(entries)
    journal = Journal(state_file or default_path(key), key, lambda m: say(f"warning: {m}"))
    all_sources: list[Sources] = []
    dests: dict[Any, Destinations] = {}
    work: list[tuple[BulkPlanned, Destinations]] = []
    single = False
    try:
        for e in entries:
            sources = Sources(replace(base, creds=e.src_creds) if e.src_creds else base, e.storage, as_registry)
            all_sources.append(sources)
            ref = sources.parse(e.source, allow_registry=True)
            source = sources(ref)
            single = len(entries) == 1 and bool(ref.tag or ref.digest)
            if delete_source and (e.platform or source.origin is None):
                raise PorterError("--delete-source needs a registry source and every platform (no --platform)")
            to = dests.setdefault(e.dest_creds, Destinations(replace(base, creds=e.dest_creds) if e.dest_creds
                                                             else base, chunk, journal))
            plat = Platform.parse(e.platform) if e.platform else None
            e.filters.skip_attachment_tags = attach.enabled
            for p in expand_entry(ref, parse(e.destination), source, source if isinstance(source, Lister) else None,
                                  e.filters, jobs, note=say if not quiet and sys.stderr.isatty() else lambda m: None):
                p.platform = plat
                work.append((p, to))
        eng = Engine(jobs, progress_.make(quiet), journal, keep_going=not single, retries=base.retries)
        rows: list[Copied] = []
        failed: list[Copied] = []
        previews: list[Planned] = []
        to_send = present = 0
        windows = [work[start:start + BATCH] for start in range(0, len(work), BATCH)]
        for window in ahead(lambda w: resolve_planned([p for p, _ in w], jobs), windows):
            items = []
            for p, to in window:
                if single and p.error:
                    raise PorterError(p.error)
                if p.image:
                    items.append(Item(p.image, p.source, to(p.dest), p.dest))
                else:
                    failed.append(Copied(str(p.ref), str(p.dest), "failed", error=p.error))
            if attach.enabled:
                items += attachment_items(items, attach.types)
            if dry_run:
                states, send, there = engine.preview(items, jobs)
                to_send, present = to_send + send, present + there
                previews += [Planned(str(i.image.ref), str(i.target), i.image.listed.digest, s,
                                     sum(d.size for d in i.image.blobs), i.image.subject or "")
                             for i, s in zip(items, states)]
                continue
            eng.copy(items)
            update_fallbacks(items)
            if delete_source:
                for i in items:
                    if i.state in ("copied", "present") and i.image.subject is None:
                        delete_migrated(i, say, quiet)
            rows += [copied(i) for i in items]
            for p, _ in window:
                p.image = None  # done with: only the names of a catalog stay in memory
        if dry_run:
            return PreviewResult(previews, to_send, present, failed)
    finally:
        for d in dests.values():
            d.close()
        for so in all_sources:
            so.close()
    result = push_result(rows + failed, eng.report)
    journal.close()  # kept after a clean finish too: a rerun confirms finished images with one HEAD each
    return result


def delete_migrated(item: Item, say: Callable[[str], None], quiet: bool) -> None:
    """Delete a mirrored image from its source registry, only once the destination is verified to
    serve the same digest, and never when other (unmigrated) tags share that digest."""
    from .delete import Deleter

    digest, src = item.image.listed.digest, item.image.ref
    if item.dest.served(item.target.repository, item.ref) != digest:
        raise PorterError(f"{item.target}: does not serve {digest}; not deleting the source")
    d = Deleter(item.source)  # a registry: --delete-source is checked to have one
    others = sorted(t for t, dg in d.tag_digests(src.repository).items() if dg == digest and t != src.tag)
    if others:
        say(f"warning: not deleting {src.name}@{digest} from the source: also tagged {', '.join(others)}, "
            f"which were not migrated")
        return
    d.delete(src.repository, digest)
    if not quiet:
        say(f"deleted {src.name}@{digest} from the source")
    children = [m.digest for m in item.image.manifests[1:]]
    if not children:
        return
    # An index's children go too, unless a remaining tag still needs them (itself, or as a child
    # of its index): otherwise gc would keep every platform's blobs.
    remaining = set(d.tag_digests(src.repository).values())
    needed = set(remaining)
    for r in remaining:
        needed |= d.children(src.repository, r)
    for c in children:
        if c not in needed:
            d.delete(src.repository, c)
