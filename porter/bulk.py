"""Bulk jobs: many images from a repository, a registry or a storage directory, in one run.

An entry is a source, a destination and its filters; a job is one or more entries (from the
command line, or a TOML job file) run through one bounded pool. Each source reference is
expanded into images, each image resolved on its own (a failure marks that image, not the job).
"""
from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import click

from .auth import Credentials
from .engine import Image, resolve
from .errors import PorterError
from .mediatypes import Platform
from .places.base import Lister, Source
from .reference import Reference
from .selection import Filters, expand


@dataclass
class Entry:
    """One source → destination pair with its own filters and credentials."""

    source: str
    destination: str
    filters: Filters = field(default_factory=Filters)
    platform: str | None = None
    storage: str | None = None
    src_creds: Credentials | None = None
    dest_creds: Credentials | None = None

    def key(self) -> dict[str, Any]:
        f = self.filters
        return {"source": self.source, "destination": self.destination, "storage": self.storage,
                "include": f.include, "exclude": f.exclude, "tags": f.tags, "latest": f.latest,
                "shard": f.shard, "platform": self.platform}


def job_key(entries: list[Entry]) -> str:
    return json.dumps([e.key() for e in entries], sort_keys=True)


@dataclass
class Planned:
    """An expanded image: resolved (``image``) or failed before it could be (``error``)."""

    ref: Reference
    dest: Reference
    source: Source
    image: Image | None = None
    error: str = ""
    pusher: Any = None  # set by the caller: where this image's destination registry is written


def plan(entry_ref: Reference, dest: Reference, source: Source, lister: Lister | None, filters: Filters,
         platform: Platform | None, jobs: int, note: Callable[[str], None] = lambda m: None) -> list[Planned]:
    """Expand and resolve one entry. The destination keeps repository paths for a whole-registry
    source (under dest's prefix) or a bare-registry destination."""
    from .push import dest_for

    if not (entry_ref.tag or entry_ref.digest) and (dest.tag or dest.digest):
        raise PorterError(f"{dest}: a repository or registry source keeps its tags; give the destination "
                          f"without a tag")
    refused: list[Planned] = []

    def refuse(name: str, why: str) -> None:
        refused.append(Planned(Reference(entry_ref.host, name), dest, source, error=why))

    refs = expand(source, lister, entry_ref, filters, jobs, refuse)
    if len(refs) > 1:
        note(f"resolving {len(refs)} images from {entry_ref or source.name}")
    keep_path = entry_ref.is_registry or dest.is_registry or not entry_ref.repository

    def one(ref: Reference) -> Planned:
        p = Planned(ref, dest_for(ref, dest, keep_path=keep_path), source)
        try:
            p.image = resolve(source, ref, platform, all_platforms=platform is None, strict=True)
            p.dest = dest_for(p.image.ref, dest, keep_path=keep_path)
        except PorterError as e:
            p.error = str(e)
        return p

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return refused + list(pool.map(one, refs))


# --- job files ---------------------------------------------------------------------------------
ENTRY_KEYS = {"source", "destination", "storage", "include", "exclude", "tags", "latest", "platform",
              "source_credentials", "destination_credentials"}
SETTINGS_KEYS = {"jobs", "chunk_size", "state", "insecure", "ca_cert", "retries", "timeout", "shards"}


MAX_SECRET_BYTES = 4096


class JobFileError(PorterError):
    exit_code = 2


def _line_of(text: str, key: str, nth_table: int | None) -> int:
    """Best line number for ``key`` (in the nth [[mirror]] table when given): tomllib gives none."""
    lines = text.splitlines()
    start, seen = 0, -1
    if nth_table is not None:
        for i, line in enumerate(lines):
            if re.match(r"\s*\[\[\s*mirror\s*\]\]", line):
                seen += 1
                if seen == nth_table:
                    start = i
                    break
    for i in range(start, len(lines)):
        if re.match(rf"\s*{re.escape(key)}\s*=", lines[i]):
            return i + 1
    return start + 1


def credentials_ref(value: Any, where: str) -> Credentials | None:
    """``env:NAME`` reads NAME_USERNAME/NAME_PASSWORD; ``file:PATH`` reads USER:PASS from a file;
    ``docker-config`` (the default) leaves it to docker's config.json."""
    if value in (None, "docker-config"):
        return None
    if not isinstance(value, str):
        raise JobFileError(f"{where}: credentials must be 'env:NAME', 'file:PATH' or 'docker-config'")
    kind, _, arg = value.partition(":")
    if kind == "env" and arg:
        user = os.environ.get(f"{arg}_USERNAME")
        if user is None:
            raise JobFileError(f"{where}: environment variable {arg}_USERNAME is not set")
        return Credentials(user, os.environ.get(f"{arg}_PASSWORD", ""))
    if kind == "file" and arg:
        return Credentials.parse(read_secret(arg, where))
    raise JobFileError(f"{where}: credentials must be 'env:NAME', 'file:PATH' or 'docker-config', not {value!r}")


