"""The archive place (reader side): porter's archives (and other OCI-layout tars) as a Source.

Nothing is extracted: members are indexed by their offset in the tar and read in place, so no
member name can write anywhere. The index still refuses what a hostile archive would use —
absolute or ``..`` paths, links, devices, duplicate names, oversized JSON — before anything is
pushed. A ``.tar.zst`` is first decompressed into a temp file, bounded against zstd bombs.
"""
from __future__ import annotations

import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from .. import digest as dg
from ..errors import ArchiveError, DigestMismatch, PorterError
from ..mediatypes import INDEX_TYPES, MAX_MANIFEST_BYTES, Descriptor, Manifest, loads
from ..reference import Reference

READ_CHUNK = 1 << 20
MAX_JSON = 16 * 1024 * 1024
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: A decompressed archive may be at most this many times its compressed size (plus a margin):
#: layers inside are compressed already, so real archives barely shrink under zstd.
MAX_ZSTD_RATIO = 50
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class Entry:
    offset: int
    size: int


@dataclass(frozen=True)
class ArchivedImage:
    """One entry of the archive's index.json: the name it was exported under, and its descriptor."""

    name: str | None
    desc: Descriptor


def _decompress(path: Path, tmpdir: str | None) -> str:
    import zstandard

    limit = path.stat().st_size * MAX_ZSTD_RATIO + (64 << 20)
    fd, tmp = tempfile.mkstemp(prefix=".porter-import.", suffix=".tar", dir=tmpdir)
    try:
        with open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
            reader = zstandard.ZstdDecompressor().stream_reader(src)
            total = 0
            while chunk := reader.read(READ_CHUNK):
                total += len(chunk)
                if total > limit:
                    raise ArchiveError(f"{path}: decompresses to more than {limit} bytes; refusing a likely zstd bomb")
                dst.write(chunk)
    except zstandard.ZstdError as e:
        os.unlink(tmp)
        raise ArchiveError(f"{path}: corrupt zstd data ({e})") from None
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _check_name(m: tarfile.TarInfo) -> str:
    name = m.name
    p = PurePosixPath(name)
    if name.startswith("/") or p.is_absolute():
        raise ArchiveError(f"archive member {name!r} has an absolute path; refusing the archive")
    if ".." in p.parts:
        raise ArchiveError(f"archive member {name!r} points outside the archive; refusing the archive")
    if m.issym() or m.islnk():
        raise ArchiveError(f"archive member {name!r} is a link (to {m.linkname!r}); refusing the archive")
    if not (m.isfile() or m.isdir()):
        raise ArchiveError(f"archive member {name!r} is a device or special file; refusing the archive")
    return str(p)


class ArchiveSource:
    """Reads an archive's OCI part: ``index.json`` names the images, blobs are read in place."""

    def __init__(self, path: str, tmpdir: str | None = None):
        self.path = Path(path)
        self.name = f"archive {path}"
        self._tmp: str | None = None
        try:
            with open(self.path, "rb") as f:
                magic = f.read(4)
        except OSError as e:
            raise ArchiveError(f"cannot read {path}: {e.strerror}") from None
        self.tar_path = str(self.path)
        if magic == ZSTD_MAGIC:
            self._tmp = self.tar_path = _decompress(self.path, tmpdir)
        try:
            self.entries = self._index()
            self.index = self._json("index.json")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._tmp:
            os.unlink(self._tmp)
            self._tmp = None

    def _index(self) -> dict[str, Entry]:
        entries: dict[str, Entry] = {}
        try:
            with tarfile.open(self.tar_path, mode="r:") as t:
                for m in t:
                    name = _check_name(m)
                    if name in entries:
                        raise ArchiveError(f"archive member {name!r} appears twice; refusing the archive")
                    if m.isfile():
                        entries[name] = Entry(m.offset_data, m.size)
        except tarfile.TarError as e:
            raise ArchiveError(f"{self.path}: not a readable tar archive ({e})") from None
        return entries

    def _read(self, name: str, limit: int) -> bytes:
        e = self.entries.get(name)
        if e is None:
            raise ArchiveError(f"{self.path}: no {name} in the archive")
        if e.size > limit:
            raise ArchiveError(f"{self.path}: {name} is {e.size} bytes, more than the {limit} allowed")
        with open(self.tar_path, "rb") as f:
            f.seek(e.offset)
            return f.read(e.size)

    def _json(self, name: str) -> Any:
        try:
            return loads(self._read(name, MAX_JSON), f"{self.path}: {name}")
        except PorterError as e:
            raise ArchiveError(str(e)) from None

    def images(self) -> list[ArchivedImage]:
        out = []
        listed = self.index.get("manifests") if isinstance(self.index, dict) else None
        if not isinstance(listed, list):
            raise ArchiveError(f"{self.path}: index.json has no list of manifests")
        for d in listed:
            try:
                desc = Descriptor.from_json(d)
            except PorterError as e:
                raise ArchiveError(f"{self.path}: index.json: {e}") from None
            ann = desc.annotations
            out.append(ArchivedImage(ann.get(NAME_ANNOTATION) or ann.get(REF_ANNOTATION), desc))
        if not out:
            raise ArchiveError(f"{self.path}: index.json lists no images")
        return out

    # --- Source ---------------------------------------------------------------------------
    def _entry(self, digest: str) -> Entry:
        name = f"blobs/sha256/{dg.hex_of(digest)}"
        e = self.entries.get(name)
        if e is None:
            raise ArchiveError(f"{self.path}: blob {digest} is referenced but missing from the archive")
        return e

    def get_manifest(self, ref: Reference, digest: str | None = None) -> Manifest:
        digest = digest or ref.digest
        if not digest:
            raise ArchiveError(f"{self.path}: images in an archive are found by digest")
        e = self._entry(digest)
        if e.size > MAX_MANIFEST_BYTES:
            raise DigestMismatch(f"{self.path}: manifest {digest} larger than {MAX_MANIFEST_BYTES} bytes")
        raw = self._read(f"blobs/sha256/{digest[7:]}", MAX_MANIFEST_BYTES)
        dg.check_bytes(raw, digest, f"manifest {digest} in {self.path}")
        return Manifest.parse(raw, "", digest, f"{self.path}: manifest {digest}")

    def blob_chunks(self, repository: str, desc: Descriptor, offset: int = 0) -> Iterator[bytes]:
        e = self._entry(desc.digest)
        if e.size != desc.size:
            raise DigestMismatch(f"{self.path}: blob {desc.digest} is {e.size} bytes, its manifest says {desc.size}")
        try:
            yield from dg.file_chunks(self.tar_path, e.offset + offset, e.size - offset)
        except EOFError:
            raise ArchiveError(f"{self.path}: truncated inside blob {desc.digest}") from None

    def check_complete(self, manifests: list[Manifest]) -> None:
        """Every blob the manifests name is present with the right size (before any push)."""
        for m in manifests:
            for d in m.blobs + (m.children if m.media_type in INDEX_TYPES else []):
                e = self._entry(d.digest)
                if e.size != d.size:
                    raise ArchiveError(f"{self.path}: blob {d.digest} is {e.size} bytes, manifest {m.digest} says {d.size}")
