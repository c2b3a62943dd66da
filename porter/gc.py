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

import functools
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import digest as dg
from . import safepath
from .errors import PorterError, StorageError, UsageError
from .mediatypes import MAX_MANIFEST_BYTES, Manifest
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


_HEX = re.compile(r"[a-f0-9]{64}\Z")


def _started_at(root: Path, upload: Path) -> float | None:
    try:
        text = safepath.read_regular(root, upload / "startedat", 100).decode("ascii").strip()
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()
    except (OSError, ValueError, StorageError):
        return None


def _last_write(upload: Path) -> float:
    latest = 0.0
    for root, _, files in os.walk(upload):
        for f in files:
            try:
                latest = max(latest, os.lstat(os.path.join(root, f)).st_mtime)
            except OSError:
                pass
    return latest


class Collector:
    """Plans and sweeps one storage directory. Nothing outside its root is read or deleted: no
    link is followed (a repository whose metadata is a link stops the plan before anything is
    deleted; a link or stray entry under ``blobs/`` is reported and left alone)."""

    def __init__(self, storage: Storage):
        self.st = storage
        self.root = storage.v2

    def _links(self, d: Path) -> list[str]:
        """Digests named by ``<d>/sha256/<hex>/link`` entries (revisions, layers, tag indexes)."""
        names, _ = safepath.scan_dirs(self.root, d / "sha256")
        # A deleted manifest leaves its directory behind, without the link file.
        return ["sha256:" + n for n in names if _HEX.match(n) and os.path.isfile(f"{d}/sha256/{n}/link")]

    def _manifest(self, digest: str) -> Manifest | None:
        path = self.st.blob_path(digest)
        try:
            raw = self.st.read(path, MAX_MANIFEST_BYTES, f"manifest {digest}")
            dg.check_bytes(raw, digest, f"manifest blob {path}")
            return Manifest.parse(raw, "", digest, str(path))
        except PorterError:  # missing, corrupt, a link, or a blob that is not a manifest
            return None

    def _mark(self, digest: str, plan: Plan) -> bool:
        """Mark a manifest and, recursively, everything it references; False when some manifest
        on the way could not be read (then the caller keeps the whole repository's blobs)."""
        pending, whole = [digest], True
        while pending:
            d = pending.pop()
            if d in plan.marked:
                continue
            plan.marked.add(d)
            m = self._manifest(d)
            if m is None:
                whole = False
                continue
            for ref in m.blobs:
                plan.marked.add(ref.digest)
            pending.extend(c.digest for c in m.children)
        return whole

    def _referrers_of(self, kept: set[str], revisions: list[str]) -> set[str]:
        """Untagged manifests whose ``subject`` is kept (signatures, SBOMs of a kept image), and
        theirs in turn: a referrer of a kept image is kept."""
        subjects: dict[str, str] = {}
        for d in revisions:
            if d not in kept and (m := self._manifest(d)) is not None:
                s = m.doc.get("subject")
                if isinstance(s, dict) and isinstance(s.get("digest"), str):
                    subjects[d] = s["digest"]
        out: set[str] = set()
        grew = True
        while grew:
            grew = False
            for d, s in subjects.items():
                if d not in out and (s in kept or s in out):
                    out.add(d)
                    grew = True
        return out

    def _check_repo(self, repo: str) -> Path:
        d = self.st.repos_dir / repo
        for sub in ("_manifests", "_layers", "_uploads"):
            p = d / sub
            if os.path.lexists(p) and not safepath.plain_dir(self.root, p):
                raise StorageError(f"{p} is a symbolic link (or not a directory): refusing to collect a storage "
                                   f"tree that points outside itself; remove it first")
        return d

    def plan(self, delete_untagged: bool, upload_age: float, now: float | None = None) -> Plan:
        now = now or time.time()
        plan = Plan()
        for repo in self.st.repositories():
            rdir = self._check_repo(repo)
            mdir = rdir / "_manifests"
            revisions = self._links(mdir / "revisions")
            tagged: set[str] = set()
            doubtful = False  # something this repository names could not be read: keep all its blobs
            for t in self.st.tags(repo):
                try:
                    tagged.add(self.st.tag_digest(repo, t))
                except PorterError as e:
                    plan.problems.append(f"{repo}: tag {t!r}: {e}")
                    doubtful = True
            keep = set(revisions)
            if delete_untagged:
                keep = set(tagged)
                for d in tagged:  # children of tagged indexes stay (unlike registry 2.8)
                    m = self._manifest(d)
                    if m is not None:
                        keep.update(c.digest for c in m.children)
                keep |= self._referrers_of(keep, revisions)
                plan.manifests += [(repo, d) for d in revisions if d not in keep]
            for d in sorted(keep):
                if (d in revisions or d in tagged) and not self._mark(d, plan):
                    plan.problems.append(f"{repo}: manifest {d} (or one it names) is missing or unreadable; "
                                         f"every blob linked to {repo} is kept")
                    doubtful = True
            if doubtful:
                plan.marked.update(self._links(rdir / "_layers"))
                plan.marked.update(revisions)
            for up in self._uploads(repo):
                started = _started_at(self.root, up)
                if started is not None and now - started > upload_age:
                    plan.uploads.append(up)
        blobs_root = self.root / "blobs" / "sha256"
        prefixes, stray = safepath.scan_dirs(self.root, blobs_root)
        plan.problems += [f"{blobs_root / n}: not a blob directory; skipped" for n in stray]
        for prefix in prefixes:
            names, stray = safepath.scan_dirs(self.root, blobs_root / prefix)
            plan.problems += [f"{blobs_root / prefix / n}: not a blob directory; skipped" for n in stray]
            for name in names:
                if not (_HEX.match(name) and name.startswith(prefix)):
                    plan.problems.append(f"{blobs_root / prefix / name}: not a sha256 blob directory; skipped")
                    continue
                d = "sha256:" + name
                if d not in plan.marked:
                    try:
                        plan.blobs[d] = os.lstat(blobs_root / prefix / name / "data").st_size
                    except OSError:
                        plan.blobs[d] = 0
        return plan

    def _uploads(self, repo: str) -> list[Path]:
        d = self.st.repos_dir / repo / "_uploads"
        names, _ = safepath.scan_dirs(self.root, d)
        return [d / n for n in names]

    def active_uploads(self, now: float | None = None) -> list[str]:
        now = now or time.time()
        out = []
        for repo in self.st.repositories():
            for up in self._uploads(repo):
                if now - _last_write(up) < ACTIVE_UPLOAD_SECONDS:
                    out.append(f"{repo}/_uploads/{up.name}")
        return out

    def sweep(self, plan: Plan) -> None:
        """Delete what the plan says, outside in: untagged manifests, blobs, layer links, uploads.
        Whatever is skipped (a link on the way) is added to the plan's problems; the sweep goes on."""
        repos = list(self.st.repositories())
        skipped: list[str | None] = []
        rm = functools.partial(safepath.remove_tree, self.root)
        for repo, d in plan.manifests:
            h = dg.hex_of(d)
            mdir = self.st.repos_dir / repo / "_manifests"
            skipped.append(rm(mdir / "revisions" / "sha256" / h))
            tags, _ = safepath.scan_dirs(self.root, mdir / "tags")
            skipped += [rm(mdir / "tags" / t / "index" / "sha256" / h) for t in tags]
        for d in plan.blobs:
            h = dg.hex_of(d)
            skipped.append(rm(self.root / "blobs" / "sha256" / h[:2] / h))
        for repo in repos:
            layers = self.st.repos_dir / repo / "_layers" / "sha256"
            present, _ = safepath.scan_dirs(self.root, layers)
            skipped += [rm(layers / h) for h in present if "sha256:" + h in plan.blobs]
        skipped += [rm(up) for up in plan.uploads]
        plan.problems += [s for s in skipped if s]


def parse_duration(text: str) -> float:
    """``30d``, ``12h``, ``90m``, ``45s``, ``2w`` → seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    t = text.strip().lower()
    try:
        n = float(t[:-1])
        if not 0 <= n < 1e9:
            raise ValueError(t)
        return n * units[t[-1]]
    except (ValueError, KeyError, IndexError):
        raise UsageError(f"invalid duration {text!r}: use e.g. 30d, 12h, 90m") from None


def collect(storage: str, *, dry_run: bool, delete_untagged: bool, upload_age: str, force: bool) -> Plan:
    """Plan (and unless ``dry_run``, carry out) a GC of a storage directory."""
    age = parse_duration(upload_age)  # a usage error before anything is read
    collector = Collector(Storage(storage))
    if not dry_run and not force:
        active = collector.active_uploads()
        if active:
            raise PorterError(f"{len(active)} upload(s) look active ({active[0]}, …): stop the registry or make it "
                              f"read-only (storage.maintenance.readonly) first, or pass --force")
    plan = collector.plan(delete_untagged, age)
    if not dry_run:
        collector.sweep(plan)
    return plan
