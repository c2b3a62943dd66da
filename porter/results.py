"""What each command reports: typed results. ``--json`` is their serialisation (:func:`to_json`),
and the terminal line is made from the same objects (:mod:`porter.output`)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any


def optional(default: Any = None) -> Any:
    """A field left out of the JSON while it is empty (None, "", [] or {})."""
    return field(default=default, metadata={"optional": True}) if not isinstance(default, (list, dict)) \
        else field(default_factory=type(default), metadata={"optional": True})


def to_json(obj: Any) -> Any:
    """A result as plain JSON values: dataclass fields by name (``optional`` ones only when set)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for f in fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("optional") and value in (None, "", [], {}, False):
                continue
            out[f.metadata.get("key", f.name)] = to_json(value)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_json(x) for x in obj]
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    return obj


@dataclass
class BlobCounts:
    """How each distinct blob reached its destination."""

    uploaded: int = 0  # its bytes were sent (or written into the archive)
    mounted: int = 0  # linked from another repository of the destination
    skipped: int = 0  # the destination had it


@dataclass
class Copied:
    """One image of a push (import or mirror): where from, where to, and how it ended."""

    source: str
    destination: str
    state: str  # "copied", "present" or "failed"
    digest: str = optional()  # unknown only for an image that could not be read
    mediaType: str = optional()
    error: str = optional()
    source_digest: str = optional()  # an index was narrowed to one platform: the index's digest
    platform: str = optional()
    attached_to: str = optional()  # an attachment (signature, SBOM): the digest of its image


@dataclass
class PushResult:
    """``porter import`` / ``porter mirror`` into a registry."""

    images: list[Copied]
    copied: int
    present: int
    failed: int
    artifacts: int
    blobs: BlobCounts
    bytes_sent: int
    bytes_skipped: int
    seconds: float


@dataclass
class Loaded:
    reference: str
    digest: str | None


@dataclass
class LoadResult:
    """An import or mirror into the docker engine."""

    loaded: list[str]
    images: list[Loaded]
    blobs: int
    bytes: int
    seconds: float


@dataclass
class Planned:
    """One image of a dry run."""

    source: str
    destination: str
    digest: str
    state: str  # "copy" or "present"
    bytes: int
    attached_to: str = optional()


@dataclass
class PreviewResult:
    """``mirror --dry-run``: what would move, and what is there already."""

    images: list[Planned]
    bytes_to_send: int
    bytes_present: int
    failed: list[Copied] = field(default_factory=list)


@dataclass
class Exported:
    """One image written into an archive."""

    reference: str
    digest: str
    mediaType: str
    loads: str | None  # what docker load gets (None: every platform kept, none chosen)
    attached_to: str = optional()
    platform: str = optional()
    archived_digest: str = optional()  # an index narrowed to one platform: what the archive holds
    zstd_layers: bool = optional(False)


@dataclass
class Delta:
    base: str
    base_path: str
    omitted: int
    omitted_bytes: int


@dataclass
class ExportResult:
    """``porter export``."""

    output: str
    images: list[Exported]
    blobs: int
    bytes: int
    archive_bytes: int
    seconds: float
    delta: Delta | None = optional()
    volumes: list[str] = optional([])
    refused: list[str] = field(default_factory=list)


@dataclass
class DeleteResult:
    """``porter delete``: what went (or, with --dry-run, would go)."""

    deleted: str = optional()  # name@digest
    would_delete: str = optional()  # the same, in a dry run
    attachments_deleted: list[str] = field(default_factory=list)
    tags_removed: list[str] = field(default_factory=list)
    needs_force: bool = False


@dataclass
class PruneTag:
    tag: str
    digest: str
    action: str  # "keep" or "delete"
    reason: str


@dataclass
class PruneResult:
    """``porter prune``: the plan, and the digests deleted (none in a dry run)."""

    repository: str
    dry_run: bool
    deleted: list[str]
    tags: list[PruneTag]
