"""Reading and deleting inside a directory tree that someone else wrote (a registry's storage),
without ever following a symbolic link: every component below the root is opened with
``O_NOFOLLOW``, only regular files are read, and every read is bounded.

Distribution's filesystem driver never writes links, so a link under the root is tampering (or
an administrator's trick that porter will not guess the meaning of): it is refused, never
followed — a link could lead into another registry's storage, a device or a FIFO.
"""
from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from .errors import StorageError

_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
#: Directories already seen to be plain (reached through directories only) during this run, so a
#: tree of thousands of files costs one lstat per directory, not one per path component per file.
_plain: set[str] = set()


def _parts(root: Path | str, path: Path | str) -> list[str]:
    r, p = str(root).rstrip("/"), str(path)
    if p == r:
        return []
    if not p.startswith(r + "/"):
        raise StorageError(f"{path} is outside {root}")
    parts = p[len(r) + 1:].split("/")
    if any(x in ("..", ".", "") for x in parts):
        raise StorageError(f"{path}: refusing a path that leaves {root}")
    return parts


def _link_error(where: str) -> StorageError:
    return StorageError(f"{where}: a symbolic link or a non-directory on the way; porter does not follow links "
                        f"in a storage directory")


def _parent(root: Path | str, parts: list[str]) -> str:
    """The directory holding ``parts[-1]``, checked to be reached through directories only."""
    cur = str(root).rstrip("/")
    for p in parts[:-1]:
        cur += "/" + p
        if cur not in _plain:
            if not stat.S_ISDIR(os.lstat(cur).st_mode):  # FileNotFoundError: absent, as the caller expects
                raise _link_error(cur)
            _plain.add(cur)
    return cur


def open_regular(root: Path, path: Path) -> tuple[int, int]:
    """(fd, size) of the regular file ``path`` below ``root``. FileNotFoundError when absent;
    StorageError for a link, a FIFO, a device or a directory."""
    import errno

    parts = _parts(root, path)
    if not parts:
        raise StorageError(f"{path}: not a file")
    full = _parent(root, parts) + "/" + parts[-1]
    try:
        fd = os.open(full, _FILE)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _link_error(full) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise StorageError(f"{path}: not a regular file; refusing to read it")
    os.set_blocking(fd, True)
    return fd, st.st_size


def read_regular(root: Path, path: Path, limit: int) -> bytes:
    """The bytes of a regular file below ``root``, refused when larger than ``limit``."""
    fd, size = open_regular(root, path)
    with os.fdopen(fd, "rb") as f:
        if size > limit:
            raise StorageError(f"{path}: {size} bytes, more than the {limit} expected; refusing to read it")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise StorageError(f"{path}: more than the {limit} bytes expected; refusing to read it")
    return data


def plain_dir(root: Path, path: Path) -> bool:
    """True when ``path`` is a directory below ``root`` reached through directories only (no
    link anywhere on the way, itself included)."""
    try:
        _parent(root, _parts(root, path) + ["-"])
    except (OSError, StorageError):
        return False
    return True


def scan_dirs(root: Path, path: Path) -> tuple[list[str], list[str]]:
    """(names of the plain subdirectories of ``path``, names of anything else there). Empty when
    ``path`` is absent or not a plain directory."""
    if not plain_dir(root, path):
        return [], []
    dirs: list[str] = []
    other: list[str] = []
    try:
        with os.scandir(path) as it:
            for e in it:
                (dirs if e.is_dir(follow_symlinks=False) else other).append(e.name)
    except OSError:
        return [], []
    return sorted(dirs), sorted(other)


def remove_tree(root: Path, path: Path) -> str | None:
    """Delete ``path`` (a directory or file below ``root``) unless a link is on the way to it or
    it is one; returns why it was skipped, or None. Links inside it are removed, not followed."""
    parts = _parts(root, path)
    if not parts or not plain_dir(root, path.parent):
        return f"{path}: a symbolic link on the way; not deleted"
    _plain.discard(str(path))
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(mode):
        return f"{path}: a symbolic link; not deleted (nor what it points at)"
    try:
        if stat.S_ISDIR(mode):
            shutil.rmtree(path)  # fd-based on Linux: does not follow links inside
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        return f"{path}: {e.strerror}"
    return None
