"""Artifacts attached to images: OCI 1.1 referrers and cosign's tags.

Two ways of attaching exist, and porter follows both, recursively (a signature on an SBOM
travels too):

- **referrers**: a manifest whose ``subject`` names the image (Notation signatures, SBOMs and
  scan reports pushed with oras). A registry with the referrers API lists them at
  ``GET /v2/<name>/referrers/<digest>``; without it (Distribution 2.8) clients keep the
  *referrers tag schema*: tag ``sha256-<hex>`` holds an OCI index of their descriptors.
- **cosign tags**: ``sha256-<hex>.sig``, ``.att``, ``.sbom`` in the image's repository.

Copies keep every byte (signatures verify only over the exact manifests). At a destination
without the referrers API the fallback index is *merged*: referrers listed there already stay.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Protocol, runtime_checkable

from . import digest as dg
from .errors import NotFoundError, PorterError
from .mediatypes import OCI_INDEX, Manifest
from .places.protocol import Lister, Source
from .reference import Reference

if TYPE_CHECKING:
    from .engine import Item
    from .image import Image

COSIGN_SUFFIXES = (".sig", ".att", ".sbom")
#: Config media types that say nothing about what an artifact is (then its first layer's type does).
GENERIC_CONFIGS = {"application/vnd.oci.empty.v1+json", "application/vnd.oci.image.config.v1+json",
                   "application/vnd.docker.container.image.v1+json", "application/vnd.unknown.config.v1+json"}
SUBJECT_ANNOTATION = "dev.porter.subject"  # in an archive's index.json: the digest an attachment is attached to
DESCRIPTOR_ANNOTATION = "dev.porter.referrer-descriptor"  # a referrer's descriptor as its source listed it


def fallback_tag(digest: str) -> str:
    """The referrers-tag-schema tag of ``digest``: ``sha256-<hex>``."""
    return "sha256-" + dg.hex_of(digest)


def is_attachment_tag(tag: str) -> bool:
    """A tag that holds an attachment (cosign) or a fallback index, not an image of its own."""
    base = tag
    for s in COSIGN_SUFFIXES:
        base = base.removesuffix(s)
    return base.startswith("sha256-") and len(base) == 71


@dataclass(frozen=True)
class Attachments:
    """What the user asked for: attachments travel (``--no-referrers`` turns it off), optionally
    only some artifact types (``--referrers-type``, repeatable)."""

    enabled: bool = True
    types: tuple[str, ...] = ()


@runtime_checkable
class ReferrersAPI(Protocol):
    def referrers(self, repository: str, digest: str) -> list[dict[str, Any]] | None:
        """The descriptors the referrers API lists for ``digest`` (all pages); None when the
        place has no referrers API."""
        ...


@dataclass(frozen=True)
class Attached:
    """One attachment: the manifest, what it is attached to, how (a cosign ``tag``, or None for a
    referrer), its artifact type, and — for a referrer — its descriptor as the source listed it."""

    subject: str
    manifest: Manifest
    tag: str | None
    artifact_type: str
    descriptor: dict[str, Any] | None = None


def artifact_type_of(m: Manifest, listed: dict[str, Any] | None) -> str:
    """An attachment's artifact type: its descriptor's or manifest's artifactType, else its config's
    media type, else (cosign) its first layer's media type."""
    doc = m.doc
    for value in ((listed or {}).get("artifactType"), doc.get("artifactType"),
                  (doc.get("config") or {}).get("mediaType") if isinstance(doc.get("config"), dict) else None):
        if isinstance(value, str) and value and value not in GENERIC_CONFIGS:
            return value
    layers = m.layers if not m.is_index else []
    return layers[0].media_type if layers else ""


class Finder:
    """Finds what is attached to images of one source, remembering per repository its tags (one
    listing instead of a probe per cosign tag) and whether the referrers API answers."""

    def __init__(self, source: Source, types: Iterable[str] | None = None,
                 tags: dict[str, Iterable[str]] | None = None):
        """``tags``: repositories whose tags the caller listed already (no second listing)."""
        self.source = source
        self.types = set(types) if types else None
        self._tags: dict[str, set[str] | None] = {r: set(t) for r, t in (tags or {}).items()}
        self._api = isinstance(source, ReferrersAPI)

    def _tags_of(self, repository: str) -> set[str] | None:
        if repository not in self._tags:
            try:
                self._tags[repository] = set(self.source.tags(repository)) if isinstance(self.source, Lister) else None
            except PorterError:
                self._tags[repository] = None
        return self._tags[repository]

    def _listed(self, ref: Reference, subject: str) -> list[dict[str, Any]]:
        """Referrer descriptors of ``subject``: the API's, and the fallback index's (clients
        that wrote one before the registry had the API, or wrote both)."""
        found: list[dict[str, Any]] = []
        if self._api:
            api = self.source.referrers(ref.repository, subject)  # type: ignore[attr-defined]
            if api is None:
                self._api = False  # this source has no referrers API: only the fallback tag from now on
            else:
                found += api
        tag = fallback_tag(subject)
        tags = self._tags_of(ref.repository)
        if tags is not None and tag not in tags:
            return found
        try:
            index = self.source.get_manifest(Reference(ref.host, ref.repository, tag))
        except NotFoundError:
            return found
        return found + ([d for d in index.doc.get("manifests", []) if isinstance(d, dict)] if index.is_index else [])

    def find(self, ref: Reference, subjects: Iterable[str]) -> list[Attached]:
        """Everything attached to ``subjects`` in ``ref``'s repository, and to those attachments."""
        out: list[Attached] = []
        seen: set[str] = set()
        pending = list(subjects)
        while pending:
            subject = pending.pop(0)
            for listed in self._listed(ref, subject):
                digest = dg.check(listed.get("digest"), f"{ref.name}: referrer of {subject}")
                if digest in seen:
                    continue
                seen.add(digest)
                m = self.source.get_manifest(Reference(ref.host, ref.repository), digest)
                self._keep(out, pending, Attached(subject, m, None, artifact_type_of(m, listed), listed))
            tags = self._tags_of(ref.repository)
            for suffix in COSIGN_SUFFIXES:
                tag = fallback_tag(subject) + suffix
                if tags is not None and tag not in tags:
                    continue
                try:
                    m = self.source.get_manifest(Reference(ref.host, ref.repository, tag))
                except NotFoundError:
                    continue
                if m.digest not in seen:
                    seen.add(m.digest)
                    self._keep(out, pending, Attached(subject, m, tag, artifact_type_of(m, None)))
        return out

    def _keep(self, out: list[Attached], pending: list[str], a: Attached) -> None:
        if self.types is None or a.artifact_type in self.types:
            out.append(a)
            pending.append(a.manifest.digest)


