"""Delta archives: only the layers the far side lacks.

A delta is made against a BASE: an earlier porter archive (the far side imported it), or a list
of blob digests the far side holds (``porter ls --blobs`` writes one there). The delta keeps every
manifest and config and leaves out the layers BASE holds. Its ``index.json`` is annotated with
the base's identity (the digest of the base archive's ``index.json``, or of the digest list) and
``porter-delta.json`` lists what was left out, so ``porter import`` can check that the
destination has every one of them before it tags anything, and ``porter verify`` can check the
delta against its base offline.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from . import digest as dg
from .errors import ArchiveError, PorterError
from .mediatypes import loads

BASE_ANNOTATION = "dev.porter.delta.base"
DELTA_MEMBER = "porter-delta.json"
MAX_LIST_BYTES = 256 << 20


@dataclass
class Base:
    """What the far side holds: blob digests, and the identity a delta names its base by."""

    identity: str
    digests: set[str] = field(default_factory=set)
    path: str = ""


def _looks_like_list(path: Path) -> bool:
    if path.is_dir():
        return False
    with open(path, "rb") as f:
        head = f.read(512).lstrip()
    return head.startswith((b"sha256:", b"#")) or head == b""


def load_base(path: str) -> Base:
    """A base archive (tar, .tar.zst, a split set, a layout directory) or a digest list."""
    p = Path(path)
    if not p.exists() and not (p.parent / f"{p.name}.000").exists():
        raise ArchiveError(f"{path}: no such base archive or digest list")
    if p.exists() and _looks_like_list(p):
        return _digest_list(p)
    from .places.archive_members import Members

    members = Members(path if p.exists() else f"{path}.000")
    try:
        if "index.json" not in members:
            raise ArchiveError(f"{path}: not a porter archive (no index.json) nor a digest list")
        identity = dg.of_bytes(members.read("index.json", 16 << 20))
        digests = {"sha256:" + n.rsplit("/", 1)[1] for n in members.entries if n.startswith("blobs/sha256/")}
        if DELTA_MEMBER in members:  # a delta as the base: the far side also held its own base
            digests |= omitted_of(members.read(DELTA_MEMBER, MAX_LIST_BYTES), path)
    finally:
        members.close()
    return Base(identity, digests, path)


def _digest_list(p: Path) -> Base:
    raw = p.read_bytes()
    if len(raw) > MAX_LIST_BYTES:
        raise ArchiveError(f"{p}: a digest list larger than {MAX_LIST_BYTES} bytes")
    digests = set()
    for n, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            digests.add(dg.check(line.split()[0], f"{p}:{n}"))
        except PorterError as e:
            raise ArchiveError(str(e)) from None
    return Base("sha256:" + hashlib.sha256(raw).hexdigest(), digests, str(p))


def omitted_of(raw: bytes, where: str) -> set[str]:
    """The digests a delta's ``porter-delta.json`` says it left out."""
    try:
        doc = loads(raw, f"{where}: {DELTA_MEMBER}")
        out = {dg.check(d["digest"], f"{where}: {DELTA_MEMBER}") for d in doc["omitted"]}
    except (PorterError, KeyError, TypeError) as e:
        raise ArchiveError(f"{where}: unreadable {DELTA_MEMBER} ({e})") from None
    return out
