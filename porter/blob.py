"""Reading one blob from a source: the one place porter hashes blob bytes and resumes a read.

Every copy — into an archive, a registry, the docker engine, or just ``ls --check`` — reads
through a :class:`BlobReader`. It hashes every byte in order (a blob is never handed on as
complete unless its digest and size match), and when the connection drops mid-blob it opens the
source again at the byte it reached (HTTP Range for a registry), counting only drops that made
no progress against the retry budget. Sources stay simple: one stream from an offset.
"""
from __future__ import annotations

from typing import Iterator

from .digest import Verifier
from .errors import DigestMismatch, TransportError
from .mediatypes import Descriptor
from .places.protocol import Source
from .transport import RETRYABLE

DEFAULT_RETRIES = 5


class BlobReader:
    """Blob ``desc`` of ``repository`` at ``source``, read verified and resumed after drops."""

    def __init__(self, source: Source, repository: str, desc: Descriptor, retries: int = DEFAULT_RETRIES):
        self.source, self.repository, self.desc, self.retries = source, repository, desc, retries
        self.what = f"blob {desc.digest} from {source.name}{'/' + repository if repository else ''}"
        self.verifier = Verifier(desc.digest, desc.size, self.what)

    @property
    def digest(self) -> str:
        return self.desc.digest

    @property
    def size(self) -> int:
        return self.desc.size

    @property
    def hashed(self) -> int:
        """How many bytes, from the start, have been hashed so far."""
        return self.verifier.offset

    def checkpoint(self) -> Verifier:
        """The hash state now, to go back to (a chunk upload that failed is sent again)."""
        return self.verifier.copy()

    def restore(self, state: Verifier) -> None:
        self.verifier = state.copy()

    def restart(self) -> None:
        """Forget every byte hashed: the blob is read again from the start."""
        self.verifier = Verifier(self.desc.digest, self.desc.size, self.what)

    def _raw(self, start: int) -> Iterator[bytes]:
        """The source's bytes from ``start`` on; after a drop, reopened where it stopped."""
        pos, drops = start, 0
        while True:
            before = pos
            try:
                for chunk in self.source.blob_chunks(self.repository, self.desc, pos):
                    pos += len(chunk)
                    yield chunk
                return
            except RETRYABLE as e:
                drops = 0 if pos > before else drops + 1
                if drops > self.retries:
                    raise TransportError(f"{self.what}: connection kept failing ({type(e).__name__})") from e

    def read(self, end: int | None = None, send_from: int | None = None) -> Iterator[bytes]:
        """The bytes from where hashing stands up to ``end`` (default: the whole blob), hashed;
        those before ``send_from`` are hashed but not yielded (the far side has them). Reaching
        the end of the blob verifies it: a mismatch raises before the last chunk is handed on
        — inside an upload's body, so the upload is never committed."""
        end = self.desc.size if end is None else end
        pos = self.verifier.offset
        if pos < end:
            for chunk in self._raw(pos):
                if pos + len(chunk) > end:
                    chunk = chunk[: end - pos]
                if send_from is not None and pos < send_from:
                    keep = chunk[send_from - pos:] if pos + len(chunk) > send_from else b""
                else:
                    keep = chunk
                pos += len(chunk)
                self.verifier.update(chunk)
                if pos == self.desc.size:
                    self.verifier.verify()
                if keep:
                    yield keep
                if pos >= end:
                    break
        if pos < end:
            raise DigestMismatch(f"{self.what}: the source ended at byte {pos} of {self.desc.size}")
        if end == self.desc.size and self.desc.size == 0:
            self.verifier.verify()

    def read_all(self) -> bytes:
        """A small blob (an image config) in memory, verified; its size bounds what is read."""
        return b"".join(self.read())

    def check(self) -> None:
        """Read the blob to its end, keeping nothing: DigestMismatch when it is not what it claims."""
        for _ in self.read():
            pass
