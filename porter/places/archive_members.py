"""The files of an image archive, by name, read in place: a tar (plain, gzip'd or zstd'd) or a
directory (an OCI layout on disk).

Nothing is extracted. A tar's members are indexed by their offset and read from the tar itself;
a compressed tar is first decompressed into one temp file. Links inside the archive are
legitimate (``docker save`` stores a repeated layer as a symlink to its first copy) and are
resolved to the member they name; a link that leaves the archive, an absolute or ``..`` path, a
device, a FIFO or a name that appears twice makes the archive hostile, and it is refused.
"""
from __future__ import annotations

import io
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from .. import digest as dg
from ..errors import ArchiveError
from .volumes import Chained, find_set

READ_CHUNK = 1 << 20
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
DISK_RESERVE = 512 << 20  # decompressing an archive never leaves less free disk than this
MAX_LINK_HOPS = 16


@dataclass(frozen=True)
class Entry:
    """Where a member's bytes are: ``size`` bytes at ``offset`` of the file ``path`` (None: of
    the tar, which may be a chain of volumes)."""

    path: str | None
    offset: int
    size: int


def _decompressor(magic: bytes, f: Any) -> Any:
    if magic.startswith(GZIP_MAGIC):
        import gzip

        return gzip.GzipFile(fileobj=f, mode="rb")
    import zstandard

    return zstandard.ZstdDecompressor().stream_reader(f, read_size=READ_CHUNK)


def _declared_size(opener: Callable[[], BinaryIO], magic: bytes) -> int | None:
    """The decompressed size a zstd frame declares (porter writes it), else None."""
    if not magic.startswith(ZSTD_MAGIC):
        return None
    import zstandard

    with opener() as f:
        head = f.read(18)
    try:
        size = zstandard.frame_content_size(head)
    except zstandard.ZstdError:
        return None
    return size if size >= 0 else None


def decompress(path: Path, magic: bytes, tmpdir: str | None, opener: Callable[[], BinaryIO] | None = None) -> str:
    """Decompress a gzip'd or zstd'd archive into a temp tar; returns its path.

    Bounded by what the archive declares (a zstd frame's content size), else by the free disk
    (keeping DISK_RESERVE free): a legitimate archive decompresses whatever its ratio (a layer of
    zeros compresses 1000:1), a bomb stops before the disk fills. Every member is verified
    against its digest later, so the bound only has to protect the machine."""
    fd, tmp = tempfile.mkstemp(prefix=".porter-import.", suffix=".tar", dir=tmpdir)
    opener = opener or (lambda: open(path, "rb"))
    declared = _declared_size(opener, magic)
    limit = declared if declared is not None else shutil.disk_usage(os.path.dirname(tmp)).free - DISK_RESERVE
    kind = "gzip" if magic.startswith(GZIP_MAGIC) else "zstd"
    try:
        with opener() as src, os.fdopen(fd, "wb") as dst:
            reader = _decompressor(magic, src)
            total = 0
            while chunk := reader.read(READ_CHUNK):
                total += len(chunk)
                if total > limit:
                    raise ArchiveError(f"{path}: decompresses to more than "
                                       f"{'the declared' if declared is not None else 'the free disk of'} {limit} "
                                       f"bytes; refusing it")
                dst.write(chunk)
    except (OSError, EOFError) as e:
        os.unlink(tmp)
        raise ArchiveError(f"{path}: corrupt {kind} data ({e})") from None
    except BaseException as e:
        os.unlink(tmp)
        if type(e).__name__ == "ZstdError":
            raise ArchiveError(f"{path}: corrupt zstd data ({e})") from None
        raise
    return tmp


def _inside(name: str, link: str = "") -> str:
    """A member name (or, for ``link`` "NAME -> TARGET", a link's target), normalised; refuses
    absolute and escaping paths."""
    norm = posixpath.normpath(name)
    if name.startswith("/") or "\0" in name or norm == ".." or norm.startswith("../"):
        if link:
            raise ArchiveError(f"archive member {link} leaves the archive; refusing the archive")
        why = "has an absolute path" if name.startswith("/") else "points outside the archive"
        raise ArchiveError(f"archive member {name!r} {why}; refusing the archive")
    return norm


