"""Split volumes: one archive written as ``NAME.000``, ``NAME.001``, … (none larger than a size,
for FAT32 media or optical discs) with their sha256 in a ``SHA256SUMS`` file beside them
(``sha256sum -c`` reads it), and read back as one file, whatever order the volumes are named in.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path
from typing import BinaryIO, Callable

from ..errors import ArchiveError, UsageError

SUMS = "SHA256SUMS"
_VOLUME = re.compile(r"(.*)\.(\d{3})\Z")


def volume_name(output: str | Path, n: int) -> str:
    return f"{output}.{n:03d}"


def is_volume(path: str | Path) -> bool:
    return bool(_VOLUME.match(str(path)))


def set_of(path: str) -> str:
    """What names the archive ``path`` belongs to: a volume's set (``NAME`` of ``NAME.001``), else itself."""
    m = _VOLUME.match(path)
    return m[1] if m else path


class VolumeWriter(io.RawIOBase):
    """A writable stream that fills temp files of at most ``size`` bytes each; ``finish`` renames
    them to ``OUTPUT.NNN`` and records their digests in ``SHA256SUMS`` (other lines kept)."""

    def __init__(self, output: str, size: int, mkstemp: Callable[[str], tuple[int, str]]):
        self.output, self.size, self._mkstemp = output, size, mkstemp
        self.parts: list[tuple[str, hashlib._Hash]] = []
        self._f: BinaryIO | None = None
        self._left = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        view = memoryview(data)
        while view:
            if self._f is None or self._left == 0:
                if self._f is not None:
                    self._f.close()
                fd, path = self._mkstemp(f".{len(self.parts):03d}")
                self._f = os.fdopen(fd, "wb")
                self.parts.append((path, hashlib.sha256()))
                self._left = self.size
            n = min(len(view), self._left)
            self._f.write(view[:n])
            self.parts[-1][1].update(view[:n])
            self._left -= n
            view = view[n:]
        return len(data)

    def finish(self) -> list[str]:
        """Rename the parts into place (stale higher-numbered volumes of an earlier run go) and
        update SHA256SUMS; returns the volume names."""
        if self._f is not None:
            self._f.close()
            self._f = None
        names = []
        for n, (tmp, _) in enumerate(self.parts):
            names.append(volume_name(self.output, n))
            os.replace(tmp, names[-1])
        n = len(self.parts)
        while os.path.exists(volume_name(self.output, n)):
            os.unlink(volume_name(self.output, n))
            n += 1
        sums = Path(self.output).parent / SUMS
        prefix = Path(self.output).name + "."
        kept = [line for line in (sums.read_text().splitlines() if sums.exists() else [])
                if not (line.split(maxsplit=1)[-1].lstrip("*").startswith(prefix)
                        and _VOLUME.match(line.split(maxsplit=1)[-1].lstrip("*")))]
        lines = kept + [f"{h.hexdigest()}  {Path(v).name}" for v, (_, h) in zip(names, self.parts)]
        fd, tmp = self._mkstemp(".sums")
        with os.fdopen(fd, "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(tmp, sums)
        return names


def find_set(path: str | Path) -> list[Path]:
    """Every volume of the set ``path`` belongs to, in order, checked against SHA256SUMS when it
    is there: a missing or corrupt volume is named."""
    m = _VOLUME.match(str(path))
    if not m:
        return [Path(path)]
    stem = Path(m[1])
    found = sorted(stem.parent.glob(stem.name + ".[0-9][0-9][0-9]"))
    by_number = {int(p.name[-3:]): p for p in found}
    sums = stem.parent / SUMS
    listed: dict[str, str] = {}
    if sums.exists():
        for line in sums.read_text(errors="replace").splitlines():
            parts = line.split(maxsplit=1)
            if len(parts) == 2 and _VOLUME.match(parts[1].lstrip("*")) and \
                    parts[1].lstrip("*").startswith(stem.name + "."):
                listed[parts[1].lstrip("*")] = parts[0].lower()
    count = max([len(listed)] + [n + 1 for n in by_number])
    missing = [volume_name(stem, n) for n in range(count) if n not in by_number]
    if missing:
        raise ArchiveError(f"volume {missing[0]} of {stem} is missing" +
                           (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    volumes = [by_number[n] for n in range(count)]
    for v in volumes:
        want = listed.get(v.name)
        if want is not None:
            h = hashlib.sha256()
            with open(v, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            if h.hexdigest() != want:
                raise ArchiveError(f"volume {v} is corrupt: its sha256 is {h.hexdigest()}, {SUMS} says {want}")
    return volumes


class Chained(io.RawIOBase):
    """Several files read as one seekable file."""

    def __init__(self, paths: list[Path]):
        self.files = [open(p, "rb") for p in paths]
        self.sizes = [os.fstat(f.fileno()).st_size for f in self.files]
        self.total = sum(self.sizes)
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else self.pos + offset if whence == 1 else self.total + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, b) -> int:  # type: ignore[no-untyped-def,override]
        start, i = self.pos, 0
        while i < len(self.sizes) and start >= self.sizes[i]:
            start -= self.sizes[i]
            i += 1
        if i == len(self.sizes):
            return 0
        f = self.files[i]
        f.seek(start)
        n = f.readinto(memoryview(b)[: self.sizes[i] - start])
        self.pos += n
        return n

    def close(self) -> None:
        for f in self.files:
            f.close()
        super().close()


def one_archive(paths: tuple[str, ...]) -> str:
    """The archive several paths name: one path, or the volumes of one split set (any order)."""
    for p in paths:
        if not os.path.exists(p):
            raise UsageError(f"Invalid value for 'ARCHIVE': {p!r} does not exist")
    if len(paths) == 1:
        return paths[0]
    if len({set_of(p) for p in paths}) != 1 or not all(is_volume(p) for p in paths):
        raise UsageError("several ARCHIVEs must be the volumes of one split set (NAME.000, NAME.001, …)")
    return min(paths)
