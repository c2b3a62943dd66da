"""``porter import`` and ``porter mirror``: images from any source into a registry.

Blobs first (each once per destination repository, cheapest way first: skip, mount, upload),
then manifests — children before their index, the tagged one last — so a tag never names
something incomplete. The original manifest bytes are pushed, so digests are the source's.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .engine import Cancelled, Image, run_all
from .errors import PorterError
from .journal import Journal
from .mediatypes import Descriptor
from .places.base import Source
from .places.registry_push import Pusher
from .progress import Quiet
from .reference import Reference


@dataclass
class Job:
    """One image to push: what was resolved, from where, and where it goes."""

    image: Image
    source: Source
    dest: Reference  # host + repository (+ tag, or none to push by digest only)
    pusher: Pusher
    state: str = "pending"  # then "copied", "present" or "failed"
    error: str = ""

    @property
    def dest_ref(self) -> str:
        return self.dest.tag or self.image.listed.digest


@dataclass
class _Blob:
    desc: Descriptor
    jobs: list[Job]


def push(jobs_: list[Job], jobs: int, progress: Quiet, journal: Journal | None = None,
         keep_going: bool = False) -> dict[str, Any]:
    """Push every job. With ``keep_going`` an image that fails is reported and the rest go on;
    otherwise the first failure stops the run."""
    started = time.monotonic()
    # One HEAD per image: a destination that serves the manifest has everything it references.
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        there = list(pool.map(lambda j: j.pusher.has_manifest(j.dest.repository, j.dest_ref, j.image.listed.digest),
                              jobs_))
    for j, present in zip(jobs_, there):
        if present:
            j.state = "present"
    blobs: dict[tuple[str, str, str], _Blob] = {}
    for j in (j for j in jobs_ if j.state == "pending"):
        for d in j.image.blobs:
            blobs.setdefault((j.dest.host, j.dest.repository, d.digest), _Blob(d, [])).jobs.append(j)
    todo = sorted(blobs.values(), key=lambda b: -b.desc.size)
    progress.start(sum(b.desc.size for b in todo), len(todo))
    outcomes: Counter[str] = Counter()
    cancel, lock = threading.Event(), threading.Lock()

    def one(b: _Blob) -> None:
        if cancel.is_set():
            raise Cancelled("cancelled")
        j = b.jobs[0]
        handle = progress.blob_started(b.desc.digest, b.desc.size)
        sent = 0

        def on_bytes(n: int) -> None:
            nonlocal sent
            if cancel.is_set():
                raise Cancelled("cancelled")
            sent += n
            progress.advance(handle, n)

        try:
            how = j.pusher.ensure_blob(j.dest.repository, b.desc, j.source, j.image.ref.repository, on_bytes)
        finally:
            progress.blob_finished(handle)
        with lock:
            outcomes[how] += 1
            outcomes["bytes_sent"] += sent
            if how != "uploaded":
                outcomes["bytes_skipped"] += b.desc.size

    try:
        failures = run_all(one, todo, jobs, cancel, keep_going)
    finally:
        progress.close()
    for i, e in failures.items():
        for j in todo[i].jobs:
            j.state, j.error = "failed", j.error or str(e)
    def finish(j: Job) -> None:
        push_manifests(j)
        j.state = "copied"
        if journal:
            journal.image_done(str(j.dest), j.image.listed.digest)

    pending = [j for j in jobs_ if j.state == "pending"]
    for i, e in run_all(finish, pending, jobs, cancel, keep_going).items():
        pending[i].state, pending[i].error = "failed", str(e)
    states = Counter(j.state for j in jobs_)
    return {
        "images": [summary(j) for j in jobs_],
        "copied": states["copied"], "present": states["present"], "failed": states["failed"],
        "artifacts": sum(1 for j in jobs_ if j.image.subject and j.state in ("copied", "present")),
        "blobs": {"uploaded": outcomes["uploaded"], "mounted": outcomes["mounted"], "skipped": outcomes["skipped"]},
        "bytes_sent": outcomes["bytes_sent"],
        "bytes_skipped": outcomes["bytes_skipped"],
        "seconds": round(time.monotonic() - started, 3),
    }


def push_manifests(j: Job) -> None:
    """Children first, the tagged one last; then the post-condition: the destination answers the
    tag (or digest) with the expected digest. Every blob was confirmed on the way (a HEAD that
    found it, or the registry's 201 for its upload or mount, checked against the digest)."""
    kept = j.image.manifests
    children, top = kept[1:], kept[0]
    for m in reversed(children):  # deepest first: an index only after everything it names
        j.pusher.put_manifest(j.dest.repository, m.digest, m)
    # push() found the top manifest missing a moment ago: no second HEAD for it.
    j.pusher.put_manifest(j.dest.repository, j.dest_ref, top, check=False)
    served = j.pusher.reg.manifest_digest(j.dest.repository, j.dest_ref)
    if served != top.digest:
        raise PorterError(f"{j.dest}: after the push the registry serves {served or 'nothing'}, not {top.digest}; "
                          f"not counted as copied")


def summary(j: Job) -> dict[str, Any]:
    out = {"source": str(j.image.ref), "destination": str(j.dest), "digest": j.image.listed.digest,
           "mediaType": j.image.listed.media_type, "state": j.state}
    if j.error:
        out["error"] = j.error
    if j.image.narrowed:
        out["source_digest"] = j.image.top.digest
        out["platform"] = str(j.image.platform)
    if j.image.subject:
        out["attached_to"] = j.image.subject
    return out


def dest_for(src: Reference, dest: Reference, keep_path: bool) -> Reference:
    """Where ``src`` goes: ``dest`` names the repository (and maybe tag), or with ``keep_path``
    is a registry/prefix under which the source's repository path is kept."""
    if keep_path:
        path = src.repository.removeprefix("library/") if src.host == "docker.io" else src.repository
        repo = f"{dest.repository}/{path}" if dest.repository else path
        return Reference(dest.host, repo, src.tag)
    return Reference(dest.host, dest.repository, dest.tag or src.tag)



def preview(jobs_: list[Job], jobs: int) -> dict[str, Any]:
    """What a run would do: per image copy or present; bytes to move and bytes already there."""

    def state(j: Job) -> str:
        return "present" if j.pusher.has_manifest(j.dest.repository, j.dest_ref, j.image.listed.digest) else "copy"

    blobs = {(j.dest.host, j.dest.repository, d.digest): (j, d) for j in jobs_ for d in j.image.blobs}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        states = list(pool.map(state, jobs_))
        there = list(pool.map(lambda jd: jd[0].pusher.has_blob(jd[0].dest.repository, jd[1].digest), blobs.values()))
    # A blob is sent once per destination registry: present anywhere there, it is mounted or skipped.
    per_host: dict[tuple[str, str], tuple[int, bool]] = {}
    for (host, _, digest), (_, d), t in zip(blobs, blobs.values(), there):
        size, seen = per_host.get((host, digest), (d.size, False))
        per_host[(host, digest)] = (size, seen or t)
    return {"images": [{"source": str(j.image.ref), "destination": str(j.dest), "digest": j.image.listed.digest,
                        "state": s, "bytes": sum(d.size for d in j.image.blobs),
                        **({"attached_to": j.image.subject} if j.image.subject else {})}
                       for j, s in zip(jobs_, states)],
            "bytes_to_send": sum(n for n, t in per_host.values() if not t),
            "bytes_present": sum(n for n, t in per_host.values() if t)}
