"""Manifest media types, the Accept header, and parsing of the four manifest kinds porter moves.

A :class:`Manifest` keeps the exact bytes it was served as: digests are computed over those bytes,
so re-serialising would change them.
"""
from __future__ import annotations

import json
import platform as _platform
from dataclasses import dataclass, field
from typing import Any

from .errors import UnsupportedError, PorterError

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
           "application/vnd.docker.distribution.manifest.v1+prettyjws")
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
IMAGE_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # Distribution's own limit on manifest size


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> "Platform":
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise PorterError(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/arm64")
        return cls(*parts)

    @classmethod
    def host(cls) -> "Platform":
        machine = _platform.machine().lower()
        arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
                "armv7l": "arm", "i686": "386", "i386": "386", "ppc64le": "ppc64le", "s390x": "s390x"}
        variant = "v7" if machine == "armv7l" else ""
        return cls("linux", arch.get(machine, machine), variant)

    def matches(self, other: "Platform") -> bool:
        """``self`` is what the user asked for; an unspecified variant matches any
        (arm64's implicit v8 included)."""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        return not self.variant or self.variant == (other.variant or ("v8" if other.architecture == "arm64" else ""))

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Descriptor":
        try:
            p = d.get("platform")
            plat = Platform(p["os"], p["architecture"], p.get("variant", "")) if p else None
            return cls(d.get("mediaType", ""), d["digest"], int(d["size"]), plat, d.get("annotations") or {})
        except (KeyError, TypeError, ValueError) as e:
            raise PorterError(f"malformed descriptor in manifest: {e}") from None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            out["platform"] = {"os": self.platform.os, "architecture": self.platform.architecture}
            if self.platform.variant:
                out["platform"]["variant"] = self.platform.variant
        if self.annotations:
            out["annotations"] = self.annotations
        return out


@dataclass(frozen=True)
class Manifest:
    """A manifest or index exactly as served: ``raw`` bytes, ``media_type`` and ``digest``."""

    raw: bytes
    media_type: str
    digest: str

    @classmethod
    def parse(cls, raw: bytes, media_type: str, digest: str, what: str) -> "Manifest":
        try:
            doc = json.loads(raw)
        except ValueError:
            raise PorterError(f"{what}: manifest is not valid JSON") from None
        if not isinstance(doc, dict):
            raise PorterError(f"{what}: manifest is not a JSON object")
        body_type = doc.get("mediaType") or ""
        if doc.get("schemaVersion") == 1 or media_type in SCHEMA1 or body_type in SCHEMA1:
            raise UnsupportedError(f"{what}: Docker schema 1 manifests are not supported (push the image again with a current client)")
        mt = body_type or media_type.split(";")[0].strip()
        if mt not in INDEX_TYPES + IMAGE_TYPES:
            # OCI manifests may omit mediaType; tell them apart by their fields.
            mt = OCI_INDEX if "manifests" in doc else OCI_MANIFEST if "layers" in doc else mt
        if mt not in INDEX_TYPES + IMAGE_TYPES:
            raise UnsupportedError(f"{what}: unsupported manifest media type {mt or 'unknown'!r}")
        m = cls(raw, mt, digest)
        object.__setattr__(m, "_doc", doc)
        return m

    @property
    def doc(self) -> dict[str, Any]:
        return self._doc  # type: ignore[attr-defined]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, len(self.raw))

    @property
    def children(self) -> list[Descriptor]:
        """An index's manifests (empty for an image manifest)."""
        return [Descriptor.from_json(d) for d in self.doc.get("manifests", [])] if self.is_index else []

    @property
    def config(self) -> Descriptor:
        if self.is_index or "config" not in self.doc:
            raise PorterError(f"manifest {self.digest} has no config")
        return Descriptor.from_json(self.doc["config"])

    @property
    def layers(self) -> list[Descriptor]:
        return [Descriptor.from_json(d) for d in self.doc.get("layers", [])]

    @property
    def blobs(self) -> list[Descriptor]:
        """Config first, then layers: every blob an image manifest references."""
        return [] if self.is_index else [self.config, *self.layers]

    def pick(self, want: Platform) -> Descriptor:
        """The child of an index for platform ``want``; a clear error listing what there is."""
        kids = [c for c in self.children if c.media_type not in INDEX_TYPES]
        for c in kids:
            if c.platform and want.matches(c.platform):
                return c
        have = ", ".join(sorted({str(c.platform) for c in kids if c.platform})) or "none"
        raise PorterError(f"no {want} image in index {self.digest} (platforms: {have}); use --platform")
