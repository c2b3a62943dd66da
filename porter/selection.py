"""Which images a bulk job moves: expand a registry, a repository or an image into image
references, through the filters (--include/--exclude, --tags, --latest, --shard).

Version order: semantic versions where every considered tag parses as one, otherwise the
image's creation time from its config (an index: the host platform's image, else the first).
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable

from .blob import BlobReader
from .errors import PorterError, UsageError
from .mediatypes import Platform, loads
from .places.protocol import Lister, Source
from .pool import pmap
from .reference import Reference, check_repository, check_tag, printable
from .referrers import is_attachment_tag

_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
OLDEST = datetime.min.replace(tzinfo=timezone.utc)


def parse_time(text: object) -> datetime | None:
    """RFC 3339 as image configs write it (nanoseconds included) → an aware datetime; None when
    absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$", text.strip())
    if not m:
        return None
    frac = f".{m[2][:6]}" if m[2] else ""
    tz = "+00:00" if m[3] in (None, "Z") else m[3]
    try:
        return datetime.fromisoformat(m[1] + frac + tz)
    except ValueError:  # month 13 and the like
        return None


def semver_key(tag: str) -> tuple | None:
    m = _SEMVER.match(tag)
    if not m:
        return None
    pre = m[4]
    # A release sorts after its pre-releases; pre-release parts compare numerically where they can.
    pre_key = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split(".")) if pre else ()
    return (int(m[1]), int(m[2]), int(m[3]), 0 if pre else 1, pre_key)


def tag_order(tag: str) -> tuple:
    """Sort key for listing tags: semantic versions first, in version order, then the rest by name."""
    key = semver_key(tag)
    return (0, key, tag) if key else (1, (), tag)


def created(source: Source, ref: Reference, digest: str | None = None) -> datetime | None:
    """The image's creation time, from its config."""
    m = source.get_manifest(ref, digest)
    if m.is_index:
        kids = [c for c in m.children if c.platform]
        if not kids:
            return None
        try:
            pick = m.pick(Platform.host())
        except PorterError:
            pick = kids[0]
        m = source.get_manifest(ref, pick.digest)
    cfg = m.config
    raw = BlobReader(source, ref.repository, cfg).read_all()
    try:
        return parse_time(loads(raw, "config").get("created"))
    except (PorterError, AttributeError, TypeError):
        return None


def newest_first(tags: list[str], when: dict[str, datetime | None]) -> tuple[list[str], str]:
    """Tags ordered newest first, and by what ("semver" or "creation time")."""
    if tags and all(semver_key(t) for t in tags):
        return sorted(tags, key=semver_key, reverse=True), "semver"  # type: ignore[arg-type]
    return sorted(tags, key=lambda t: (when.get(t) or OLDEST, t), reverse=True), "creation time"


def compile_re(pattern: str | None, what: str) -> re.Pattern | None:
    try:
        return re.compile(pattern) if pattern else None
    except re.error as e:
        raise UsageError(f"invalid {what} regular expression {pattern!r}: {e}") from None


@dataclass
class Filters:
    include: list[str] | None = None
    exclude: list[str] | None = None
    tags: str | None = None
    latest: int | None = None
    shard: tuple[int, int] | None = None  # (index, count), index from 0
    skip_attachment_tags: bool = False  # cosign and fallback-index tags travel with their images instead

    def __post_init__(self) -> None:
        self._inc = [compile_re(p, "--include") for p in self.include or []]
        self._exc = [compile_re(p, "--exclude") for p in self.exclude or []]
        self._tags = compile_re(self.tags, "--tags")

    def repo_ok(self, repo: str) -> bool:
        if self._inc and not any(r.fullmatch(repo) for r in self._inc if r):
            return False
        if any(r.fullmatch(repo) for r in self._exc if r):
            return False
        return self.shard is None or shard_of(repo, self.shard[1]) == self.shard[0]

    def tag_ok(self, tag: str) -> bool:
        return self._tags is None or bool(self._tags.search(tag))


def shard_of(repo: str, count: int) -> int:
    """A repository's shard: stable across machines and runs (not Python's salted hash)."""
    return int(hashlib.sha256(repo.encode()).hexdigest()[:16], 16) % count


def parse_shard(text: str | None, index_env: str | None, shards: int | None) -> tuple[int, int] | None:
    """``--shard I/N`` (I from 0), or JOB_COMPLETION_INDEX with ``--shards N``."""
    if text:
        try:
            i, n = (int(x) for x in text.split("/"))
        except ValueError:
            raise UsageError(f"--shard takes I/N (e.g. 0/8), not {text!r}") from None
    elif shards:
        if index_env is None:
            return None if shards == 1 else _missing_index()
        i, n = int(index_env), shards
    else:
        return None
    if not (n >= 1 and 0 <= i < n):
        raise UsageError(f"shard {i}/{n}: the index must be from 0 to {n - 1}")
    return i, n


def _missing_index() -> tuple[int, int]:
    raise PorterError("--shards needs JOB_COMPLETION_INDEX in the environment (a Kubernetes Indexed Job sets it) or --shard I/N")


#: Told of each listed name that is refused: (the name as listed, why).
Refuse = Callable[[str, str], None]


def _refuse_all(name: str, why: str) -> None:
    raise PorterError(f"refusing {name}: {why}")


def valid(names: Iterable[str], check: Callable[[str], str], refuse: Refuse, prefix: str = "") -> list[str]:
    """The names a listing gave that pass ``check`` (the command line's grammar); each other one
    goes to ``refuse``, so that it never reaches a URL, a path or a RepoTags entry."""
    out = []
    for n in names:
        try:
            out.append(check(n))
        except PorterError as e:
            refuse(prefix + printable(n), str(e))
    return out


def expand(source: Source, lister: Lister | None, ref: Reference, f: Filters, jobs: int,
           refuse: Refuse = _refuse_all) -> list[Reference]:
    """Image references for an image, a repository (every tag) or a whole registry/storage.
    Listed repository names and tags are validated first; ``refuse`` hears of each bad one."""
    if ref.tag or ref.digest:
        return [ref] if (ref.is_registry or f.repo_ok(ref.repository)) else []
    if lister is None:
        raise PorterError(f"{ref}: this source cannot list tags; name an image with a tag")
    repos = [ref.repository] if ref.repository else valid(lister.repositories(), check_repository, refuse)
    repos = [r for r in repos if f.repo_ok(r)]

    def tags_of(repo: str) -> list[Reference]:
        tags = [t for t in valid(lister.tags(repo), check_tag, refuse, f"{repo}:") if f.tag_ok(t)
                and not (f.skip_attachment_tags and is_attachment_tag(t))]
        if f.latest is not None and len(tags) > f.latest:
            when: dict[str, datetime | None] = {}
            if not all(semver_key(t) for t in tags):
                when = {t: created(source, Reference(ref.host, repo, t)) for t in tags}
            tags = newest_first(tags, when)[0][: f.latest]
        return [Reference(ref.host, repo, t) for t in sorted(tags)]

    return [r for refs in pmap(tags_of, repos, jobs) for r in refs]
