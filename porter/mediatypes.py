"""Manifest media types, the Accept header, and parsing of the four manifest kinds porter moves.

A :class:`Manifest` keeps the exact bytes it was served as: digests are computed over those bytes,
so re-serialising would change them.
"""
from __future__ import annotations

import json
import platform as _platform
from dataclasses import dataclass, field
from typing import Any

from .errors import UnsupportedError, PorterError, UsageError

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
MAX_BLOB_SIZE = 1 << 44  # 16 TiB: a larger size in a descriptor is a lie, not a layer


def loads(raw: bytes | str, what: str) -> Any:
    """``json.loads`` for untrusted bytes: any failure (deep nesting included) is one PorterError."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError, UnicodeDecodeError):
        raise PorterError(f"{what}: not valid JSON") from None


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise PorterError(f"{what} must be a string")
    return value


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> "Platform":
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise UsageError(f"invalid platform {text!r}: expected os/arch[/variant], e.g. linux/arm64")
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
    def from_json(cls, d: Any) -> "Descriptor":
        """A descriptor from untrusted JSON: every field's type, the digest and the size checked."""
        from .digest import check

        if not isinstance(d, dict):
            raise PorterError(f"malformed descriptor in manifest: {type(d).__name__}, not an object")
        size = d.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_BLOB_SIZE:
            raise PorterError(f"malformed descriptor in manifest: size {str(size)[:40]!r} is not a byte count")
        digest = check(d.get("digest"), "descriptor in manifest")
        p = d.get("platform")
        plat = None
        if p is not None:
            if not isinstance(p, dict):
                raise PorterError(f"malformed descriptor {digest}: platform is not an object")
            plat = Platform(_str(p.get("os"), "platform os"), _str(p.get("architecture"), "platform architecture"),
                            _str(p.get("variant", ""), "platform variant"))
        ann = d.get("annotations") or {}
        if not isinstance(ann, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in ann.items()):
            raise PorterError(f"malformed descriptor {digest}: annotations must map strings to strings")
        return cls(_str(d.get("mediaType", ""), "descriptor mediaType"), digest, size, plat, ann)

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
        doc = loads(raw, f"{what}: manifest")
        if not isinstance(doc, dict):
            raise PorterError(f"{what}: manifest is not a JSON object")
        body_type = doc.get("mediaType") or ""
        if not isinstance(body_type, str):
            raise PorterError(f"{what}: manifest mediaType is not a string")
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
        try:  # every descriptor is checked (and kept) now, so nothing later meets a malformed one
            kids = [Descriptor.from_json(d) for d in m._list("manifests")] if m.is_index else []
            cfg = None if m.is_index or "config" not in doc else Descriptor.from_json(doc["config"])
            layers = [] if m.is_index else [Descriptor.from_json(d) for d in m._list("layers")]
        except PorterError as e:
            raise PorterError(f"{what}: {e}") from None
        if not m.is_index and cfg is None:
            raise PorterError(f"{what}: manifest {digest} has no config")
        object.__setattr__(m, "_parsed", (kids, cfg, layers))
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

    def _list(self, key: str) -> list[Any]:
        value = self.doc.get(key, [])
        if not isinstance(value, list):
            raise PorterError(f"manifest {self.digest}: {key} is not a list")
        return value

    @property
    def children(self) -> list[Descriptor]:
        """An index's manifests (empty for an image manifest)."""
        return list(self._parsed[0])  # type: ignore[attr-defined]

    @property
    def config(self) -> Descriptor:
        cfg = self._parsed[1]  # type: ignore[attr-defined]
        if cfg is None:
            raise PorterError(f"manifest {self.digest} has no config")
        return cfg

    @property
    def layers(self) -> list[Descriptor]:
        return list(self._parsed[2])  # type: ignore[attr-defined]

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
        raise PorterError(f"no {want} image in index {self.digest} (platforms: {have})")
