"""The copy engine: resolve references to images, then move each needed blob once, concurrently.

Resolution is derived from two source abilities only (raw manifest by reference/digest, blob by
digest), so every place that can serve those is a full source. Blobs are deduplicated by digest
before anything moves (a blob shared by several images is fetched once), every byte is verified
against its digest on the way, and the first failure cancels the rest.
"""
from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Protocol, TypeVar

from . import interrupts
from .digest import Verifier, read_all, verified
from .errors import Cancelled, DigestMismatch, PorterError
from .mediatypes import Descriptor, Manifest, Platform, loads
from .places.base import Source
from .progress import Quiet
from .reference import Reference


T = TypeVar("T")


class BlobSink(Protocol):
    def write(self, data: bytes) -> None: ...


@dataclass
class Image:
    """One reference, resolved. ``manifests`` are the manifests to keep (top first, children
    after their index); ``listed`` is what an index of images names (the whole index, or just
    the chosen platform's manifest); ``chosen`` is what ``docker load`` gets (None when every
    platform is kept and none was asked for)."""

    ref: Reference
    top: Manifest
    chosen: Manifest | None
    manifests: list[Manifest]
    listed: Manifest
    platform: Platform | None = None
    rename: Reference | None = None  # the name to give it at the destination, when not ``ref``'s
    subject: str | None = None  # an attachment (referrer or cosign tag): the digest it is attached to
    descriptor: dict | None = None  # a referrer's descriptor as its source listed it (for fallback indexes)

    @property
    def named(self) -> Reference:
        return self.rename or self.ref

    @property
    def blobs(self) -> list[Descriptor]:
        seen: dict[str, Descriptor] = {}
        for m in self.manifests:
            for d in m.blobs:
                seen.setdefault(d.digest, d)
        return list(seen.values())

    @property
    def narrowed(self) -> bool:
        """True when a platform was picked out of an index: the pushed digest is not the top one."""
        return self.listed.digest != self.top.digest


def _child(source: Source, ref: Reference, desc: Descriptor) -> Manifest:
    m = source.get_manifest(ref, desc.digest)
    if len(m.raw) != desc.size:
        raise DigestMismatch(f"{ref.name}@{desc.digest}: manifest is {len(m.raw)} bytes, index says {desc.size}")
    return m


def platform_of(source: Source, ref: Reference, m: Manifest) -> Platform | None:
    """An image manifest's platform, from its config (None when the config does not say)."""
    cfg = m.config
    raw = read_all(source.blob_chunks(ref.repository, cfg), cfg.digest, cfg.size, f"config {cfg.digest}")
    try:
        doc = loads(raw, f"config {cfg.digest}")
        p = Platform(doc["os"], doc["architecture"], doc.get("variant") or "")
    except (PorterError, KeyError, TypeError):
        return None
    return p if all(isinstance(x, str) for x in (p.os, p.architecture, p.variant)) else None


def resolve(source: Source, ref: Reference, platform: Platform | None, all_platforms: bool,
            strict: bool = False) -> Image:
    """Fetch what ``ref`` names. An index keeps every platform with ``all_platforms``, else only
    ``platform`` (which must then be given); ``chosen`` is ``platform``'s image when given.
    ``strict`` (the user named the platform): a single-platform image of another platform is
    refused, naming its platform, instead of being handed over."""
    ref = ref.with_default_tag()
    top = source.get_manifest(ref)
    if not top.is_index:
        if strict and platform is not None:
            have = platform_of(source, ref, top)
            if have is not None and not platform.matches(have):
                raise PorterError(f"{ref}: the image is {have}, not {platform} (it has one platform only)")
        return Image(ref, top, top, [top], top)
    want = top.pick(platform) if platform else None
    if not all_platforms:
        if want is None:
            raise PorterError(f"{ref}: a platform is needed to pick from the index")
        chosen = _child(source, ref, want)
        return Image(ref, top, chosen, [chosen], chosen, want.platform)
    kept = [top]
    pending = list(top.children)
    while pending:  # nested indexes are rare but legal
        m = _child(source, ref, pending.pop(0))
        kept.append(m)
        pending.extend(m.children)
    picked = next(m for m in kept if m.digest == want.digest) if want else None
    return Image(ref, top, picked, kept, top, want.platform if want else None)


@dataclass
class Transfer:
    """A blob to move: which digest/size, from which repository of which source."""

    source: Source
    repository: str
    desc: Descriptor


@dataclass
class Stats:
    blobs: int = 0
    bytes: int = 0


def unique(transfers: list[Transfer]) -> list[Transfer]:
    """One transfer per digest: the first image that needs a blob fetches it for all."""
    seen: dict[str, Transfer] = {}
    for t in transfers:
        seen.setdefault(t.desc.digest, t)
    return list(seen.values())


def copy_blobs(transfers: list[Transfer], open_sink: Callable[[Descriptor], BlobSink], jobs: int,
               progress: Quiet) -> Stats:
    """Fetch every transfer into the sink ``open_sink`` gives for it, ``jobs`` at a time, verified."""
    transfers = unique(transfers)
    stats = Stats(blobs=len(transfers), bytes=sum(t.desc.size for t in transfers))
    progress.start(stats.bytes, stats.blobs)
    cancel = threading.Event()

    def one(t: Transfer) -> None:
        handle = progress.blob_started(t.desc.digest, t.desc.size)
        try:
            sink = open_sink(t.desc)
            v = Verifier(t.desc.digest, t.desc.size, f"blob {t.desc.digest} from {t.source.name}/{t.repository}")
            for chunk in verified(t.source.blob_chunks(t.repository, t.desc), v):
                if cancel.is_set():
                    raise Cancelled("cancelled")
                sink.write(chunk)
                progress.advance(handle, len(chunk))
        finally:
            progress.blob_finished(handle)

    try:
        run_all(one, sorted(transfers, key=lambda t: -t.desc.size), jobs, cancel)
    finally:
        progress.close()
    return stats


def run_all(fn: Callable[[T], None], items: list[T], jobs: int, cancel: threading.Event,
            keep_going: bool = False) -> dict[int, PorterError]:
    """Run ``fn`` over ``items`` on ``jobs`` threads. The first failure (or Ctrl-C) sets
    ``cancel``, stops what has not started, and is raised once the running ones have noticed —
    unless ``keep_going``: then porter's own errors are collected by item index and returned."""
    failures: dict[int, PorterError] = {}

    def guarded(i: int, item: T) -> None:
        try:
            fn(item)
        except PorterError as e:
            if not keep_going or isinstance(e, Cancelled):
                raise
            failures[i] = e

    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="porter")
    futures = [pool.submit(guarded, i, item) for i, item in enumerate(items)]
    try:
        while True:  # short waits, so an interrupt that Python swallowed is noticed here
            done, running = wait(futures, timeout=0.25, return_when=FIRST_EXCEPTION)
            interrupts.check()
            if not running or any(f.exception() is not None for f in done if not f.cancelled()):
                break
        for f in futures:
            if f.done() and not f.cancelled() and f.exception() is not None \
                    and not isinstance(f.exception(), Cancelled):
                raise f.exception()  # type: ignore[misc]
    except BaseException:
        cancel.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return failures
