"""The docker engine as a place, through the docker SDK.

As a destination it loads an archive that the one archive writer makes (so any source can be
loaded, like ``docker pull`` without a registry). As a source it takes ``docker save`` output:
an OCI layout (Docker 25+) is read as it is; the older layout (``<id>/layer.tar``, uncompressed)
gets its layers gzip-compressed once into temp files and a Docker v2 schema 2 manifest built
over them, so registries get what ``docker push`` would send. Compression is deterministic
(no timestamps), so a rerun produces the same digests and finds them already pushed.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import zlib
from pathlib import Path
from typing import Any, Iterator

from .. import digest as dg
from ..errors import ArchiveError, NotFoundError, PorterError
from ..mediatypes import DOCKER_MANIFEST, Descriptor, Manifest
from ..reference import DAEMON as PREFIX, Reference
from .archive_reader import ArchiveSource

LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
CONFIG = "application/vnd.docker.container.image.v1+json"
CHUNK = 1 << 20


def client() -> Any:
    import docker

    try:
        c = docker.from_env(version="auto", timeout=600)
        c.ping()
    except Exception as e:  # the SDK raises several unrelated types for "no daemon"
        where = f"DOCKER_HOST={os.environ['DOCKER_HOST']}" if os.environ.get("DOCKER_HOST") \
            else "the default socket unix:///var/run/docker.sock"
        why = "nothing listens there" if isinstance(e.__context__ or e, (FileNotFoundError, ConnectionError)) \
            or "No such file" in str(e) or "Connection refused" in str(e) else str(e).splitlines()[0][:200]
        raise PorterError(f"no docker engine answers at {where} ({why}); start dockerd or set DOCKER_HOST") from None
    return c


def _gzip_file(src: Any, size: int, dst: Path) -> tuple[str, int]:
    """gzip ``size`` bytes of ``src`` into ``dst`` (no name, mtime 0); returns (digest, size)."""
    import hashlib

    h, total = hashlib.sha256(), 0
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)  # gzip container, level 1: fast, deterministic
    with open(dst, "wb") as out:
        def emit(b: bytes) -> None:
            nonlocal total
            if b:
                h.update(b)
                out.write(b)
                total += len(b)

        left = size
        while left > 0:
            chunk = src.read(min(CHUNK, left))
            if not chunk:
                raise ArchiveError("docker save output ended early")
            left -= len(chunk)
            emit(comp.compress(chunk))
        emit(comp.flush())
    return "sha256:" + h.hexdigest(), total


def _member(t: Any, name: str) -> bytes:
    f = t.extractfile(name)
    if f is None:
        raise ArchiveError(f"docker save output has no readable {name}")
    return f.read()


class DaemonSource:
    """Images in the local docker engine, via ``docker save`` into a temp dir."""

    def __init__(self, name: str):
        self.name = f"docker daemon ({name})"
        self.image_name = name
        self.tmp = tempfile.TemporaryDirectory(prefix="porter-daemon-")
        self._files: dict[str, Path] = {}
        self._archive: ArchiveSource | None = None
        c = client()
        try:
            image = c.images.get(name)
        except Exception as e:
            raise NotFoundError(f"{PREFIX}{name}: no such image in the docker daemon ({type(e).__name__})", 404) from None
        saved = Path(self.tmp.name) / "saved.tar"
        with open(saved, "wb") as f:
            for chunk in image.save(chunk_size=CHUNK, named=True):
                f.write(chunk)
        self.manifest = self._convert(saved)

    def _convert(self, saved: Path) -> Manifest:
        import tarfile

        with tarfile.open(saved) as t:
            names = set(t.getnames())
            if "index.json" in names and any(n.startswith("blobs/sha256/") for n in names):
                self._archive = ArchiveSource(str(saved))
                top = self._archive.images()[0].desc
                return self._archive.get_manifest(Reference("", "x"), top.digest)
            entries = json.loads(_member(t, "manifest.json"))
            if len(entries) != 1:
                raise ArchiveError(f"docker save of {self.image_name} holds {len(entries)} images, expected 1")
            entry = entries[0]
            cfg_raw = _member(t, entry["Config"])
            cfg_d = dg.of_bytes(cfg_raw)
            cfg_path = Path(self.tmp.name) / cfg_d[7:]
            cfg_path.write_bytes(cfg_raw)
            self._files[cfg_d] = cfg_path
            layers = []
            for i, name in enumerate(entry["Layers"]):
                member = t.getmember(name)
                out = Path(self.tmp.name) / f"layer{i}.tar.gz"
                d, size = _gzip_file(t.extractfile(member) or io.BytesIO(), member.size, out)
                final = out.with_name(d[7:])
                out.rename(final)
                self._files[d] = final
                layers.append({"mediaType": LAYER_GZIP, "digest": d, "size": size})
        doc = {"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
               "config": {"mediaType": CONFIG, "digest": cfg_d, "size": len(cfg_raw)}, "layers": layers}
        raw = json.dumps(doc, indent=3).encode()
        return Manifest.parse(raw, DOCKER_MANIFEST, dg.of_bytes(raw), f"{PREFIX}{self.image_name}")

    def close(self) -> None:
        if self._archive:
            self._archive.close()
        self.tmp.cleanup()

    def get_manifest(self, ref: Reference, digest: str | None = None) -> Manifest:
        if digest is None or digest == self.manifest.digest:
            return self.manifest
        if self._archive:
            return self._archive.get_manifest(ref, digest)
        raise NotFoundError(f"{PREFIX}{self.image_name}: no manifest {digest}", 404)

    def blob_chunks(self, repository: str, desc: Descriptor, offset: int = 0) -> Iterator[bytes]:
        if self._archive:
            yield from self._archive.blob_chunks(repository, desc, offset)
            return
        path = self._files.get(desc.digest)
        if path is None:
            raise NotFoundError(f"{PREFIX}{self.image_name}: no blob {desc.digest}", 404)
        yield from dg.file_chunks(path, offset)


def load(archive_path: str) -> list[str]:
    """``docker load`` an archive through the SDK; returns what the daemon said it loaded."""
    c = client()
    loaded: list[str] = []
    with open(archive_path, "rb") as f:
        for msg in c.api.load_image(f):
            if msg.get("error"):
                raise PorterError(f"docker daemon refused the images: {msg['error']}")
            if msg.get("stream", "").startswith("Loaded image"):
                loaded.append(msg["stream"].split(":", 1)[1].strip())
    return loaded
