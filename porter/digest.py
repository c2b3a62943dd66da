"""sha256 digests, and a verifying sink that hashes bytes on their way to disk.

Every blob porter moves passes through a :class:`Verifier`: it is hashed while written, so a
blob is read once, and a mismatch is caught before anything treats the bytes as good.
"""
from __future__ import annotations

import hashlib
import os
import re
from typing import Protocol

from .errors import DigestMismatch

_DIGEST = re.compile(r"sha256:[a-f0-9]{64}\Z")


def of_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hex_of(digest: str) -> str:
    """The hex part of a sha256 digest; refuses anything else (it becomes a path component)."""
    if not _DIGEST.match(digest):
        raise DigestMismatch(f"unsupported or malformed digest {digest!r}")
    return digest[7:]


def check_bytes(data: bytes, digest: str, what: str) -> None:
    actual = of_bytes(data)
    if actual != digest:
        raise DigestMismatch(f"{what}: content hashes to {actual}, expected {digest}")


class BlobSink(Protocol):
    """Where a blob's bytes go. ``rewind`` starts over at byte 0 (a server ignored our Range)."""

    def write(self, data: bytes) -> None: ...

    def rewind(self) -> None: ...


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

    def rewind(self) -> None:
        self.pos = 0


class Verifier:
    """Hashes and counts what passes to ``sink``; ``verify()`` checks digest and size at the end."""

    def __init__(self, sink: BlobSink, digest: str, size: int | None, what: str):
        hex_of(digest)
        self.sink, self.digest, self.size, self.what = sink, digest, size, what
        self._hash = hashlib.sha256()
        self.offset = 0

    def write(self, data: bytes) -> None:
        if self.size is not None and self.offset + len(data) > self.size:
            raise DigestMismatch(f"{self.what}: more than the expected {self.size} bytes received for {self.digest}")
        self._hash.update(data)
        self.sink.write(data)
        self.offset += len(data)

    def rewind(self) -> None:
        self._hash = hashlib.sha256()
        self.offset = 0
        self.sink.rewind()

    def verify(self) -> None:
        if self.size is not None and self.offset != self.size:
            raise DigestMismatch(f"{self.what}: got {self.offset} bytes, expected {self.size} for {self.digest}")
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self.digest:
            raise DigestMismatch(f"{self.what}: content hashes to {actual}, expected {self.digest}")


class MemorySink:
    """Collects a small blob (an image config) in memory; the Verifier bounds it to its size."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def rewind(self) -> None:
        self.data.clear()


class Discard:
    """Drops the bytes: for verifying blobs without keeping them (``ls --check``)."""

    def write(self, data: bytes) -> None:
        pass

    def rewind(self) -> None:
        pass
