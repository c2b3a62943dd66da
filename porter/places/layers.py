"""One converter for layers as ``docker save`` and docker-archive writers store them.

Those archives keep layers uncompressed (``layer.tar``), while a registry wants the compressed
bytes a manifest names. Here an uncompressed layer is gzip'd deterministically (level 1, no
name, mtime 0), so the same layer always gets the same digest and a rerun finds it already
pushed; a layer that is already gzip'd or zstd'd is kept as it is. Either way the uncompressed
bytes are hashed and checked against the config's ``rootfs.diff_ids`` before anything is pushed:
a layer that does not match (a link followed wrongly, a truncated file) is never sent.
"""
from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from ..errors import ArchiveError

GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"


@dataclass(frozen=True)
class Layer:
    """A layer ready for a manifest. ``path`` holds the converted bytes; None: the original
    member is already compressed and is served as it is."""

    media_type: str
    digest: str
    size: int
    diff_id: str
    path: Path | None


class _Unzstd:
    def __init__(self) -> None:
        import zstandard

        self._d = zstandard.ZstdDecompressor().decompressobj()

    def decompress(self, data: bytes) -> bytes:
        return self._d.decompress(data)


def convert(chunks: Iterable[bytes], out: Path, diff_id: str | None, what: str) -> Layer:
    """Read one layer's bytes; gzip them into ``out`` when uncompressed; check the diff_id."""
    packed, unpacked = hashlib.sha256(), hashlib.sha256()
    size = 0
    kind: str | None = None
    comp: Any = None
    dec: Any = None
    sink = None
    try:
        for chunk in chunks:
            if kind is None:
                kind = "gzip" if chunk[:2] == b"\x1f\x8b" else "zstd" if chunk[:4] == b"\x28\xb5\x2f\xfd" else "tar"
                if kind == "tar":
                    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
                    sink = open(out, "wb")
                else:
                    dec = zlib.decompressobj(31) if kind == "gzip" else _Unzstd()
            if kind == "tar":
                unpacked.update(chunk)
                data = comp.compress(chunk)
                packed.update(data)
                size += len(data)
                sink.write(data)  # type: ignore[union-attr]
            else:
                packed.update(chunk)
                size += len(chunk)
                unpacked.update(dec.decompress(chunk))
        if kind in ("tar", None):
            comp = comp or zlib.compressobj(1, zlib.DEFLATED, 31)
            sink = sink or open(out, "wb")
            data = comp.flush()
            packed.update(data)
            size += len(data)
            sink.write(data)
    except (zlib.error, OSError) as e:
        raise ArchiveError(f"{what}: unreadable layer ({e})") from None
    except Exception as e:  # zstandard's own error type
        if type(e).__name__ != "ZstdError":
            raise
        raise ArchiveError(f"{what}: unreadable zstd layer ({e})") from None
    finally:
        if sink is not None:
            sink.close()
    actual = "sha256:" + unpacked.hexdigest()
    if diff_id is not None and actual != diff_id:
        raise ArchiveError(f"{what}: layer content hashes to {actual}, but the image config says {diff_id}; "
                           f"refusing the image")
    media_type = OCI_ZSTD if kind == "zstd" else GZIP
    return Layer(media_type, "sha256:" + packed.hexdigest(), size, actual, out if kind in ("tar", None) else None)
