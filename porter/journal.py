"""The job journal: what a bulk job has finished, and where its unfinished uploads stand.

After an interruption (Ctrl-C, ``kill -9``, a reboot) the same command reads it back: an image
recorded as finished costs one HEAD to confirm; a chunked upload recorded with its upload URL
and offset goes on from what the registry reports. The registry stays the source of truth:
nothing here is believed without asking it. The file is replaced atomically on every write; a
corrupt journal, or one written for another job, is reported and ignored.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from .errors import PorterError

VERSION = 1
MAX_JOURNAL_BYTES = 256 << 20


def default_path(job_key: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "porter" / "jobs" / (hashlib.sha256(job_key.encode()).hexdigest()[:20] + ".json")


class Journal:
    def __init__(self, path: str | Path, job_key: str,
                 warn: Callable[[str], None] = lambda m: print(f"porter: warning: {m}", file=sys.stderr)):
        self.path, self.key = Path(path), job_key
        self._lock = threading.Lock()
        self.images: dict[str, str] = {}
        self.uploads: dict[str, dict[str, Any]] = {}
        self._load(warn)

    def _load(self, warn: Callable[[str], None]) -> None:
        """Read the journal back. A file at the path that is not a porter journal (a link, a
        device, anything that does not parse as one) is never replaced: that is an error."""
        refuse = f"--state {self.path}: exists and is not a porter journal; refusing to replace it"
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_JOURNAL_BYTES:
            raise PorterError(refuse)
        try:
            doc = json.loads(self.path.read_bytes())
        except (OSError, ValueError, RecursionError):
            raise PorterError(refuse) from None
        if not isinstance(doc, dict) or doc.get("version") != VERSION or not isinstance(doc.get("job"), str):
            raise PorterError(refuse)
        if doc.get("job") != self.key:
            warn(f"ignoring journal {self.path}: it belongs to another job")
            return
        images, uploads = doc.get("images"), doc.get("uploads")
        if isinstance(images, dict) and all(isinstance(v, str) for v in images.values()):
            self.images = images
        if isinstance(uploads, dict):
            self.uploads = {k: v for k, v in uploads.items()
                            if isinstance(v, dict) and isinstance(v.get("location"), str) and isinstance(v.get("offset"), int)}

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"version": VERSION, "job": self.key, "images": self.images, "uploads": self.uploads}
        fd, tmp = tempfile.mkstemp(prefix=".journal.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(doc, f)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    @staticmethod
    def upload_key(host: str, repo: str, digest: str) -> str:
        return f"{host}/{repo}@{digest}"

    def image_done(self, dest: str, digest: str) -> None:
        with self._lock:
            self.images[dest] = digest
            self._save()

    def upload_progress(self, key: str, location: str, offset: int) -> None:
        with self._lock:
            self.uploads[key] = {"location": location, "offset": offset}
            self._save()

    def upload_done(self, key: str) -> None:
        with self._lock:
            if self.uploads.pop(key, None) is not None:
                self._save()

    def upload(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self.uploads.get(key)

    def remove(self) -> None:
        """Forget a job that finished with nothing left to resume."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
