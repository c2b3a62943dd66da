"""Offline mark-and-sweep over a registry storage directory (the registry stopped or read-only).

Mark: every manifest revision of every repository — or, with ``delete_untagged``, every tagged
manifest plus the children of tagged indexes — and everything those reference (configs,
layers, child manifests, recursively). Sweep: every blob not marked. The plan is complete
before anything is deleted, and deletion goes from the outside in (untagged manifest links,
then blobs, then the per-repository layer links to them), so an interrupted run leaves storage
that still serves every remaining image.

Distribution 2.8's own ``garbage-collect --delete-untagged`` also deletes the untagged children
of tagged manifest lists, which breaks every multi-platform image; porter keeps them.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import digest as dg
from .errors import PorterError, StorageError
from .mediatypes import Manifest
from .places.storage import Storage

ACTIVE_UPLOAD_SECONDS = 3600  # an upload written to within this long counts as in progress


@dataclass
class Plan:
    marked: set[str] = field(default_factory=set)
    blobs: dict[str, int] = field(default_factory=dict)  # digest -> bytes, to delete
    manifests: list[tuple[str, str]] = field(default_factory=list)  # (repository, digest) untagged, to delete
    uploads: list[Path] = field(default_factory=list)  # stale upload directories
    problems: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(self.blobs.values())

    def as_json(self) -> dict:
        return {"blobs": sorted(self.blobs), "manifests": [f"{r}@{d}" for r, d in self.manifests],
                "bytes": self.bytes, "uploads": [str(p) for p in self.uploads], "problems": self.problems}


def _links(d: Path) -> list[str]:
    """Digests named by ``<d>/sha256/<hex>/link`` entries (revisions, layers, tag indexes)."""
    base = d / "sha256"
    try:
        return sorted("sha256:" + e.name for e in base.iterdir() if (e / "link").exists())
    except FileNotFoundError:
        return []


def _started_at(upload: Path) -> float | None:
    try:
        text = (upload / "startedat").read_text().strip()
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()
    except (OSError, ValueError):
        return None


def _last_write(upload: Path) -> float:
    latest = 0.0
    for root, _, files in os.walk(upload):
        for f in files:
            try:
                latest = max(latest, os.stat(os.path.join(root, f)).st_mtime)
            except OSError:
                pass
    return latest


class Collector:
    def __init__(self, storage: Storage):
        self.st = storage

    def _manifest(self, digest: str) -> Manifest | None:
        path = self.st.blob_path(digest)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            dg.check_bytes(raw, digest, f"manifest blob {path}")
            return Manifest.parse(raw, "", digest, str(path))
        except PorterError:  # corrupt, or a blob that is not a manifest
            return None

    def _mark(self, digest: str, plan: Plan, where: str) -> None:
        """Mark a manifest and, recursively, everything it references."""
        pending = [digest]
        while pending:
            d = pending.pop()
            if d in plan.marked:
                continue
            plan.marked.add(d)
            m = self._manifest(d)
            if m is None:
                if d == digest:
                    plan.problems.append(f"{where}: manifest {d} is missing or unreadable; its blobs stay unmarked")
                continue
            for ref in m.blobs:
                plan.marked.add(ref.digest)
            pending.extend(c.digest for c in m.children)

    def plan(self, delete_untagged: bool, upload_age: float, now: float | None = None) -> Plan:
        now = now or time.time()
        plan = Plan()
        for repo in self.st.repositories():
            mdir = self.st.repos_dir / repo / "_manifests"
            revisions = _links(mdir / "revisions")
            tagged = {self.st.tag_digest(repo, t) for t in self.st.tags(repo)}
            keep = set(revisions)
            if delete_untagged:
                keep = set(tagged)
                for d in tagged:  # children of tagged indexes stay (unlike registry 2.8)
                    m = self._manifest(d)
                    if m is not None:
                        keep.update(c.digest for c in m.children)
                plan.manifests += [(repo, d) for d in revisions if d not in keep]
            for d in sorted(keep):
                if d in revisions or d in tagged:
                    self._mark(d, plan, repo)
            for up in self._uploads(repo):
                started = _started_at(up)
                if started is not None and now - started > upload_age:
                    plan.uploads.append(up)
        blobs_root = self.st.v2 / "blobs" / "sha256"
        for prefix in sorted(blobs_root.iterdir()) if blobs_root.is_dir() else []:
            for b in sorted(prefix.iterdir()):
                d = "sha256:" + b.name
                if d not in plan.marked:
                    try:
                        plan.blobs[d] = (b / "data").stat().st_size
                    except FileNotFoundError:
                        plan.blobs[d] = 0
        return plan

    def _uploads(self, repo: str) -> list[Path]:
        d = self.st.repos_dir / repo / "_uploads"
        return sorted(p for p in d.iterdir() if p.is_dir()) if d.is_dir() else []

    def active_uploads(self, now: float | None = None) -> list[str]:
        now = now or time.time()
        out = []
        for repo in self.st.repositories():
            for up in self._uploads(repo):
                if now - _last_write(up) < ACTIVE_UPLOAD_SECONDS:
                    out.append(f"{repo}/_uploads/{up.name}")
        return out

    def sweep(self, plan: Plan) -> None:
        """Delete what the plan says, outside in: untagged manifests, blobs, layer links, uploads."""
        repos = list(self.st.repositories())
        for repo, d in plan.manifests:
            h = dg.hex_of(d)
            mdir = self.st.repos_dir / repo / "_manifests"
            shutil.rmtree(mdir / "revisions" / "sha256" / h, ignore_errors=True)
            tags = mdir / "tags"
            for t in tags.iterdir() if tags.is_dir() else []:
                shutil.rmtree(t / "index" / "sha256" / h, ignore_errors=True)
        for d in plan.blobs:
            h = dg.hex_of(d)
            shutil.rmtree(self.st.v2 / "blobs" / "sha256" / h[:2] / h, ignore_errors=True)
        for repo in repos:
            layers = self.st.repos_dir / repo / "_layers" / "sha256"
            for d in plan.blobs:
                shutil.rmtree(layers / dg.hex_of(d), ignore_errors=True)
        for up in plan.uploads:
            shutil.rmtree(up, ignore_errors=True)


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    t = text.strip().lower()
    try:
        return float(t[:-1]) * units[t[-1]]
    except (ValueError, KeyError, IndexError):
        raise StorageError(f"invalid duration {text!r}: use e.g. 30d, 12h, 90m") from None


def collect(storage: str, *, dry_run: bool, delete_untagged: bool, upload_age: str, force: bool) -> Plan:
    """Plan (and unless ``dry_run``, carry out) a GC of a storage directory."""
    collector = Collector(Storage(storage))
    age = parse_duration(upload_age)
    if not dry_run and not force:
        active = collector.active_uploads()
        if active:
            raise PorterError(f"{len(active)} upload(s) look active ({active[0]}, …): stop the registry or make it "
                              f"read-only (storage.maintenance.readonly) first, or pass --force")
    plan = collector.plan(delete_untagged, age)
    if not dry_run:
        collector.sweep(plan)
    return plan