def read_secret(path: str, where: str) -> str:
    """The one ``user:pass`` line of a small regular file (a mounted secret may be a link to one)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise JobFileError(f"{where}: cannot read credentials file {path}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SECRET_BYTES:
            raise JobFileError(f"{where}: credentials file {path} is not a small regular file")
        data = f.read(MAX_SECRET_BYTES + 1)
    try:
        lines = data.decode("utf-8").strip().splitlines()
    except UnicodeDecodeError:
        lines = []
    if len(lines) != 1 or ":" not in lines[0]:
        raise JobFileError(f"{where}: credentials file {path} must hold one USER:PASSWORD line")
    return lines[0]


def _setting(path: str, text: str, key: str, value: Any) -> Any:
    """A [settings] value, typed and range-checked exactly as its command-line flag is."""
    from .options import parse_size

    def bad(why: str) -> JobFileError:
        return JobFileError(f"{path}:{_line_of(text, key, None)}: [settings] {key}: {why}")

    def number(kind: type, lo: float, hi: float) -> Any:
        ok = isinstance(value, int) or (kind is float and isinstance(value, float))
        if isinstance(value, bool) or not ok or not lo <= value <= hi:
            raise bad(f"must be {'an integer' if kind is int else 'a number'} from {lo:g} to {hi:g}, "
                      f"not {value!r}")
        return kind(value)

    if key == "jobs":
        return number(int, 1, 64)
    if key == "retries":
        return number(int, 0, 20)
    if key == "timeout":
        return number(float, 1, 3600)
    if key == "shards":
        return number(int, 1, 10**6)
    if key == "insecure":
        if not isinstance(value, bool):
            raise bad(f"must be true or false (a TOML boolean, unquoted), not {value!r}")
        return value
    if key == "chunk_size":
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise bad("must be a size such as \"64MiB\"")
        try:
            return parse_size(str(value))
        except click.BadParameter as e:
            raise bad(e.format_message()) from None
    if not isinstance(value, str) or not value:  # state, ca_cert
        raise bad("must be a non-empty string")
    if key == "ca_cert" and not os.path.isfile(value):
        raise bad(f"no such file {value!r}")
    return value


def load_job_file(path: str) -> tuple[list[Entry], dict[str, Any]]:
    """Parse a TOML job file into entries and settings; errors name the file, line and key."""
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as e:
        raise JobFileError(f"{path}: {e.strerror}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise JobFileError(f"{path}: {e}") from None
    settings = doc.get("settings", {})
    for k in set(doc) - {"settings", "mirror"}:
        raise JobFileError(f"{path}:{_line_of(text, k, None)}: unknown table or key {k!r} (expected [settings] and [[mirror]])")
    if not isinstance(settings, dict):
        raise JobFileError(f"{path}: [settings] must be a table")
    for k in settings:
        if k not in SETTINGS_KEYS:
            raise JobFileError(f"{path}:{_line_of(text, k, None)}: unknown setting {k!r} "
                               f"(known: {', '.join(sorted(SETTINGS_KEYS))})")
    settings = {k: _setting(path, text, k, v) for k, v in settings.items()}
    raw_entries = doc.get("mirror")
    if not isinstance(raw_entries, list) or not raw_entries or not all(isinstance(r, dict) for r in raw_entries):
        raise JobFileError(f"{path}: no [[mirror]] entries")
    entries = []
    for n, raw in enumerate(raw_entries):
        def where(key: str) -> str:
            return f"{path}:{_line_of(text, key, n)}: [[mirror]] #{n + 1} {key}"

        for k in raw:
            if k not in ENTRY_KEYS:
                raise JobFileError(f"{where(k)}: unknown key (known: {', '.join(sorted(ENTRY_KEYS))})")
        for k in ("source", "destination"):
            if not isinstance(raw.get(k), str) or not raw[k]:
                raise JobFileError(f"{where(k)}: required, a string")
        for k, typ in (("include", list), ("exclude", list), ("tags", str), ("latest", int), ("platform", str),
                       ("storage", str)):
            if k in raw and not isinstance(raw[k], typ) or (typ is list and k in raw and
                                                         not all(isinstance(x, str) for x in raw[k])):
                raise JobFileError(f"{where(k)}: must be {'a list of strings' if typ is list else typ.__name__}")
        if isinstance(raw.get("latest"), bool) or isinstance(raw.get("latest"), int) and raw["latest"] < 1:
            raise JobFileError(f"{where('latest')}: must be at least 1")
        try:
            filters = Filters(raw.get("include"), raw.get("exclude"), raw.get("tags"), raw.get("latest"))
        except PorterError as err:
            bad = "tags" if "--tags" in str(err) else "include" if "--include" in str(err) else "exclude"
            raise JobFileError(f"{where(bad)}: {err}") from None
        entries.append(Entry(raw["source"], raw["destination"], filters, raw.get("platform"), raw.get("storage"),
                             credentials_ref(raw.get("source_credentials"), where("source_credentials")),
                             credentials_ref(raw.get("destination_credentials"), where("destination_credentials"))))
    return entries, settings