class Members:
    """The regular files of an archive by normalised name (links resolved)."""

    def __init__(self, path: str, tmpdir: str | None = None):
        self.path = Path(path)
        self._tmp: str | None = None
        self.entries: dict[str, Entry] = {}
        self._tar: BinaryIO | None = None
        if self.path.is_dir():
            self._index_dir()
            return
        self.volumes = find_set(self.path)  # one file, or every volume of a split set (checked)

        def opener() -> BinaryIO:
            if len(self.volumes) == 1:
                return open(self.volumes[0], "rb")
            return io.BufferedReader(Chained(self.volumes), READ_CHUNK)  # type: ignore[return-value]

        try:
            with opener() as f:
                magic = f.read(4)
        except OSError as e:
            raise ArchiveError(f"cannot read {path}: {e.strerror}") from None
        if magic.startswith(GZIP_MAGIC) or magic == ZSTD_MAGIC:
            self._tmp = decompress(self.path, magic, tmpdir, opener)
            tmp = self._tmp
            opener = lambda: open(tmp, "rb")  # noqa: E731
        try:
            self._tar = opener()
            self._index_tar()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None
        if self._tmp:
            os.unlink(self._tmp)
            self._tmp = None

    def _index_tar(self) -> None:
        links: dict[str, str] = {}
        assert self._tar is not None
        try:
            with tarfile.open(fileobj=self._tar, mode="r:") as t:
                for m in t:
                    name = _inside(m.name)
                    if m.isdir():
                        continue
                    if name in self.entries or name in links:
                        raise ArchiveError(f"archive member {name!r} appears twice; refusing the archive")
                    if m.issym():
                        links[name] = _inside(posixpath.join(posixpath.dirname(name), m.linkname),
                                              f"{name} -> {m.linkname}")
                    elif m.islnk():
                        links[name] = _inside(m.linkname, f"{name} -> {m.linkname}")
                    elif m.isfile():
                        self.entries[name] = Entry(None, m.offset_data, m.size)
                    else:
                        raise ArchiveError(f"archive member {name!r} is a device or special file; refusing the archive")
        except tarfile.TarError as e:
            raise ArchiveError(f"{self.path}: not a readable tar archive ({e})") from None
        self._resolve(links)

    def _index_dir(self) -> None:
        root = self.path
        links: dict[str, str] = {}
        for dirpath, dirnames, files in os.walk(root):  # does not descend into linked directories
            for n in files + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
                full = os.path.join(dirpath, n)
                name = os.path.relpath(full, root).replace(os.sep, "/")
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    target = os.readlink(full)
                    links[name] = _inside(posixpath.join(posixpath.dirname(name), target), f"{name} -> {target}")
                elif stat.S_ISREG(st.st_mode):
                    self.entries[name] = Entry(full, 0, st.st_size)
                else:
                    raise ArchiveError(f"{full} is a device or special file; refusing the layout")
        self._resolve(links)

    def _resolve(self, links: dict[str, str]) -> None:
        """Each link becomes the entry it names (through other links), or is dropped when it names
        nothing in the archive (it is then reported as missing if anything needs it)."""
        for name, target in links.items():
            for _ in range(MAX_LINK_HOPS):
                if target not in links:
                    break
                target = links[target]
            if target in self.entries:
                self.entries[name] = self.entries[target]

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def size(self, name: str) -> int:
        return self._entry(name).size

    def _entry(self, name: str) -> Entry:
        e = self.entries.get(name)
        if e is None:
            raise ArchiveError(f"{self.path}: no {name} in the archive")
        return e

    def read(self, name: str, limit: int) -> bytes:
        """A small member whole; refused when larger than ``limit``."""
        e = self._entry(name)
        if e.size > limit:
            raise ArchiveError(f"{self.path}: {name} is {e.size} bytes, more than the {limit} allowed")
        return b"".join(self.chunks(name))

    def chunks(self, name: str, offset: int = 0) -> Iterator[bytes]:
        """A member's bytes from ``offset``, a chunk at a time (threads may read several at once)."""
        e = self._entry(name)
        try:
            if e.path is not None:
                yield from dg.file_chunks(e.path, e.offset + offset, e.size - offset)
            elif len(self.volumes) == 1 or self._tmp:
                yield from dg.file_chunks(self._tmp or self.volumes[0], e.offset + offset, e.size - offset)
            else:
                with Chained(self.volumes) as f:
                    f.seek(e.offset + offset)
                    left = e.size - offset
                    while left > 0:
                        data = f.read(min(READ_CHUNK, left))
                        if not data:
                            raise EOFError
                        left -= len(data)
                        yield data
        except EOFError:
            raise ArchiveError(f"{self.path}: truncated inside {name}") from None
