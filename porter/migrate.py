"""The import and mirror jobs: plan every entry, push (or load into the docker engine), then
optionally delete what moved from the source. Printing is the caller's."""
from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any, Callable

from . import progress as progress_
from . import digest as dg
from .bulk import Entry, job_key, plan
from .endpoints import DAEMON, Pushers, Sources
from .engine import Image, resolve
from .errors import ArchiveError, PorterError
from .journal import Journal, default_path
from .mediatypes import Platform, loads
from .places.base import Lister
from .places.registry import Registry
from .push import Job, dest_for, preview, push
from .reference import Reference, check_tag, parse
from .referrers import (COSIGN_SUFFIXES, DESCRIPTOR_ANNOTATION, SUBJECT_ANNOTATION, Attachments, attachment_jobs,
                        artifact_type_of, is_attachment_tag, update_fallbacks)


def load(images: list[Image], source_for: Callable[[Reference], Any], jobs: int, quiet: bool) -> dict[str, Any]:
    from .export import load_into_daemon

    return load_into_daemon(images, source_for, jobs, progress_.make(quiet))


def import_archive(archive: str, destination: str, opts: Any, chunk: int, attach: Attachments,
                   platform: Platform | None, jobs: int, quiet: bool) -> tuple[str, dict[str, Any]]:
    """Every image of ``archive`` into a registry (or the docker engine); ("push"|"load", summary).
    Attachments in the archive (signatures, SBOMs) go beside the images they are attached to."""
    from .places.archive_reader import ArchiveSource

    to_daemon = destination.startswith(DAEMON)
    if to_daemon and destination != DAEMON:
        raise PorterError("import into the docker daemon keeps the archive's names: use plain 'docker-daemon:'")
    dest = None if to_daemon else parse(destination)
    source = ArchiveSource(archive)
    pushers = Pushers(opts, chunk)
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
            return "load", load([img for _, img in planned.values()], lambda r: source, jobs, quiet)
        jobs_list = [Job(img, source, d, pushers(d)) for d, img in planned.values()]
        if source.delta_base:
            check_delta(jobs_list, source, archive, jobs)
        summary = push(jobs_list, jobs, progress_.make(quiet))
        update_fallbacks(jobs_list)
        return "push", summary
    finally:
        pushers.close()
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


