"""An image as a job sees it: a reference resolved to the manifests to keep and the blobs they need.

Resolution is derived from two source abilities only (raw manifest by reference or digest, blob
by digest), so every place that can serve those is a full source.
"""
from __future__ import annotations

from dataclasses import dataclass

from .blob import BlobReader
from .errors import DigestMismatch, PorterError
from .mediatypes import Descriptor, Manifest, Platform, loads
from .places.protocol import Source
from .reference import Reference


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
    raw = BlobReader(source, ref.repository, cfg).read_all()
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
