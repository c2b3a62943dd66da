"""``porter verify``: check an archive offline — after writing it to removable media, and again on
the far side — with no registry: every blob hashes to its digest, every manifest's references
are present (or, in a delta, held by its base), every name is valid, a split set is whole.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from .blob import BlobReader
from .delta import Base
from .errors import PorterError
from .mediatypes import Descriptor, Manifest
from .places.archive_reader import ArchiveSource
from .reference import Reference, check_tag, parse


_HEX = re.compile(r"[a-f0-9]{64}\Z")


@dataclass
class Report:
    archive: str
    images: int = 0
    blobs: int = 0
    bytes: int = 0
    seconds: float = 0.0
    delta_base: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        return self.bytes / self.seconds if self.seconds else 0.0


def _check_name(name: str | None) -> str | None:
    if name is None:
        return None
    try:
        if "/" not in name and ":" not in name:
            check_tag(name, "tag")
        else:
            parse(name)
    except PorterError as e:
        return str(e)
    return None


def verify(path: str, base: Base | None = None) -> Report:
    """Everything that can be checked without a registry; problems are collected, not raised
    (an archive that cannot be opened at all is one problem)."""
    started = time.monotonic()
    report = Report(path)
    try:
        source = ArchiveSource(path)
    except PorterError as e:
        report.problems.append(str(e))
        return report
    try:
        report.delta_base = source.delta_base
        if source.delta_base and base is not None and base.identity != source.delta_base:
            report.problems.append(f"made against base {source.delta_base}, but {base.path} is {base.identity}")
        checked: set[str] = set()
        for img in source.images():
            report.images += 1
            who = img.name or img.desc.digest
            if (why := _check_name(img.name)) is not None:
                report.problems.append(f"{who}: {why}")
            pending = [img.desc]
            while pending:
                desc = pending.pop()
                if desc.digest in checked:
                    continue
                checked.add(desc.digest)
                try:
                    m: Manifest = source.get_manifest(Reference("", "x"), desc.digest)
                except PorterError as e:
                    report.problems.append(f"{who}: {e}")
                    continue
                report.blobs += 1
                report.bytes += len(m.raw)
                pending += m.children
                for d in m.blobs:
                    if d.digest in checked:
                        continue
                    checked.add(d.digest)
                    if d.digest in source.omitted:
                        if base is not None and d.digest not in base.digests:
                            report.problems.append(f"{who}: blob {d.digest} is left out of this delta but "
                                                   f"{base.path} does not hold it")
                        continue
                    _check_blob(source, d, who, report)
        for name, size in source.stray_blobs(checked):  # blobs no manifest names: still verified
            _check_blob(source, Descriptor("", "sha256:" + name.rsplit("/", 1)[1], size), name, report) \
                if _HEX.match(name.rsplit("/", 1)[1]) else report.problems.append(f"{name}: not a sha256 blob name")
    finally:
        source.close()
    report.seconds = time.monotonic() - started
    return report


def _check_blob(source: ArchiveSource, d: Descriptor, who: str, report: Report) -> None:
    try:
        BlobReader(source, "", d).check()
        report.blobs += 1
        report.bytes += d.size
    except PorterError as e:
        report.problems.append(f"{who}: {e}")
