"""The archive place (writer side): one tar that is both a ``docker save`` archive and an OCI layout.

The whole tar is laid out before any blob arrives: every member's size is known from the
manifests, so each blob gets a fixed offset in a pre-allocated temp file and the download
threads write straight into it (``pwrite``), concurrently, with no second copy. The temp file
is renamed into place only when complete; ``.tar.zst`` and ``-`` (stdout) stream that finished
tar through zstd or to stdout.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable

from .. import interrupts
from ..digest import FileAtOffset, hex_of
from ..errors import ArchiveError
from ..delta import BASE_ANNOTATION, DELTA_MEMBER
from ..referrers import DESCRIPTOR_ANNOTATION, SUBJECT_ANNOTATION
from ..mediatypes import Descriptor
from .protocol import Abilities
from .volumes import VolumeWriter, volume_name

if TYPE_CHECKING:
    from ..blob import BlobReader
    from ..delta import Base
    from ..image import Image
    from ..mediatypes import Manifest

BLOCK = 512
COPY_CHUNK = 1 << 20


@dataclass
class Member:
    name: str
    size: int
    data: bytes | None = None  # known now (JSON, manifests); None: a blob filled in later
    offset: int = 0  # where its data starts in the tar, set by layout


def _header(name: str, size: int, directory: bool = False) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.mtime = 0  # deterministic: the same images give the same archive bytes
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT)


def _padding(size: int) -> int:
    return -size % BLOCK


def blob_name(digest: str) -> str:
    return f"blobs/sha256/{hex_of(digest)}"


def omitted_layers(images: "list[Image]", base: "Base") -> dict[str, Descriptor]:
    """The layers of ``images`` that ``base`` holds (configs and manifests always travel)."""
    return {d.digest: d for img in images for m in img.manifests if not m.is_index for d in m.layers
            if d.digest in base.digests}


def _umask() -> int:
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def disk_error(e: OSError, path: Path | str) -> ArchiveError:
    if e.errno == errno.ENOSPC:
        return ArchiveError(f"disk full while writing {path}")
    return ArchiveError(f"cannot write {path}: {e.strerror or e}")


class ArchiveWriter:
    """Lay out members, hand out sinks for the blobs, then ``commit()`` or ``abort()``."""

    def __init__(self, output: str, force: bool = False, split_size: int | None = None):
        self.output = output
        self.to_stdout = output == "-"
        self.compress = output.endswith((".zst", ".zstd"))
        self.split_size = split_size
        self.volumes: list[str] = []
        if split_size and self.to_stdout:
            raise ArchiveError("--split-size writes files: give -o FILE, not -")
        if self.to_stdout and sys.stdout.isatty():
            raise ArchiveError("refusing to write an archive to a terminal: redirect stdout (-o - > x.tar) or use -o FILE")
        if output.endswith((".gz", ".tgz", ".bz2", ".xz", ".zip")):
            raise ArchiveError(f"{output}: porter writes .tar, or .tar.zst (zstd); for gzip, pipe: -o - | gzip > x.tar.gz")
        if not self.to_stdout:
            out = Path(output)
            if out.is_dir():
                raise ArchiveError(f"{output} is a directory; give a file name, e.g. {output.rstrip('/')}/images.tar")
            first = Path(volume_name(output, 0)) if split_size else out
            if first.exists() and not force:
                raise ArchiveError(f"{first} already exists; use --force to overwrite")
            if not out.parent.is_dir():
                raise ArchiveError(f"directory {out.parent} does not exist")
            self._dir: str | None = str(out.parent)
        else:
            self._dir = None  # the system temp dir
        self._tmp: list[str] = []
        self._fd = -1
        self.members: dict[str, Member] = {}
        self.size = 0

    def _mkstemp(self, suffix: str) -> tuple[int, str]:
        prefix = "." + (Path(self.output).name if not self.to_stdout else "porter") + "."
        try:
            fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=self._dir)
            os.fchmod(fd, 0o666 & ~_umask())  # as any new file (docker save -o), not mkstemp's 0600
        except OSError as e:
            raise disk_error(e, self._dir or tempfile.gettempdir()) from None
        self._tmp.append(path)
        return fd, path

    def layout(self, members: list[Member]) -> None:
        """Fix every member's offset, reserve the file's space, write what is known already."""
        chunks: list[tuple[int, bytes]] = []
        pos = 0
        for d in ("blobs/", "blobs/sha256/"):
            h = _header(d, 0, directory=True)
            chunks.append((pos, h))
            pos += len(h)
        for m in members:
            h = _header(m.name, m.size)
            chunks.append((pos, h))
            m.offset = pos + len(h)
            if m.data is not None:
                chunks.append((m.offset, m.data))
            pos = m.offset + m.size + _padding(m.size)
            self.members[m.name] = m
        self.size = pos + 2 * BLOCK
        self._fd, self._path = self._mkstemp(".tar")
        try:
            try:
                os.posix_fallocate(self._fd, 0, self.size)
            except OSError as e:
                if e.errno == errno.ENOSPC:
                    raise ArchiveError(f"not enough disk space for {self.output}: it needs {self.size} bytes") from None
                os.ftruncate(self._fd, self.size)
            os.ftruncate(self._fd, self.size)  # zero padding and end-of-archive blocks
            for off, data in chunks:
                FileAtOffset(self._fd, off).write(data)
        except OSError as e:
            raise disk_error(e, self.output) from None

    def sink(self, digest: str) -> FileAtOffset:
        return FileAtOffset(self._fd, self.members[blob_name(digest)].offset)

    def commit(self) -> None:
        """Make the finished tar appear under its name (or on stdout), atomically — unless the
        user interrupted meanwhile."""
        interrupts.check()
        try:
            os.close(self._fd)
            self._fd = -1
            if self.to_stdout:
                with open(self._path, "rb") as f:
                    self._copy(f, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            elif self.split_size:
                sink = VolumeWriter(self.output, self.split_size, self._mkstemp)
                with open(self._path, "rb") as src:
                    self._copy(src, sink)  # type: ignore[arg-type]
                self.volumes = sink.finish()
            elif self.compress:
                fd, zpath = self._mkstemp(".zst")
                with open(self._path, "rb") as src, os.fdopen(fd, "wb") as dst:
                    self._copy(src, dst)
                os.replace(zpath, self.output)
            else:
                os.replace(self._path, self.output)
        except OSError as e:
            raise disk_error(e, self.output) from None
        finally:
            self.abort()

    def _copy(self, src: BinaryIO, dst: BinaryIO) -> None:
        if not self.compress:
            shutil.copyfileobj(src, dst, COPY_CHUNK)
            return
        import zstandard

        cctx = zstandard.ZstdCompressor(level=3, threads=-1, write_content_size=True)
        cctx.copy_stream(src, dst, size=self.size, read_size=COPY_CHUNK, write_size=COPY_CHUNK)

    def abort(self) -> None:
        """Remove every temp file; safe to call more than once."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        for p in self._tmp:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        self._tmp.clear()