def merged_index(existing: Manifest | None, new: list[dict[str, Any]]) -> bytes | None:
    """The fallback index with ``new`` descriptors added to what ``existing`` lists (never
    dropping one); None when nothing would change."""
    current = [d for d in (existing.doc.get("manifests", []) if existing else []) if isinstance(d, dict)]
    have = {d.get("digest") for d in current}
    added = []
    for d in new:
        if d.get("digest") not in have:
            have.add(d.get("digest"))
            added.append(d)
    if existing is not None and not added:
        return None
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": current + added},
                      separators=(",", ":")).encode()


def descriptor_of(a: Attached) -> dict[str, Any]:
    """A referrer's descriptor for a fallback index: as the source listed it, else made here."""
    if a.descriptor is not None:
        return a.descriptor
    d: dict[str, Any] = {"mediaType": a.manifest.media_type, "digest": a.manifest.digest, "size": len(a.manifest.raw)}
    if a.artifact_type:
        d["artifactType"] = a.artifact_type
    ann = a.manifest.doc.get("annotations")
    if isinstance(ann, dict) and ann:
        d["annotations"] = ann
    return d


class Finders:
    """One Finder per source: what is attached to each image (to every manifest it keeps)."""

    def __init__(self, types: Iterable[str] | None):
        self.types = types
        self._by_source: dict[int, Finder] = {}

    def of(self, source: Source, image: "Image") -> list[Attached]:
        finder = self._by_source.setdefault(id(source), Finder(source, self.types))
        return finder.find(image.ref, [m.digest for m in image.manifests])


def as_image(a: Attached, ref: Reference) -> "Image":
    """An attachment as an image to copy: under its cosign tag, or by digest for a referrer."""
    from .image import Image

    m = a.manifest
    return Image(Reference(ref.host, ref.repository, a.tag, m.digest), m, m, [m], m, subject=a.subject,
                 descriptor=descriptor_of(a) if a.tag is None else None)


def attachment_items(items: list["Item"], types: Iterable[str] | None) -> list["Item"]:
    """Items that copy everything attached to the images of ``items`` (found in each image's
    source repository, recursively), each once per destination, beside the image it is attached
    to. An image whose attachments cannot be read fails (it would arrive unsigned)."""
    from .engine import Item

    finders = Finders(types)
    have = {(id(i.dest), i.target.repository, i.ref) for i in items}
    out: list[Item] = []
    for i in items:
        try:
            found = finders.of(i.source, i.image)
        except PorterError as e:
            i.fail(f"reading what is attached to it: {e}")
            continue
        for a in found:
            target = Reference(i.target.host, i.target.repository, a.tag)
            key = (id(i.dest), target.repository, a.tag or a.manifest.digest)
            if key not in have:
                have.add(key)
                out.append(Item(as_image(a, i.image.ref), i.source, i.dest, target))
    return out


def update_fallbacks(items: list["Item"]) -> int:
    """After the copy: at each destination without the referrers API, merge every copied
    referrer into its subject's ``sha256-<hex>`` index. Returns how many indexes changed."""
    groups: dict[tuple[int, str, str], tuple[Any, list[dict[str, Any]]]] = {}
    for i in items:
        img = i.image
        if img.subject is None or img.ref.tag is not None or i.state not in ("copied", "present"):
            continue
        entry = groups.setdefault((id(i.dest), i.target.repository, img.subject), (i.dest, []))
        entry[1].append(img.descriptor or {"mediaType": img.top.media_type, "digest": img.top.digest,
                                           "size": len(img.top.raw)})
    changed = 0
    for (_, repo, subject), (dest, descriptors) in groups.items():
        changed += dest.attach_referrers(repo, subject, descriptors)
    return changed
