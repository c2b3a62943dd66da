"""``porter import`` and ``porter mirror``: images from any source into a registry.

Blobs first (each once per destination repository, cheapest way first: skip, mount, upload),
then manifests — children before their index, the tagged one last — so a tag never names
something incomplete. The original manifest bytes are pushed, so digests are the source's.
"""
from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .engine import Cancelled, Image, run_all
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


@dataclass
class _Blob:
    job: Job
    desc: Descriptor


def push(jobs_: list[Job], jobs: int, progress: Quiet) -> dict[str, Any]:
    started = time.monotonic()
    blobs: dict[tuple[str, str, str], _Blob] = {}
    for j in jobs_:
        for d in j.image.blobs:
            blobs.setdefault((j.dest.host, j.dest.repository, d.digest), _Blob(j, d))
    todo = sorted(blobs.values(), key=lambda b: -b.desc.size)
    progress.start(sum(b.desc.size for b in todo), len(todo))
    outcomes: Counter[str] = Counter()
    sent = Counter[str]()
    cancel = threading.Event()
    lock = threading.Lock()

    def one(b: _Blob) -> None:
        if cancel.is_set():
            raise Cancelled("cancelled")
        handle = progress.blob_started(b.desc.digest, b.desc.size)
        counted = [0]

        def on_bytes(n: int) -> None:
            if cancel.is_set():
                raise Cancelled("cancelled")
            counted[0] += n
            progress.advance(handle, n)

        try:
            how = b.job.pusher.ensure_blob(b.job.dest.repository, b.desc, b.job.source,
                                           b.job.image.ref.repository, on_bytes)
        finally:
            progress.blob_finished(handle)
        with lock:
            outcomes[how] += 1
            sent["bytes"] += counted[0]
            if how != "uploaded":
                sent["skipped_bytes"] += b.desc.size

    try:
        run_all(one, todo, jobs, cancel)
    finally:
        progress.close()
    for j in jobs_:
        push_manifests(j)
    return {
        "images": [summary(j) for j in jobs_],
        "blobs": {"uploaded": outcomes["uploaded"], "mounted": outcomes["mounted"], "skipped": outcomes["skipped"]},
        "bytes_sent": sent["bytes"],
        "bytes_skipped": sent["skipped_bytes"],
        "seconds": round(time.monotonic() - started, 3),
    }


def push_manifests(j: Job) -> None:
    kept = j.image.manifests
    children, top = kept[1:], kept[0]
    for m in reversed(children):  # deepest first: an index only after everything it names
        j.pusher.put_manifest(j.dest.repository, m.digest, m)
    j.pusher.put_manifest(j.dest.repository, j.dest.tag or top.digest, top)


def summary(j: Job) -> dict[str, Any]:
    out = {"source": str(j.image.ref), "destination": str(j.dest), "digest": j.image.listed.digest,
           "mediaType": j.image.listed.media_type}
    if j.image.narrowed:
        out["source_digest"] = j.image.top.digest
        out["platform"] = str(j.image.platform)
    return out


def dest_for(src: Reference, dest: Reference, keep_path: bool) -> Reference:
    """Where ``src`` goes: ``dest`` names the repository (and maybe tag), or with ``keep_path``
    is a registry/prefix under which the source's repository path is kept."""
    if keep_path:
        path = src.repository.removeprefix("library/") if src.host == "docker.io" else src.repository
        repo = f"{dest.repository}/{path}" if dest.repository else path
        return Reference(dest.host, repo, src.tag)
    return Reference(dest.host, dest.repository, dest.tag or src.tag)

