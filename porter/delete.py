"""Deleting over the registry API: one image (``delete``) or by a retention policy (``prune``).

Tags are resolved with the full Accept list, so the digest deleted is the one the registry
stores (without it, Distribution may answer with a converted schema-1 digest that DELETE then
cannot find). Deleting a digest removes every tag pointing at it, so porter lists those tags
first and asks for ``--force``. Deleting frees no disk: ``porter gc`` does.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from .errors import NotFoundError, PorterError, RegistryError
from .mediatypes import Manifest
from .places.registry import Registry
from .pool import pmap
from .results import DeleteResult
from .reference import Reference
from .selection import compile_re, created, newest_first


class Deleter:
    def __init__(self, registry: Registry, jobs: int = 8):
        self.reg, self.http, self.jobs = registry, registry.http, jobs

    def digest_of(self, repo: str, tag: str) -> str:
        d = self.reg.manifest_digest(repo, tag)
        if d is None:
            raise NotFoundError(f"{self.reg.host}/{repo}:{tag}: no such tag", 404)
        return d or self.reg.get_manifest(Reference(self.reg.host, repo, tag)).digest

    def tag_digests(self, repo: str) -> dict[str, str]:
        tags = list(self.reg.tags(repo))
        return dict(zip(tags, pmap(lambda t: self.digest_of(repo, t), tags, self.jobs)))

    def delete(self, repo: str, digest: str) -> None:
        what = f"{self.reg.host}/{repo}@{digest}"
        try:
            self.http.request("DELETE", f"/v2/{repo}/manifests/{digest}", f"delete {what}", ok=(202,))
        except RegistryError as e:
            if e.status == 405:
                raise RegistryError(f"delete {what}: the registry has deletion disabled (405); set "
                                    f"storage.delete.enabled: true in its config.yml (or "
                                    f"REGISTRY_STORAGE_DELETE_ENABLED=true) and restart it", 405) from None
            if isinstance(e, NotFoundError):
                raise NotFoundError(f"delete {what}: no such manifest", 404) from None
            raise

    def delete_with_attachments(self, repo: str, digest: str) -> list[str]:
        """Delete ``digest`` and what is attached to it (referrers, cosign tags, the fallback
        indexes that listed them), so no signature outlives its image. Returns the attachments'
        digests."""
        from .referrers import Finder, fallback_tag

        found = Finder(self.reg).find(Reference(self.reg.host, repo), [digest])
        self.delete(repo, digest)
        gone = []
        for subject in [digest] + [a.manifest.digest for a in found]:
            index = self.reg.manifest_digest(repo, fallback_tag(subject))
            if index:
                self.delete(repo, index)
        for a in found:
            try:
                self.delete(repo, a.manifest.digest)
                gone.append(a.manifest.digest)
            except NotFoundError:
                pass  # listed by a fallback index, but already gone
        return gone

    def created(self, repo: str, digest: str) -> datetime | None:
        return created(self.reg, Reference(self.reg.host, repo), digest)

    def children(self, repo: str, digest: str) -> set[str]:
        m: Manifest = self.reg.get_manifest(Reference(self.reg.host, repo), digest)
        return {c.digest for c in m.children}


@dataclass
class PruneRow:
    tag: str
    digest: str
    created: datetime | None
    action: str = "keep"
    reason: str = ""


def plan_prune(d: Deleter, repo: str, keep_last: int | None, older_than: float | None, tags_re: str | None,
               keep_re: str | None, now: datetime | None = None) -> list[PruneRow]:
    """Decide, per tag, keep or delete; a digest a kept tag points at (or a child of a kept
    index) is never deleted."""
    if keep_last is None and older_than is None:
        raise PorterError("say what to prune: --keep-last N and/or --older-than DURATION")
    now = now or datetime.now(timezone.utc)
    select, protect = compile_re(tags_re, "--tags"), compile_re(keep_re, "--keep")
    from .referrers import is_attachment_tag

    # Attachment tags (cosign signatures, fallback indexes) are not versions: they go with the
    # image they are attached to, and stay while it stays.
    digests = {t: dg for t, dg in d.tag_digests(repo).items() if not is_attachment_tag(t)}
    created_at = dict(zip(digests, pmap(lambda t: d.created(repo, digests[t]), list(digests), d.jobs)))
    rows = {t: PruneRow(t, dg, created_at[t]) for t, dg in digests.items()}
    for r in rows.values():
        if protect and protect.search(r.tag):
            r.reason = "protected by --keep"
        elif select and not select.search(r.tag):
            r.reason = "not matched by --tags"
    ordered, order = newest_first([r.tag for r in rows.values() if not r.reason], created_at)
    candidates = [rows[t] for t in ordered]
    for i, r in enumerate(candidates):
        if keep_last is not None and i < keep_last:
            r.reason = f"among the newest {keep_last} by {order}"
        elif older_than is not None and (r.created is None or (now - r.created).total_seconds() < older_than):
            r.reason = "no creation time" if r.created is None else "not old enough"
        else:
            r.action, r.reason = "delete", f"beyond the newest {keep_last} by {order}" if keep_last is not None \
                else "older than --older-than"
    kept = [r for r in rows.values() if r.action == "keep"]
    shielded: dict[str, str] = {r.digest: r.tag for r in kept}
    for r in kept:
        for c in d.children(repo, r.digest):
            shielded.setdefault(c, f"{r.tag} (child of its index)")
    for r in rows.values():
        if r.action == "delete" and r.digest in shielded:
            r.action, r.reason = "keep", f"same digest as kept tag {shielded[r.digest]}"
    return sorted(rows.values(), key=lambda r: (r.action, r.tag))


def delete_image(d: Deleter, ref: Reference, force: bool, dry_run: bool) -> DeleteResult:
    """Delete what ``ref`` names; other tags on the same digest need ``force`` (they go too)."""
    digest = ref.digest or d.digest_of(ref.repository, ref.tag or "latest")
    sharing = sorted(t for t, dg in d.tag_digests(ref.repository).items() if dg == digest and t != ref.tag)
    if sharing and not force and not dry_run:  # a dry run shows the plan, those tags included
        raise PorterError(f"{digest} is also tagged {', '.join(sharing)} in {ref.repository}; deleting it "
                          f"removes those tags too (use --force to do it anyway)")
    attached: list[str] = []
    if not dry_run:
        attached = d.delete_with_attachments(ref.repository, digest)
    name = f"{ref.name}@{digest}"
    return DeleteResult(deleted=name if not dry_run else "", would_delete=name if dry_run else "",
                        attachments_deleted=attached,
                        tags_removed=sorted(set(sharing) | ({ref.tag} if ref.tag else set())),
                        needs_force=bool(sharing) and not force)
