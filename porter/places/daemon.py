"""The docker engine as a place, through the docker SDK.

As a destination it loads an archive that the one archive writer makes (so any source can be
loaded, like ``docker pull`` without a registry). As a source it takes ``docker save`` output
and reads it with the one archive reader: an OCI layout (Docker 25+) as it is, the older layout
(``<id>/layer.tar``, uncompressed, repeated layers as links) through the one layer converter,
so registries get what ``docker push`` would send, with the same digests on every run.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from ..errors import ArchiveError, NotFoundError, PorterError
from ..mediatypes import Descriptor, Manifest
from ..reference import DAEMON as PREFIX, Reference
from .archive import ArchiveDestination, ArchiveWriter
from .archive_reader import ArchiveSource
from .protocol import Abilities

if TYPE_CHECKING:
    from ..blob import BlobReader
    from ..image import Image

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


class DaemonSource:
    """Images in the local docker engine, via ``docker save`` into a temp dir."""

    def __init__(self, name: str):
        self.name, self.origin = f"docker daemon ({name})", None
        self.image_name = name
        self.tmp = tempfile.TemporaryDirectory(prefix="porter-daemon-")
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
        """The saved image through the one archive reader (links followed, diff_ids checked)."""
        self._archive = ArchiveSource(str(saved), self.tmp.name)
        found = self._archive.images()
        if len({i.desc.digest for i in found}) != 1:
            raise ArchiveError(f"docker save of {self.image_name} holds {len(found)} images, expected 1")
        return self._archive.get_manifest(Reference("", "x"), found[0].desc.digest)

    def close(self) -> None:
        if self._archive:
            self._archive.close()
        self.tmp.cleanup()

    def get_manifest(self, ref: Reference, digest: str | None = None) -> Manifest:
        if digest is None or digest == self.manifest.digest:
            return self.manifest
        assert self._archive is not None
        return self._archive.get_manifest(ref, digest)

    def blob_chunks(self, repository: str, desc: Descriptor, offset: int = 0) -> Iterator[bytes]:
        assert self._archive is not None
        yield from self._archive.blob_chunks(repository, desc, offset)


class DaemonDestination:
    """The docker engine as a destination: the job is written into a temp archive by the one
    archive writer, and ``commit`` loads it (``docker load`` through the SDK). The post-condition
    asks the engine which image the name now gives."""

    abilities = Abilities()
    origin = None
    name = "docker daemon"

    def __init__(self) -> None:
        self.client = client()  # no engine: say so before any download
        self.tmp = tempfile.TemporaryDirectory(prefix="porter-load-")
        self.archive = ArchiveDestination(ArchiveWriter(f"{self.tmp.name}/load.tar"))
        self.loaded: list[str] = []
        self._expect: dict[tuple[str, str], tuple[str, str, str]] = {}

    def prepare(self, images: "list[Image]") -> None:
        self.archive.prepare(images)
        for img in images:
            m = img.chosen or img.listed
            self._expect[(img.named.repository, img.named.tag or img.listed.digest)] = (
                img.named.tagged_name() or "", m.config.digest, img.listed.digest)

    def has_manifest(self, repository: str, ref: str, digest: str) -> bool:
        return False

    def has_blob(self, repository: str, digest: str) -> bool:
        return False

    def mount(self, repository: str, digest: str, from_repository: str) -> bool:
        return False

    def tag_set(self, repository: str) -> set[str]:
        return set()

    def write_blob(self, repository: str, blob: "BlobReader", on_bytes: Callable[[int], None]) -> bool:
        return self.archive.write_blob(repository, blob, on_bytes)

    def put_manifest(self, repository: str, ref: str, manifest: Manifest) -> None:
        pass

    def commit(self) -> None:
        self.archive.commit()
        self.loaded = load(self.archive.writer.output, self.client)

    def served(self, repository: str, ref: str) -> str | None:
        """The manifest digest loaded, when the engine's image under that name (or, untagged,
        by its id) is the one the archive held (the engine names images by config digest, or
        by manifest digest with the containerd image store)."""
        name, config, digest = self._expect[(repository, ref)]
        try:
            image = self.client.images.get(name or config)
        except Exception:
            return None
        return digest if image.id in (config, digest) else image.id

    def close(self) -> None:
        self.archive.close()
        self.tmp.cleanup()
        self.client.close()


def load(archive_path: str, c: Any = None) -> list[str]:
    """``docker load`` an archive through the SDK; returns what the daemon said it loaded."""
    c = c or client()
    loaded: list[str] = []
    with open(archive_path, "rb") as f:
        for msg in c.api.load_image(f):
            if msg.get("error"):
                raise PorterError(f"docker daemon refused the images: {msg['error']}")
            if msg.get("stream", "").startswith("Loaded image"):
                loaded.append(msg["stream"].split(":", 1)[1].strip())
    return loaded
