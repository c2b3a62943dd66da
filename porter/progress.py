"""Progress on stderr: an overall byte bar and one bar per blob in flight (tqdm, TTY only).

The engine reports through one small interface; ``Quiet`` is the same interface doing nothing,
so no caller checks whether progress is on.
"""
from __future__ import annotations

import sys
import threading
from typing import Any


class Quiet:
    def start(self, total_bytes: int, blobs: int) -> None: ...
    def blob_started(self, digest: str, size: int) -> Any: return None
    def advance(self, handle: Any, n: int) -> None: ...
    def blob_finished(self, handle: Any) -> None: ...
    def note(self, message: str) -> None: ...
    def close(self) -> None: ...


class Bars(Quiet):
    def __init__(self) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self._lock = threading.Lock()
        self._free_positions: list[int] = []
        self._next_position = 1
        self.total: Any = None

    def start(self, total_bytes: int, blobs: int) -> None:
        self.total = self._tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1000,
                                desc=f"{blobs} blobs", position=0, file=sys.stderr, dynamic_ncols=True)

    def blob_started(self, digest: str, size: int) -> Any:
        with self._lock:
            pos = self._free_positions.pop() if self._free_positions else self._next_position
            if pos == self._next_position:
                self._next_position += 1
        return self._tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1000, desc=digest[7:19],
                          position=pos, leave=False, file=sys.stderr, dynamic_ncols=True)

    def advance(self, handle: Any, n: int) -> None:
        handle.update(n)
        if self.total is not None:
            self.total.update(n)

    def blob_finished(self, handle: Any) -> None:
        with self._lock:
            self._free_positions.append(handle.pos)
            handle.close()

    def note(self, message: str) -> None:
        self._tqdm.write(message, file=sys.stderr)

    def close(self) -> None:
        if self.total is not None:
            self.total.close()


def make(quiet: bool) -> Quiet:
    return Bars() if not quiet and sys.stderr.isatty() else Quiet()