class ArchiveDestination:
    """An archive being written, as a destination: one blob store for every repository (so each
    digest is written once); manifests are laid out with the rest in ``prepare``; ``commit``
    makes the file appear. A delta (``since``) has the layers its base holds already."""

    abilities = Abilities()
    origin = None

    def __init__(self, writer: ArchiveWriter, since: "Base | None" = None):
        self.writer, self.since = writer, since
        self.name = f"archive {writer.output}"
        self.omitted: dict[str, Descriptor] = {}
        self._named: dict[tuple[str, str], str] = {}  # (repository, tag or digest) -> digest listed
        self._committed = False

    def prepare(self, images: "list[Image]") -> None:
        self.omitted = omitted_layers(images, self.since) if self.since else {}
        self.writer.layout(members_for(images, self.since))
        for img in images:
            self._named[(img.named.repository, img.named.tag or img.listed.digest)] = img.listed.digest

    def has_manifest(self, repository: str, ref: str, digest: str) -> bool:
        return False

    def has_blob(self, repository: str, digest: str) -> bool:
        return digest in self.omitted

    def mount(self, repository: str, digest: str, from_repository: str) -> bool:
        return False

    def tag_set(self, repository: str) -> set[str]:
        return set()

    def write_blob(self, repository: str, blob: "BlobReader", on_bytes: "Callable[[int], None]") -> bool:
        sink = self.writer.sink(blob.digest)
        for chunk in blob.read():
            sink.write(chunk)
            on_bytes(len(chunk))
        return True

    def put_manifest(self, repository: str, ref: str, manifest: "Manifest") -> None:
        pass  # laid out with the archive: manifests are members whose bytes are known up front

    def commit(self) -> None:
        self.writer.commit()
        self._committed = True

    def served(self, repository: str, ref: str) -> str | None:
        return self._named.get((repository, ref)) if self._committed else None

    def close(self) -> None:
        self.writer.abort()


