"""TOML job files: ``[settings]`` and one table per entry — ``[[mirror]]`` (source → destination)
for ``porter mirror --config``, ``[[export]]`` (sources into one archive) for ``porter export
--config``. Every value is typed and range-checked exactly like its command-line flag, and every
error names the file, the line and the key (exit 2).
"""
from __future__ import annotations

import os
import re
import stat
import tomllib
from typing import Any

import click

from .auth import Credentials
from .bulk import Entry
from .errors import PorterError
from .selection import Filters


COMMON_ENTRY_KEYS = {"source", "storage", "include", "exclude", "tags", "latest", "platform", "source_credentials"}
COMMON_SETTINGS = {"jobs", "insecure", "ca_cert", "retries", "timeout"}
ENTRY_KEYS = {"mirror": COMMON_ENTRY_KEYS | {"destination", "destination_credentials"},
              "export": COMMON_ENTRY_KEYS - {"platform"}}  # one archive: one platform, a setting
SETTINGS_KEYS = {"mirror": COMMON_SETTINGS | {"chunk_size", "state", "shards"},
                 "export": COMMON_SETTINGS | {"output", "since", "split_size", "all_platforms", "platform"}}


MAX_SECRET_BYTES = 4096


class JobFileError(PorterError):
    exit_code = 2


def _line_of(text: str, key: str, nth_table: int | None, kind: str = "mirror") -> int:
    """Best line number for ``key`` (in the nth [[kind]] table when given): tomllib gives none."""
    lines = text.splitlines()
    start, seen = 0, -1
    if nth_table is not None:
        for i, line in enumerate(lines):
            if re.match(rf"\s*\[\[\s*{kind}\s*\]\]", line):
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
    if key in ("insecure", "all_platforms"):
        if not isinstance(value, bool):
            raise bad(f"must be true or false (a TOML boolean, unquoted), not {value!r}")
        return value
    if key in ("chunk_size", "split_size"):
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise bad("must be a size such as \"64MiB\"")
        try:
            return parse_size(str(value), key)
        except click.BadParameter as e:
            raise bad(e.format_message()) from None
    if not isinstance(value, str) or not value:  # state, ca_cert, output, since, platform
        raise bad("must be a non-empty string")
    if key == "ca_cert" and not os.path.isfile(value):
        raise bad(f"no such file {value!r}")
    return value


def load_job_file(path: str, kind: str = "mirror") -> tuple[list[Entry], dict[str, Any]]:
    """Parse a TOML job file into ``[[kind]]`` entries and settings; errors name the file, line
    and key."""
    try:
        text = open(path, encoding="utf-8").read()
    except OSError as e:
        raise JobFileError(f"{path}: {e.strerror}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise JobFileError(f"{path}: {e}") from None
    settings = doc.get("settings", {})
    for k in set(doc) - {"settings", kind}:
        raise JobFileError(f"{path}:{_line_of(text, k, None)}: unknown table or key {k!r} (expected [settings] "
                           f"and [[{kind}]])")
    if not isinstance(settings, dict):
        raise JobFileError(f"{path}: [settings] must be a table")
    for k in settings:
        if k not in SETTINGS_KEYS[kind]:
            raise JobFileError(f"{path}:{_line_of(text, k, None)}: unknown setting {k!r} "
                               f"(known: {', '.join(sorted(SETTINGS_KEYS[kind]))})")
    settings = {k: _setting(path, text, k, v) for k, v in settings.items()}
    raw_entries = doc.get(kind)
    if not isinstance(raw_entries, list) or not raw_entries or not all(isinstance(r, dict) for r in raw_entries):
        raise JobFileError(f"{path}: no [[{kind}]] entries")
    entries = []
    for n, raw in enumerate(raw_entries):
        def where(key: str) -> str:
            return f"{path}:{_line_of(text, key, n, kind)}: [[{kind}]] #{n + 1} {key}"

        for k in raw:
            if k not in ENTRY_KEYS[kind]:
                raise JobFileError(f"{where(k)}: unknown key (known: {', '.join(sorted(ENTRY_KEYS[kind]))})")
        for k in ("source", "destination") if kind == "mirror" else ("source",):
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
        entries.append(Entry(raw["source"], raw.get("destination", ""), filters, raw.get("platform"), raw.get("storage"),
                             credentials_ref(raw.get("source_credentials"), where("source_credentials")),
                             credentials_ref(raw.get("destination_credentials"), where("destination_credentials"))))
    return entries, settings
