"""The job journal: what a bulk job has finished, and where its unfinished uploads stand.

After an interruption (Ctrl-C, ``kill -9``, a reboot) the same command reads it back: an image
recorded as finished costs one HEAD to confirm; a chunked upload recorded with its upload URL
and offset goes on from what the registry reports. The registry stays the source of truth:
nothing here is believed without asking it (upload URLs are checked against the registry's
origin before use).

The journal is an SQLite database (WAL mode): one small transaction per finished image or
chunk, whatever the size of the job, safe with concurrent workers. (It used to be a JSON file
rewritten whole after every image: its cost grew with the job and serialised every worker.) A
JSON journal of the earlier format is read and converted. A file at the path that is not a
porter journal is never replaced; a journal of another job is reported and started afresh.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from .errors import PorterError

VERSION = 2
MAX_JSON_JOURNAL_BYTES = 256 << 20
SQLITE_MAGIC = b"SQLite format 3\x00"
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (dest TEXT PRIMARY KEY, digest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS uploads (key TEXT PRIMARY KEY, location TEXT NOT NULL, offset INTEGER NOT NULL);
"""


def default_path(job_key: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "porter" / "jobs" / (hashlib.sha256(job_key.encode()).hexdigest()[:20] + ".db")


class Journal:
    def __init__(self, path: str | Path, job_key: str,
                 warn: Callable[[str], None] = lambda m: print(f"porter: warning: {m}", file=sys.stderr)):
        self.path, self.key = Path(path), job_key
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        old = self._existing()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(old, dict):  # the earlier JSON format: convert it in place
            self.path.unlink()
        if old != "sqlite":  # upload URLs carry upload state: readable by the owner only
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError:
            self.close()
            raise PorterError(self._refusal()) from None
        if old == "sqlite" and meta.get("version") != str(VERSION):
            self.close()
            raise PorterError(self._refusal())
        job = meta.get("job") if old == "sqlite" else old.get("job") if isinstance(old, dict) else None
        if job is not None and job != job_key:
            warn(f"ignoring journal {self.path}: it belongs to another job")
        with self._lock, self._db:
            if job != job_key:
                self._db.execute("DELETE FROM images")
                self._db.execute("DELETE FROM uploads")
            elif isinstance(old, dict):
                self._import_json(old)
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?), ('job', ?)", (str(VERSION), job_key))

    def _refusal(self) -> str:
        return f"--state {self.path}: exists and is not a porter journal; refusing to replace it"

    def _existing(self) -> dict | str | None:
        """What is at the path: None (nothing), "sqlite" (a journal to open), or the document of a
        JSON journal of the earlier format. Anything else is refused, never replaced."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):
            raise PorterError(self._refusal())
        with open(self.path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
        if head == SQLITE_MAGIC:
            return "sqlite"
        if st.st_size > MAX_JSON_JOURNAL_BYTES:
            raise PorterError(self._refusal())
        try:
            doc = json.loads(self.path.read_bytes())
        except (OSError, ValueError, RecursionError):
            raise PorterError(self._refusal()) from None
        if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("job"), str):
            raise PorterError(self._refusal())
        return doc

    def _import_json(self, doc: dict[str, Any]) -> None:
        assert self._db is not None
        images, uploads = doc.get("images"), doc.get("uploads")
        if isinstance(images, dict):
            self._db.executemany("INSERT OR REPLACE INTO images VALUES (?, ?)",
                                 [(k, v) for k, v in images.items() if isinstance(v, str)])
        if isinstance(uploads, dict):
            self._db.executemany("INSERT OR REPLACE INTO uploads VALUES (?, ?, ?)", [
                (k, v["location"], v["offset"]) for k, v in uploads.items()
                if isinstance(v, dict) and isinstance(v.get("location"), str) and isinstance(v.get("offset"), int)])

    def _write(self, sql: str, args: tuple) -> None:
        """One statement, one transaction: constant cost, whatever the size of the job."""
        with self._lock:
            assert self._db is not None
            with self._db:
                self._db.execute(sql, args)

    @staticmethod
    def upload_key(host: str, repo: str, digest: str) -> str:
        return f"{host}/{repo}@{digest}"

    def image_done(self, dest: str, digest: str) -> None:
        self._write("INSERT OR REPLACE INTO images VALUES (?, ?)", (dest, digest))

    def upload_progress(self, key: str, location: str, offset: int) -> None:
        self._write("INSERT OR REPLACE INTO uploads VALUES (?, ?, ?)", (key, location, offset))

    def upload_done(self, key: str) -> None:
        self._write("DELETE FROM uploads WHERE key = ?", (key,))

    def upload(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            assert self._db is not None
            row = self._db.execute("SELECT location, offset FROM uploads WHERE key = ?", (key,)).fetchone()
        if row is None or not isinstance(row[0], str) or not isinstance(row[1], int):
            return None
        return {"location": row[0], "offset": row[1]}

    def finished(self, dest: str) -> str | None:
        """The digest this job finished copying to ``dest``, if it did."""
        with self._lock:
            assert self._db is not None
            row = self._db.execute("SELECT digest FROM images WHERE dest = ?", (dest,)).fetchone()
        return row[0] if row and isinstance(row[0], str) else None

    @property
    def images(self) -> dict[str, str]:
        with self._lock:
            assert self._db is not None
            return dict(self._db.execute("SELECT dest, digest FROM images").fetchall())

    def close(self) -> None:
        """Fold the write-ahead log into the file and close it (it stays, for a rerun)."""
        with self._lock:
            if self._db is not None:
                try:
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error:
                    pass
                self._db.close()
                self._db = None

    def remove(self) -> None:
        """Forget a job that finished with nothing left to resume."""
        self.close()
        for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