def json_bytes(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def docker_manifest(images: "list[Image]") -> list[dict]:
    """``manifest.json`` for ``docker load``: one entry per distinct image, tags merged."""
    entries: dict[str, dict] = {}
    for img in images:
        if img.subject is not None:
            continue  # attachments are for registries, not docker load
        m = img.chosen
        assert m is not None, "export always picks a platform"
        e = entries.setdefault(m.digest, {"Config": blob_name(m.config.digest), "RepoTags": [],
                                          "Layers": [blob_name(d.digest) for d in m.layers]})
        tag = img.named.tagged_name()
        if tag and tag not in e["RepoTags"]:
            e["RepoTags"].append(tag)
    return [dict(e, RepoTags=e["RepoTags"] or None) for e in entries.values()]


def oci_index(images: "list[Image]", delta_base: str | None = None) -> dict:
    """``index.json``: each reference's manifest (or whole index), named the way containerd and
    Docker 25+ name them: the full reference, and the tag as ``ref.name`` — or, where two
    repositories in the archive share that tag, the full reference there too, so that umoci and
    skopeo can still select each image by a name of its own."""
    from collections import Counter

    shared = Counter(img.named.tag for img in images if img.named.tag)
    manifests = []
    for img in images:
        ann = {"io.containerd.image.name": str(img.named)}
        if img.named.tag:
            ann["org.opencontainers.image.ref.name"] = img.named.tag if shared[img.named.tag] == 1 else str(img.named)
        if img.subject is not None:  # an attachment: what it is attached to, and (a referrer) how it was listed
            ann[SUBJECT_ANNOTATION] = img.subject
            if img.descriptor is not None:
                ann[DESCRIPTOR_ANNOTATION] = json.dumps(img.descriptor, separators=(",", ":"))
        d = img.listed.descriptor
        manifests.append(Descriptor(d.media_type, d.digest, d.size, img.platform if img.listed is img.chosen else None,
                                    ann).to_json())
    doc: dict = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
    if delta_base:
        doc["annotations"] = {BASE_ANNOTATION: delta_base}
    return doc


def members_for(images: "list[Image]", base: "Base | None" = None) -> list[Member]:
    """Every member of the archive, in a fixed order: metadata, manifests, then blobs by first use.
    Against a ``base`` (a delta): the layers it holds are left out and listed in porter-delta.json,
    and there is no manifest.json (``docker load`` needs every layer)."""
    omitted = omitted_layers(images, base) if base else {}
    out = [Member("oci-layout", 0, json_bytes({"imageLayoutVersion": "1.0.0"})),
           Member("index.json", 0, json_bytes(oci_index(images, base.identity if base else None)))]
    if base:
        out.append(Member(DELTA_MEMBER, 0, json_bytes({"base": base.identity, "base_path": Path(base.path).name,
                                                        "omitted": [d.to_json() for d in omitted.values()]})))
    else:
        out.append(Member("manifest.json", 0, json_bytes(docker_manifest(images))))
    seen: set[str] = set(omitted)
    for img in images:
        for m in img.manifests:
            if m.digest not in seen:
                seen.add(m.digest)
                out.append(Member(blob_name(m.digest), 0, m.raw))
    for img in images:
        for d in img.blobs:
            if d.digest not in seen:
                seen.add(d.digest)
                out.append(Member(blob_name(d.digest), d.size))
    for member in out:
        if member.data is not None:
            member.size = len(member.data)
    return out
