"""``porter ls``: repositories, and tags with digest, platforms and size, from any Lister+Source.

``check`` re-reads every blob of the listed images through a verifier, so a storage directory's
(or registry's) corrupt and missing blobs are found before a migration depends on them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .blob import BlobReader
from .errors import PorterError
from .image import platform_of
from .mediatypes import Descriptor, Manifest
from .places.protocol import BlobIndex, Lister, Source
from .pool import pmap
from .reference import Reference, check_repository, check_tag
from .referrers import Finder, is_attachment_tag
from .selection import Refuse, tag_order, valid


@dataclass
class TagRow:
    repository: str
    tag: str
    digest: str = ""
    mediaType: str = ""
    platforms: list[str] = field(default_factory=list)
    size: int = 0
    error: str = ""
    artifacts: int = 0  # attached: referrers and cosign tags, recursively
    children: list[str] = field(default_factory=list, repr=False)  # an index's manifests
    blobs: list[Descriptor] = field(default_factory=list, repr=False)  # for check; not printed


def _images(source: Source, ref: Reference) -> tuple[Manifest, list[Manifest]]:
    """The manifest a reference names, and the image manifests under it (itself, or an index's children)."""
    top = source.get_manifest(ref)
    return top, ([top] if not top.is_index else [source.get_manifest(ref, c.digest) for c in top.children])


def describe(source: Source, ref: Reference) -> TagRow:
    """One tag: what it points at, its platforms and its total size (manifests + unique blobs)."""
    row = TagRow(ref.repository, ref.tag or "")
    try:
        top, images = _images(source, ref)
        row.digest, row.mediaType = top.digest, top.media_type
        if top.is_index:
            row.platforms = [str(c.platform) for c in top.children if c.platform]
        else:
            row.platforms = [str(platform_of(source, ref, top) or "?")]
        row.children = [m.digest for m in images if m is not top]
        blobs = {d.digest: d for m in images for d in m.blobs}
        manifests = {m.digest: len(m.raw) for m in [top, *images]}
        row.blobs = list(blobs.values())
        row.size = sum(d.size for d in row.blobs) + sum(manifests.values())
    except PorterError as e:
        row.error = str(e)
    return row


def list_tags(source: Source, lister: Lister, base: Reference, jobs: int, refuse: Refuse) -> list[TagRow]:
    """Every tag of ``base``'s repository, described; a listed tag that is not a valid tag goes
    to ``refuse`` and is never requested."""
    tags = valid(lister.tags(base.repository), check_tag, refuse, f"{base.repository}:")
    refs = [Reference(base.host, base.repository, tag) for tag in sorted(tags, key=tag_order)]
    finder = Finder(source, tags={base.repository: tags})  # no second listing of these tags

    def one(ref: Reference) -> TagRow:
        row = describe(source, ref)
        if not row.error and not is_attachment_tag(ref.tag or ""):
            try:
                row.artifacts = len(finder.find(ref, [row.digest, *row.children]))
            except PorterError as e:
                row.error = f"reading what is attached: {e}"
        return row

    return pmap(one, refs, jobs)


def check(source: Source, rows: list[TagRow], jobs: int) -> list[str]:
    """Verify every blob of every described image; returns one problem line per bad tag or blob."""
    problems = [f"{r.repository}:{r.tag}: {r.error}" for r in rows if r.error]
    work: dict[str, tuple[Descriptor, str, str]] = {}  # digest -> (descriptor, repository, first user)
    for r in rows:
        for d in r.blobs:
            work.setdefault(d.digest, (d, r.repository, f"{r.repository}:{r.tag}"))

    def verify(item: tuple[Descriptor, str, str]) -> str | None:
        d, repository, used_by = item
        try:
            BlobReader(source, repository, d).check()
        except PorterError as e:
            return f"{used_by}: {e}"
        return None

    problems += [p for p in pmap(verify, list(work.values()), jobs) if p]
    return problems


def held_blobs(source: Source, lister: Lister, host: str, jobs: int, refuse: Refuse) -> list[str]:
    """Every blob digest a registry or storage directory holds: what a delta made against this
    list can leave out. A storage directory is read directly; a registry is walked through every
    tag's manifests (all platforms); what cannot be read goes to ``refuse``."""
    if isinstance(source, BlobIndex):
        return sorted(source.blob_digests())
    repos = valid(lister.repositories(), check_repository, refuse)
    rows = [row for r in repos for row in list_tags(source, lister, Reference(host, r), jobs, refuse)]
    for r in rows:
        if r.error:
            refuse(f"{r.repository}:{r.tag}", r.error)
    return sorted({d.digest for r in rows for d in r.blobs})


def rows_json(rows: list[TagRow]) -> list[dict]:
    return [{k: v for k, v in asdict(r).items() if (v or k == "size") and k not in ("blobs", "children")} for r in rows]