def check_delta(jobs_list: list[Job], source: Any, archive: str, jobs: int) -> None:
    """A delta leaves out layers its base holds: the destination must have each of them (in the
    image's repository, or mountable from another repository this import writes to) before
    anything is pushed. Otherwise name what is missing and the base, and tag nothing."""
    from concurrent.futures import ThreadPoolExecutor

    need = [(j, d) for j in jobs_list for d in j.image.blobs if d.digest in source.omitted]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        there = list(pool.map(lambda jd: jd[0].pusher.has_blob(jd[0].dest.repository, jd[1].digest), need))
    holders: dict[tuple[str, str], str] = {}
    for (j, d), ok in zip(need, there):
        if ok:
            j.pusher.remember(j.dest.repository, d.digest)
            holders[(j.dest.host, d.digest)] = j.dest.repository
    missing = []
    for (j, d), ok in zip(need, there):
        other = holders.get((j.dest.host, d.digest))
        if ok:
            continue
        if other and j.pusher.mount(j.dest.repository, d.digest, other):
            j.pusher.remember(j.dest.repository, d.digest)
        else:
            missing.append((j, d))
    if missing:
        j, d = missing[0]
        raise PorterError(f"{archive} is a delta, and the destination lacks {len(missing)} blob(s) it leaves out "
                          f"({d.digest} of {j.dest}{', …' if len(missing) > 1 else ''}): import the base it was made "
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


def mirror_to_daemon(e: Entry, base: Any, as_registry: str | None, jobs: int, quiet: bool) -> dict[str, Any]:
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
        return load([img], lambda r: source, jobs, quiet)
    finally:
        sources.close()


def mirror(entries: list[Entry], base: Any, as_registry: str | None, chunk: int, jobs: int, *, dry_run: bool,
           state_file: str | None, delete_source: bool, quiet: bool, say: Callable[[str], None],
           attach: Attachments = Attachments()) -> tuple[str, dict[str, Any]]:
    """Run a mirror job; ("preview"|"push", summary). One explicit image stops at its first error;
    anything larger keeps going past failed images and journals its progress."""
    key = job_key(entries)
    journal = Journal(state_file or default_path(key), key, lambda m: say(f"warning: {m}"))
    all_sources: list[Sources] = []
    pushers: dict[Any, Pushers] = {}
    planned: list[Any] = []
    single = False
    try:
        for e in entries:
            sources = Sources(replace(base, creds=e.src_creds) if e.src_creds else base, e.storage, as_registry)
            all_sources.append(sources)
            ref = sources.parse(e.source, allow_registry=True)
            source = sources(ref)
            single = len(entries) == 1 and bool(ref.tag or ref.digest)
            if delete_source and (e.platform or not isinstance(source, Registry)):
                raise PorterError("--delete-source needs a registry source and every platform (no --platform)")
            push_to = pushers.setdefault(e.dest_creds, Pushers(replace(base, creds=e.dest_creds) if e.dest_creds
                                                               else base, chunk, journal))
            plat = Platform.parse(e.platform) if e.platform else None
            e.filters.skip_attachment_tags = attach.enabled
            for p in plan(ref, parse(e.destination), source, source if isinstance(source, Lister) else None,
                          e.filters, plat, jobs, note=say if not quiet and sys.stderr.isatty() else lambda m: None):
                p.pusher = push_to(p.dest)
                planned.append(p)
        if single and planned and planned[0].error:
            raise PorterError(planned[0].error)
        jobs_list = [Job(p.image, p.source, p.dest, p.pusher) for p in planned if p.image]
        if attach.enabled:
            jobs_list += attachment_jobs(jobs_list, attach.types)
        failed = [{"source": str(p.ref), "destination": str(p.dest), "state": "failed", "error": p.error}
                  for p in planned if p.error]
        if dry_run:
            return "preview", {**preview(jobs_list, jobs), "failed": failed}
        summary = push(jobs_list, jobs, progress_.make(quiet), journal, keep_going=not single)
        update_fallbacks(jobs_list)
        if delete_source:
            for j in jobs_list:
                if j.state in ("copied", "present") and j.image.subject is None:
                    delete_migrated(j, say, quiet)
    finally:
        for pu in pushers.values():
            pu.close()
        for so in all_sources:
            so.close()
    summary["images"] += failed
    summary["failed"] += len(failed)
    if not summary["failed"] and not state_file:
        journal.remove()  # nothing left to resume
    else:
        journal.close()
    return "push", summary


def delete_migrated(job: Job, say: Callable[[str], None], quiet: bool) -> None:
    """Delete a mirrored image from its source registry, only once the destination is verified to
    serve the same digest, and never when other (unmigrated) tags share that digest."""
    from .delete import Deleter

    digest, src = job.image.listed.digest, job.image.ref
    if not job.pusher.has_manifest(job.dest.repository, job.dest_ref, digest):
        raise PorterError(f"{job.dest}: does not serve {digest}; not deleting the source")
    assert isinstance(job.source, Registry), "--delete-source is checked to have a registry source"
    d = Deleter(job.source)
    others = sorted(t for t, dg in d.tag_digests(src.repository).items() if dg == digest and t != src.tag)
    if others:
        say(f"warning: not deleting {src.name}@{digest} from the source: also tagged {', '.join(others)}, "
            f"which were not migrated")
        return
    d.delete(src.repository, digest)
    if not quiet:
        say(f"deleted {src.name}@{digest} from the source")
    children = [m.digest for m in job.image.manifests[1:]]
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
