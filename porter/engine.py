"""The copy engine: every command that moves images runs through :meth:`Engine.copy`.

    plan      at most one HEAD per image (none for a tag the destination repository's tags list
              lacks; a present image is done); then
              every blob of what remains, deduplicated by digest across the whole job — once per
              destination repository where blobs are held per repository, else once per place
    transfer  one bounded pool; per blob the cheapest way first: known here → skip; known in
              another repository of that destination (or the source is that registry) → mount;
              asked and present → skip; else its bytes, read and verified by one BlobReader.
              Big blobs first (the pool ends together), then the rest image by image, so that
    commit    an image is committed as soon as its last blob lands, where the destination serves
              what it is given at once (a registry): children before their index, the tag last,
              then the check below — while other images' blobs still move. Elsewhere every image
              waits for the destination's own commit (an archive is renamed into place, the
              docker engine loads it)
    check     the post-condition: the destination serves the expected digest under the name.
              Only then is an image reported copied (and journalled as done).

Places are reached only through :mod:`porter.places.protocol`; the engine asks a destination's
abilities and never its type. Retries live in the transport; resuming a blob from an offset in
the blob reader (downloads) and the destination's upload (uploads) alone.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field
from itertools import islice
from typing import Callable, Iterable

from .blob import BlobReader
from .errors import Cancelled, PorterError
from .image import Image
from .journal import Journal
from .mediatypes import Descriptor
from .places.protocol import Destination, Source
from .pool import pmap, run_all
from .progress import Quiet
from .reference import Reference
from .results import BlobCounts


@dataclass(eq=False)
class Item:
    """One image to copy: what was resolved, from which source, to which destination and name."""

    image: Image
    source: Source
    dest: Destination
    target: Reference  # host + repository (+ tag; without one the image goes by digest only)
    state: str = "pending"  # then "copied", "present" or "failed"
    error: str = ""

    @property
    def ref(self) -> str:
        """What the destination names it by: the tag, else the digest."""
        return self.target.tag or self.image.listed.digest

    def fail(self, error: str) -> None:
        if self.state != "failed":
            self.state, self.error = "failed", error


@dataclass(eq=False)
class _Blob:
    """One blob to place in one destination repository, for the items that need it."""

    desc: Descriptor
    dest: Destination
    repository: str
    items: list[Item] = field(default_factory=list)


@dataclass
class Report:
    """What a copy did: per item in ``Item.state``; blobs and bytes here."""

    blobs: BlobCounts
    bytes_sent: int
    bytes_skipped: int
    seconds: float

    def __add__(self, other: "Report") -> "Report":
        b, o = self.blobs, other.blobs
        return Report(BlobCounts(b.uploaded + o.uploaded, b.mounted + o.mounted, b.skipped + o.skipped),
                      self.bytes_sent + other.bytes_sent, self.bytes_skipped + other.bytes_skipped,
                      round(self.seconds + other.seconds, 3))


class _Placements:
    """Where each digest is known to be, per destination; and each (destination, digest) moved
    by one worker at a time — the others wait, then mount or skip (a failure frees it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[tuple[int, str], dict[str, None]] = {}  # an ordered set per digest
        self._inflight: dict[tuple[int, str], Future] = {}

    def holds(self, dest: Destination, repository: str, digest: str) -> bool:
        with self._lock:
            return repository in self._known.get((id(dest), digest), ())

    def holders(self, dest: Destination, digest: str, most: int = 3) -> list[str]:
        """A few repositories of ``dest`` known to hold ``digest`` (the first ones placed): mount
        candidates. Never the whole set — a base shared by 10,000 repositories would make every
        placement cost 10,000 steps."""
        with self._lock:
            found = self._known.get((id(dest), digest))
            return list(islice(found, most)) if found else []

    def add(self, dest: Destination, repository: str, digest: str) -> None:
        with self._lock:
            self._known.setdefault((id(dest), digest), {})[repository] = None

    def claim(self, dest: Destination, digest: str) -> tuple[bool, Future]:
        """(True, f) when this worker is to move the digest (resolve f when done), else (False, f)
        with the mover's future to wait on."""
        key = (id(dest), digest)
        with self._lock:
            current = self._inflight.get(key)
            if current is None or (current.done() and current.exception() is not None):
                current = self._inflight[key] = Future()
                return True, current
            return False, current

    def release(self, dest: Destination, digest: str, fut: Future) -> None:
        """The move finished: waiters hold the future; new askers find the digest known."""
        with self._lock:
            if self._inflight.get((id(dest), digest)) is fut:
                del self._inflight[(id(dest), digest)]


class Engine:
    """Copies items, batch after batch, remembering across batches where each blob is (so a
    catalog streams through in bounded memory and a blob is still sent once per destination)."""

    def __init__(self, jobs: int, progress: Quiet, journal: Journal | None = None, keep_going: bool = False,
                 retries: int = 5):
        self.jobs, self.progress, self.journal, self.keep_going, self.retries = \
            jobs, progress, journal, keep_going, retries
        self.placements = _Placements()
        self.report = Report(BlobCounts(), 0, 0, 0.0)  # the sum over every batch

    def copy(self, items: list[Item]) -> Report:
        """Copy every pending item of one batch. With ``keep_going`` an image that fails is marked
        and the rest go on; otherwise the first failure is raised (images committed before it
        stay, copied and checked; nothing is committed after it)."""
        started = time.monotonic()
        jobs, keep_going, cancel = self.jobs, self.keep_going, threading.Event()
        todo = [i for i in items if i.state == "pending"]
        for item, present in zip(todo, self._present(todo)):
            if present:
                item.state = "present"
                # What it is made of is there too: other images mount those blobs, not send them
                # again (after an interruption, images committed before it share blobs with the rest).
                for d in item.image.blobs:
                    self.placements.add(item.dest, _blob_home(item), d.digest)
        todo = [i for i in todo if i.state == "pending"]
        for dest, its in _by_destination(todo).items():
            dest.prepare([i.image for i in its])
        blobs: dict[tuple[int, str, str], _Blob] = {}
        for i in todo:
            repo = _blob_home(i)
            for d in i.image.blobs:
                blobs.setdefault((id(i.dest), repo, d.digest), _Blob(d, i.dest, repo)).items.append(i)
        plan = _order(blobs.values(), todo)
        outcomes: Counter[str] = Counter()
        lock = threading.Lock()
        left = Counter(id(i) for b in plan for i in b.items)  # blobs each item still waits for
        self.progress.start(sum(b.desc.size for b in plan), len(plan))

        def move(b: _Blob) -> None:
            handle = self.progress.blob_started(b.desc.digest, b.desc.size)
            sent = 0

            def on_bytes(n: int) -> None:
                nonlocal sent
                if cancel.is_set():
                    raise Cancelled("cancelled")
                sent += n
                self.progress.advance(handle, n)

            try:
                how = _place(b, self.placements, on_bytes, self.retries)
            finally:
                self.progress.blob_finished(handle)
            with lock:
                outcomes[how] += 1
                outcomes["bytes_sent"] += sent
                if how != "uploaded":
                    outcomes["bytes_skipped"] += b.desc.size
                ready = []
                for i in b.items:
                    left[id(i)] -= 1
                    if left[id(i)] == 0 and i.dest.abilities.serves_at_once and i.state == "pending":
                        ready.append(i)
            for i in ready:
                self._commit(i)

        try:
            failures = run_all(move, plan, jobs, cancel, keep_going)
        finally:
            self.progress.close()
        for ix, e in failures.items():
            for i in plan[ix].items:
                i.fail(str(e))
        # commit: manifests, then the destination's own commit, then the post-condition
        pending = [i for i in todo if i.state == "pending"]
        for ix, e in run_all(_put_manifests, pending, jobs, cancel, keep_going).items():
            pending[ix].fail(str(e))
        for dest, its in _by_destination(todo).items():
            ready = [i for i in its if i.state == "pending"]
            try:
                if ready:
                    dest.commit()
            except PorterError as e:
                if not keep_going:
                    raise
                for i in ready:
                    i.fail(str(e))
        pending = [i for i in todo if i.state == "pending"]
        for ix, e in run_all(self._check, pending, jobs, cancel, keep_going).items():
            pending[ix].fail(str(e))
        batch = Report(BlobCounts(outcomes["uploaded"], outcomes["mounted"], outcomes["skipped"]),
                       outcomes["bytes_sent"], outcomes["bytes_skipped"], round(time.monotonic() - started, 3))
        self.report = self.report + batch
        return batch

    def _present(self, items: list[Item]) -> list[bool]:
        """Which items the destination serves already: one manifest HEAD each — except a tag that
        a destination repository's tags list (one GET for several of its images) does not name,
        and the journal does not list as finished: absent, no HEAD needed."""
        listable = {id(i): i for i in items  # the journal asked once per item
                    if i.target.tag and i.dest.abilities.lists_tags and not self._finished(i)}
        per_repo = Counter((id(i.dest), i.target.repository) for i in listable.values())
        repos = {(id(i.dest), i.target.repository): i for i in listable.values()
                 if per_repo[(id(i.dest), i.target.repository)] > 1}
        listed = dict(zip(repos, pmap(lambda i: i.dest.tag_set(i.target.repository), list(repos.values()),
                                      self.jobs)))

        def present(i: Item) -> bool:
            tags = listed.get((id(i.dest), i.target.repository))
            if id(i) in listable and tags is not None and i.target.tag not in tags:
                return False
            return i.dest.has_manifest(i.target.repository, i.ref, i.image.listed.digest)

        return pmap(present, items, self.jobs)

    def _commit(self, i: Item) -> None:
        """Manifests, then the post-condition, for one image whose blobs are all placed."""
        try:
            _put_manifests(i)
            self._check(i)
        except PorterError as e:
            i.fail(str(e))
            if not self.keep_going or isinstance(e, Cancelled):
                raise

    def _finished(self, i: Item) -> bool:
        return self.journal is not None and self.journal.finished(str(i.target)) == i.image.listed.digest

    def _check(self, i: Item) -> None:
        """The post-condition: only a destination that serves the digest makes the item copied."""
        served = i.dest.served(i.target.repository, i.ref)
        if served != i.image.listed.digest:
            raise PorterError(f"{i.target}: after the copy {i.dest.name} serves {served or 'nothing'} there, not "
                              f"{i.image.listed.digest}; not counted as copied")
        i.state = "copied"
        if self.journal:
            self.journal.image_done(str(i.target), i.image.listed.digest)


def _blob_home(i: Item) -> str:
    """Where the destination keeps ``i``'s blobs: its repository, or "" for one store per place."""
    return i.target.repository if i.dest.abilities.per_repository else ""


def _by_destination(items: list[Item]) -> dict[Destination, list[Item]]:
    out: dict[Destination, list[Item]] = {}
    for i in items:
        out.setdefault(i.dest, []).append(i)
    return out


BIG = 16 * 1024 * 1024


def _order(blobs: "Iterable[_Blob]", items: list[Item]) -> list[_Blob]:
    """Big blobs first, the largest first (they set how long the pool runs); then the others
    in the order of the images that need them, so images complete — and are committed — one
    after another rather than all at the end."""
    rank = {id(i): n for n, i in enumerate(items)}
    return sorted(blobs, key=lambda b: (0, -b.desc.size) if b.desc.size >= BIG else (1, rank[id(b.items[0])]))


def _place(b: _Blob, placements: _Placements, on_bytes: Callable[[int], None], retries: int) -> str:
    """Put one blob into one destination repository the cheapest way: "skipped", "mounted" or
    "uploaded". One worker moves a digest into a destination at a time; the others wait for it."""
    dest, repo, digest = b.dest, b.repository, b.desc.digest
    while True:
        mine, fut = placements.claim(dest, digest)
        if mine:
            break
        try:
            fut.result()
        except Exception:
            continue  # the mover failed: take over
        break
    try:
        how = _cheapest(b, placements, on_bytes, retries)
    except BaseException as e:
        if mine:
            fut.set_exception(e)
        raise
    placements.add(dest, repo, digest)
    if mine:
        fut.set_result(how)
        placements.release(dest, digest, fut)
    return how


def _cheapest(b: _Blob, placements: _Placements, on_bytes: Callable[[int], None], retries: int) -> str:
    dest, repo, digest = b.dest, b.repository, b.desc.digest
    first = b.items[0]
    if placements.holds(dest, repo, digest):
        return "skipped"
    able = dest.abilities
    candidates = placements.holders(dest, digest) if able.mount else []
    same_origin = able.mount and first.source.origin is not None and first.source.origin == dest.origin
    # A blob known elsewhere in the destination is mounted without asking first. (Every other one
    # is asked about, however small: after an interruption no finished blob is sent again — by the
    # upload's own start where the destination asks there.)
    if not candidates and not able.asks_on_upload and dest.has_blob(repo, digest):
        return "skipped"
    if same_origin and first.image.ref.repository not in candidates:
        candidates.append(first.image.ref.repository)
    for other in candidates:
        if other != repo and dest.mount(repo, digest, other):
            return "mounted"
    sent = dest.write_blob(repo, BlobReader(first.source, first.image.ref.repository, b.desc, retries), on_bytes)
    return "uploaded" if sent else "skipped"


def _put_manifests(i: Item) -> None:
    """Children first (the deepest first), the named one last: a tag never names something
    incomplete. The original bytes, so digests are the source's."""
    children, top = i.image.manifests[1:], i.image.manifests[0]
    for m in reversed(children):
        if not (i.dest.has_manifest(i.target.repository, m.digest, m.digest)):
            i.dest.put_manifest(i.target.repository, m.digest, m)
    i.dest.put_manifest(i.target.repository, i.ref, top)


def preview(items: list[Item], jobs: int) -> tuple[list[str], int, int]:
    """What :meth:`Engine.copy` would do, asking only: per item "copy" or "present"; the bytes to send
    and those already at the destination (a blob present anywhere in a destination is mounted)."""
    states = pmap(lambda i: "present" if i.dest.has_manifest(
        i.target.repository, i.ref, i.image.listed.digest) else "copy", items, jobs)
    blobs = {(id(i.dest), i.target.repository, d.digest): (i, d) for i in items for d in i.image.blobs}
    there = pmap(lambda idesc: idesc[0].dest.has_blob(
        idesc[0].target.repository, idesc[1].digest), list(blobs.values()), jobs)
    per_place: dict[tuple[int, str], tuple[int, bool]] = {}
    for (place, _, digest), (_, d), t in zip(blobs, blobs.values(), there):
        size, seen = per_place.get((place, digest), (d.size, False))
        per_place[(place, digest)] = (size, seen or t)
    return (states, sum(n for n, t in per_place.values() if not t), sum(n for n, t in per_place.values() if t))
