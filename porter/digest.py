"""sha256 digests, and a verifying sink that hashes bytes on their way to disk.

Every blob porter moves passes through a :class:`Verifier`: it is hashed while written, so a
blob is read once, and a mismatch is caught before anything treats the bytes as good.
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Iterator

from .errors import DigestMismatch

_DIGEST = re.compile(r"sha256:[a-f0-9]{64}\Z")


def of_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hex_of(digest: str) -> str:
    """The hex part of a sha256 digest; refuses anything else (it becomes a path component)."""
    if not _DIGEST.match(digest):
        raise DigestMismatch(f"unsupported or malformed digest {digest!r}")
    return digest[7:]


def check(value: object, what: str) -> str:
    """``value`` if it is a digest porter verifies (``sha256:`` + 64 lowercase hex), else an error.
    Digests from outside (descriptors, headers, index children) pass here before any use."""
    if isinstance(value, str) and _DIGEST.match(value):
        return value
    text = repr(value)
    text = text if len(text) <= 90 else text[:80] + "…"
    raise DigestMismatch(f"{what}: unsupported or malformed digest {text} (porter verifies sha256:<64 lowercase hex>)")


def check_bytes(data: bytes, digest: str, what: str) -> None:
    actual = of_bytes(data)
    if actual != digest:
        raise DigestMismatch(f"{what} is corrupt: content hashes to {actual}, expected {digest}")


class FileAtOffset:
    """Writes into an open file descriptor at ``base`` + position with pwrite, so several threads
    can fill different regions of one pre-sized file at once."""

    def __init__(self, fd: int, base: int):
        self.fd, self.base, self.pos = fd, base, 0

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, self.base + self.pos)
            self.pos += n
            view = view[n:]


class Verifier:
    """Hashes and counts bytes as they pass; ``verify()`` checks digest and size at the end.

    ``copy()`` snapshots the state, so an upload can go back to a chunk boundary and re-hash."""

    def __init__(self, digest: str, size: int | None, what: str):
        hex_of(digest)
        self.digest, self.size, self.what = digest, size, what
        self._hash = hashlib.sha256()
        self.offset = 0

    def update(self, data: bytes) -> None:
        if self.size is not None and self.offset + len(data) > self.size:
            raise DigestMismatch(f"{self.what}: more than the expected {self.size} bytes received for {self.digest}")
        self._hash.update(data)
        self.offset += len(data)

    def copy(self) -> "Verifier":
        c = Verifier.__new__(Verifier)
        c.digest, c.size, c.what, c.offset, c._hash = self.digest, self.size, self.what, self.offset, self._hash.copy()
        return c

    def verify(self) -> None:
        if self.size is not None and self.offset != self.size:
            raise DigestMismatch(f"{self.what}: got {self.offset} bytes, expected {self.size} for {self.digest}")
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self.digest:
            raise DigestMismatch(f"{self.what} is corrupt: content hashes to {actual}, expected {self.digest}")


def file_chunks(path: str | os.PathLike | int, start: int = 0, length: int | None = None,
                chunk: int = 1 << 20) -> Iterator[bytes]:
    """A file's bytes (a path, or an open fd that this closes) from ``start`` — ``length`` of
    them, or to the end — a chunk at a time. Raises EOFError when it ends before ``length`` bytes."""
    with open(path, "rb", buffering=0) as f:
        f.seek(start)
        left = length
        while left is None or left > 0:
            data = f.read(chunk if left is None else min(chunk, left))
            if not data:
                if left:
                    raise EOFError(f"{path} ends {left} bytes early")
                return
            if left is not None:
                left -= len(data)
            yield data

