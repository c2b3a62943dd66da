"""Test images, built here from a static busybox and pushed with plain HTTP calls.

The seeding path is deliberately independent of porter (a few lines of the Distribution API),
so that a porter bug cannot seed the registry with what it then reads back as "correct".
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import tarfile
from dataclasses import dataclass

import httpx

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
LAYER = {"docker": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "oci": "application/vnd.oci.image.layer.v1.tar+gzip"}
CONFIG = {"docker": "application/vnd.docker.container.image.v1+json",
          "oci": "application/vnd.oci.image.config.v1+json"}
BUSYBOX = "/bin/busybox"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_layer(files: dict[str, bytes | str]) -> bytes:
    """An uncompressed layer tar. A ``str`` value makes a symlink to it."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        dirs = sorted({"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)})
        for d in dirs:
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            t.addfile(ti)
        for name, content in files.items():
            ti = tarfile.TarInfo(name)
            if isinstance(content, str):
                ti.type, ti.linkname = tarfile.SYMTYPE, content
                t.addfile(ti)
            else:
                ti.size, ti.mode = len(content), 0o755
                t.addfile(ti, io.BytesIO(content))
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def busybox_layer() -> bytes:
    with open(BUSYBOX, "rb") as f:
        bb = f.read()
    return tar_layer({"bin/busybox": bb, "bin/sh": "busybox", "bin/echo": "busybox", "bin/cat": "busybox"})


@dataclass
class Pushed:
    repo: str
    tag: str | None
    digest: str
    media_type: str
    raw: bytes
    blobs: list[str]


class Seeder:
    """Pushes blobs and manifests into a registry with monolithic uploads."""

    def __init__(self, url: str, verify: bool | str = True, auth: tuple[str, str] | None = None):
        self.url = url
        self.http = httpx.Client(verify=verify, auth=auth, timeout=120)

    def blob(self, repo: str, data: bytes) -> str:
        d = sha(data)
        if self.http.head(f"{self.url}/v2/{repo}/blobs/{d}").status_code == 200:
            return d
        r = self.http.post(f"{self.url}/v2/{repo}/blobs/uploads/")
        r.raise_for_status()
        self.http.put(self._finish(r, d), content=data,
                      headers={"Content-Type": "application/octet-stream"}).raise_for_status()
        return d

    def blob_file(self, repo: str, path: str, digest: str, size: int) -> None:
        if self.http.head(f"{self.url}/v2/{repo}/blobs/{digest}").status_code == 200:
            return
        r = self.http.post(f"{self.url}/v2/{repo}/blobs/uploads/")
        r.raise_for_status()
        with open(path, "rb") as f:
            self.http.put(self._finish(r, digest), content=iter(lambda: f.read(1 << 20), b""),
                          headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)}
                          ).raise_for_status()

    def _finish(self, started: httpx.Response, digest: str) -> str:
        loc = str(httpx.URL(self.url).join(started.headers["Location"]))
        return loc + ("&" if "?" in loc else "?") + "digest=" + digest

    def manifest(self, repo: str, ref: str, raw: bytes, media_type: str) -> str:
        r = self.http.put(f"{self.url}/v2/{repo}/manifests/{ref}", content=raw, headers={"Content-Type": media_type})
        if r.status_code >= 300:
            raise RuntimeError(f"manifest push {repo}:{ref}: {r.status_code} {r.text}")
        return sha(raw)

    def image(self, repo: str, tag: str | None, layers: list[bytes], fmt: str = "docker",
              cmd: list[str] | None = None, arch: str = "amd64", variant: str = "", label: str = "",
              created: str = "2024-01-01T00:00:00Z") -> Pushed:
        """Push an image whose layers are the given uncompressed tars (gzipped here)."""
        gzipped = [gz(t) for t in layers]
        cfg = {"architecture": arch, "os": "linux", "created": created,
               "config": {"Cmd": cmd or ["/bin/sh", "-c", "echo hello from porter"], "Labels": {"l": label}},
               "rootfs": {"type": "layers", "diff_ids": [sha(t) for t in layers]}}
        if variant:
            cfg["variant"] = variant
        return self.image_from_blobs(repo, tag, json.dumps(cfg).encode(), gzipped, fmt)

    def image_from_blobs(self, repo: str, tag: str | None, cfg_raw: bytes, gzipped: list[bytes],
                         fmt: str = "docker") -> Pushed:
        blobs = [self.blob(repo, cfg_raw)] + [self.blob(repo, g) for g in gzipped]
        mt = DOCKER_MANIFEST if fmt == "docker" else OCI_MANIFEST
        man = {"schemaVersion": 2, "mediaType": mt,
               "config": {"mediaType": CONFIG[fmt], "digest": blobs[0], "size": len(cfg_raw)},
               "layers": [{"mediaType": LAYER[fmt], "digest": d, "size": len(g)} for d, g in zip(blobs[1:], gzipped)]}
        raw = json.dumps(man, indent=3).encode()
        d = self.manifest(repo, tag or sha(raw), raw, mt)
        return Pushed(repo, tag, d, mt, raw, blobs)

    def index(self, repo: str, tag: str, children: list[tuple[Pushed, dict]], fmt: str = "docker") -> Pushed:
        mt = DOCKER_LIST if fmt == "docker" else OCI_INDEX
        doc = {"schemaVersion": 2, "mediaType": mt,
               "manifests": [{"mediaType": c.media_type, "digest": c.digest, "size": len(c.raw), "platform": p}
                             for c, p in children]}
        raw = json.dumps(doc, indent=2).encode()
        d = self.manifest(repo, tag, raw, mt)
        return Pushed(repo, tag, d, mt, raw, [c.digest for c, _ in children])


def have_busybox() -> bool:
    return shutil.which(BUSYBOX) is not None
