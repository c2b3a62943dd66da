"""The archive place (reader side): every archive the ecosystem writes, as a Source.

Two shapes, told apart by their metadata:

- an **OCI image layout** (``index.json`` + ``blobs/``), as a tar or a directory — porter's own
  archives, skopeo ``oci:``/``oci-archive:``, umoci, podman, buildah, ``ctr images export``,
  regclient, crane, Docker 25+ — whose manifests and blobs are served exactly as stored, so
  digests survive;
- a **docker-archive** (``manifest.json`` of ``{Config, RepoTags, Layers}``) — ``docker save``
  (classic ``<id>/layer.tar`` or ``blobs/sha256`` layout), skopeo and podman ``docker-archive:``
  — whose uncompressed layers go through the one layer converter (:mod:`.layers`), checked
  against the config's ``diff_ids``, into a Docker v2 manifest built deterministically.

When an archive has both (porter's own, Docker 25+), the OCI part is read. Images are named by
``io.containerd.image.name`` (a full reference) or ``org.opencontainers.image.ref.name`` (a full
reference, or only a tag), or by ``RepoTags``; the caller decides what a tag-only or missing
name becomes.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .. import digest as dg
from ..errors import ArchiveError, DigestMismatch, PorterError
from ..mediatypes import DOCKER_MANIFEST, INDEX_TYPES, MAX_MANIFEST_BYTES, OCI_MANIFEST, Descriptor, Manifest, loads
from ..delta import BASE_ANNOTATION, DELTA_MEMBER, omitted_of
from ..reference import Reference
from .archive_members import Members
from .layers import OCI_ZSTD, Layer, convert

MAX_JSON = 16 * 1024 * 1024
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"


@dataclass(frozen=True)
class ArchivedImage:
    """One image an archive names: the name it carries (None: none), and its descriptor."""

    name: str | None
    desc: Descriptor


class ArchiveSource:
    """Reads an archive (tar, tar.gz, tar.zst, or a layout directory); nothing is extracted."""

    def __init__(self, path: str, tmpdir: str | None = None):
        self.path = Path(path)
        self.name, self.origin = f"archive {path}", None
        self.members = Members(path, tmpdir)
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._built: dict[str, bytes] = {}  # digest -> bytes made here (docker-archive configs, manifests)
        self._layers: dict[str, tuple[Layer, str]] = {}  # digest -> (converted layer, member it came from)
        self.delta_base: str | None = None  # a delta's base identity
        self.omitted: set[str] = set()  # what a delta leaves out
        try:
            if "index.json" in self.members:
                self.kind = "oci"
                self._images = self._oci_images()
            elif "manifest.json" in self.members:
                self.kind = "docker"
                self._images = self._docker_images(tmpdir)
            else:
                raise ArchiveError(f"{path}: neither an OCI layout (index.json) nor a docker save archive "
                                   f"(manifest.json)")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.members.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _json(self, name: str) -> Any:
        try:
            return loads(self.members.read(name, MAX_JSON), f"{self.path}: {name}")
        except PorterError as e:
            raise ArchiveError(str(e)) from None

    # --- OCI layouts ---------------------------------------------------------------------
    def _oci_images(self) -> list[ArchivedImage]:
        index = self._json("index.json")
        listed = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(listed, list):
            raise ArchiveError(f"{self.path}: index.json has no list of manifests")
        out = []
        for d in listed:
            try:
                desc = Descriptor.from_json(d)
            except PorterError as e:
                raise ArchiveError(f"{self.path}: index.json: {e}") from None
            ann = desc.annotations
            out.append(ArchivedImage(ann.get(NAME_ANNOTATION) or ann.get(REF_ANNOTATION), desc))
        if not out:
            raise ArchiveError(f"{self.path}: index.json lists no images")
        ann = index.get("annotations") or {}
        if isinstance(ann, dict) and isinstance(ann.get(BASE_ANNOTATION), str):
            self.delta_base = ann[BASE_ANNOTATION]
            self.omitted = omitted_of(self.members.read(DELTA_MEMBER, MAX_JSON), str(self.path))
        return out

    # --- docker-archive ------------------------------------------------------------------
    def _docker_images(self, tmpdir: str | None) -> list[ArchivedImage]:
        entries = self._json("manifest.json")
        if not isinstance(entries, list) or not entries:
            raise ArchiveError(f"{self.path}: manifest.json lists no images")
        self._tmp = tempfile.TemporaryDirectory(prefix="porter-layers-", dir=tmpdir)
        out: list[ArchivedImage] = []
        done: dict[str, Layer] = {}  # member -> its conversion (a layer shared by images converts once)
        for n, e in enumerate(entries):
            what = f"{self.path}: image {n + 1} of manifest.json"
            if not isinstance(e, dict) or not isinstance(e.get("Config"), str) or not isinstance(e.get("Layers"), list) \
                    or not all(isinstance(x, str) for x in e["Layers"]):
                raise ArchiveError(f"{what}: needs Config (a path) and Layers (a list of paths)")
            tags = e.get("RepoTags") or []
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise ArchiveError(f"{what}: RepoTags must be a list of names")
            cfg_raw = self.members.read(e["Config"], MAX_MANIFEST_BYTES)
            diff_ids = self._diff_ids(cfg_raw, len(e["Layers"]), what)
            layers = []
            for i, member in enumerate(e["Layers"]):
                if member not in done:
                    out_path = Path(self._tmp.name) / f"layer{len(done)}"
                    done[member] = convert(self.members.chunks(member), out_path, diff_ids[i],
                                           f"{what}: layer {i + 1} ({member})")
                elif done[member].diff_id != diff_ids[i]:
                    raise ArchiveError(f"{what}: layer {i + 1} ({member}) does not match the config's diff_id")
                layers.append(done[member])
                self._layers[done[member].digest] = (done[member], member)
            desc = self._build_manifest(cfg_raw, layers)
            out += [ArchivedImage(t, desc) for t in tags] or [ArchivedImage(None, desc)]
        return out

    @staticmethod
    def _diff_ids(cfg_raw: bytes, count: int, what: str) -> list[str]:
        try:
            cfg = loads(cfg_raw, f"{what}: config")
            ids = cfg["rootfs"]["diff_ids"]
            ok = isinstance(ids, list) and all(isinstance(i, str) for i in ids)
        except (PorterError, KeyError, TypeError):
            ok, ids = False, None
        if not ok or len(ids) != count:
            raise ArchiveError(f"{what}: its config does not list one rootfs.diff_id per layer")
        for i in ids:
            dg.check(i, f"{what}: config diff_id")
        return ids

    def _build_manifest(self, cfg_raw: bytes, layers: list[Layer]) -> Descriptor:
        """The manifest a registry would serve for these layers: Docker v2 (gzip), or OCI when a
        layer is zstd (Docker v2 has no zstd type). Deterministic bytes: reruns match digests."""
        oci = any(layer.media_type == OCI_ZSTD for layer in layers)
        media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
        cfg_digest = dg.of_bytes(cfg_raw)
        self._built[cfg_digest] = cfg_raw
        doc = {"schemaVersion": 2, "mediaType": media_type,
               "config": {"mediaType": OCI_CONFIG if oci else DOCKER_CONFIG, "digest": cfg_digest,
                          "size": len(cfg_raw)},
               "layers": [{"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size}
                          for layer in layers]}
        raw = json.dumps(doc, indent=3).encode()
        digest = dg.of_bytes(raw)
        self._built[digest] = raw
        return Descriptor(media_type, digest, len(raw))

    # --- Source --------------------------------------------------------------------------
    def images(self) -> list[ArchivedImage]:
        return list(self._images)

    def has(self, digest: str) -> bool:
        """Is the blob (or manifest) ``digest`` in the archive?"""
        return digest in self._built or digest in self._layers or f"blobs/sha256/{dg.hex_of(digest)}" in self.members

    def _size(self, digest: str) -> int:
        if digest in self._built:
            return len(self._built[digest])
        if digest in self._layers:
            return self._layers[digest][0].size
        name = f"blobs/sha256/{dg.hex_of(digest)}"
        if name not in self.members:
            if digest in self.omitted:
                raise ArchiveError(f"{self.path}: blob {digest} is left out of this delta (its base "
                                   f"{self.delta_base} holds it)")
            raise ArchiveError(f"{self.path}: blob {digest} is referenced but missing from the archive")
        return self.members.size(name)

    def get_manifest(self, ref: Reference, digest: str | None = None) -> Manifest:
        digest = digest or ref.digest
        if not digest:
            raise ArchiveError(f"{self.path}: images in an archive are found by digest")
        if self._size(digest) > MAX_MANIFEST_BYTES:
            raise DigestMismatch(f"{self.path}: manifest {digest} larger than {MAX_MANIFEST_BYTES} bytes")
        raw = b"".join(self.blob_chunks("", Descriptor("", digest, self._size(digest))))
        dg.check_bytes(raw, digest, f"manifest {digest} in {self.path}")
        return Manifest.parse(raw, "", digest, f"{self.path}: manifest {digest}")

    def blob_chunks(self, repository: str, desc: Descriptor, offset: int = 0) -> Iterator[bytes]:
        size = self._size(desc.digest)
        if size != desc.size:
            raise DigestMismatch(f"{self.path}: blob {desc.digest} is {size} bytes, its manifest says {desc.size}")
        if desc.digest in self._built:
            yield self._built[desc.digest][offset:]
        elif desc.digest in self._layers:
            layer, member = self._layers[desc.digest]
            yield from dg.file_chunks(layer.path, offset) if layer.path else self.members.chunks(member, offset)
        else:
            yield from self.members.chunks(f"blobs/sha256/{dg.hex_of(desc.digest)}", offset)

    def stray_blobs(self, known: set[str]) -> list[tuple[str, int]]:
        """(member name, size) of every ``blobs/`` member whose digest is not in ``known``."""
        return [(n, e.size) for n, e in sorted(self.members.entries.items())
                if n.startswith("blobs/") and "sha256:" + n.rsplit("/", 1)[1] not in known]

    def check_complete(self, manifests: list[Manifest]) -> None:
        """Every blob the manifests name is present with the right size (before any push)."""
        for m in manifests:
            for d in m.blobs + (m.children if m.media_type in INDEX_TYPES else []):
                if d.digest in self.omitted:
                    continue  # a delta: the destination must hold it (the importer checks)
                size = self._size(d.digest)
                if size != d.size:
                    raise ArchiveError(f"{self.path}: blob {d.digest} is {size} bytes, manifest {m.digest} says {d.size}")
