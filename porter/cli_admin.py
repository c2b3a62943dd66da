"""porter's inspection and maintenance commands: ls, verify, delete, prune, gc. (The copy
commands are in :mod:`porter.cli`, whose group these join.)"""
from __future__ import annotations

import json
import sys
from typing import Any

import click

from .cli import main
from .endpoints import Sources, registry_for
from .errors import PorterError
from .options import registry_options, run_guarded, storage_options, transport_options
from .output import human_size, report, say, table, write_list
from .results import PruneResult, PruneTag


@main.command(name="ls", epilog="""\b
Examples:
  porter ls 127.0.0.1:5000                     # every repository (catalog, paginated)
  porter ls 127.0.0.1:5000/team/api            # its tags: digest, platforms, size
  porter ls --storage /mnt/old-registry        # every repository in a storage directory
  porter ls --storage /mnt/old-registry team/api --check   # and verify every blob
  porter ls --blobs registry.airgap:5000 -o have.txt       # what a delta (export --since) may leave out
  porter ls --storage /var/lib/registry --blobs -o have.txt
""")
@click.argument("target", required=False, metavar="[REGISTRY[/REPOSITORY] | REPOSITORY]")
@click.option("--check", is_flag=True, help="Re-read every blob of the listed images and verify it; exit 1 if any is corrupt or missing.")
@click.option("--blobs", is_flag=True, help="List every blob digest the registry or storage holds, one per line (for export --since).")
@click.option("-o", "--output", metavar="FILE", help="With --blobs: write the list to FILE (atomically) instead of stdout.")
@storage_options
@registry_options
@run_guarded
def ls(target: str | None, check: bool, blobs: bool, output: str | None, storage: str | None, as_registry: str | None,
       creds: str | None, insecure: bool, ca_cert: str | None, jobs: int, retries: int, timeout: float, quiet: bool,
       as_json: bool) -> None:
    """List repositories, or a repository's tags with digest, platforms and size.

    The argument is a registry (REGISTRY or REGISTRY/REPOSITORY) or, with --storage, a repository path
    (none: every repository)."""
    from . import listing
    from .places.protocol import Lister
    from .reference import Reference, check_repository, check_tag, parse
    from .selection import valid

    sources = Sources(transport_options(creds, insecure, ca_cert, jobs, retries, timeout), storage, as_registry)
    try:
        if storage:
            base = parse(target, host="") if target else Reference("")
        elif target:
            base = parse(target)
        else:
            raise click.UsageError("name a registry (e.g. 127.0.0.1:5000) or use --storage DIR")
        if base.tag or base.digest:
            raise PorterError(f"{target}: ls takes a registry or repository, not a tag or digest")
        source = sources(base)
        if not isinstance(source, Lister):
            raise PorterError(f"{target}: this source cannot be listed")
        problems: list[str] = []

        def refuse(name: str, why: str) -> None:
            problems.append(f"{name}: {why}")

        if blobs:
            if base.repository:
                raise click.UsageError("--blobs lists a whole registry or storage directory: give no repository")
            digests = listing.held_blobs(source, source, base.host, jobs, refuse)
            write_list(output, [f"# porter ls --blobs {target or storage}: {len(digests)} blob(s)"] + digests)
            for p in problems:
                say(p)
            if problems:
                raise PorterError(f"{len(problems)} tag(s) could not be read: the list may be incomplete")
            return
        if output:
            raise click.UsageError("-o goes with --blobs")
        repos = [base.repository] if base.repository else valid(source.repositories(), check_repository, refuse)
        tag_counts = {r: len(valid(source.tags(r), check_tag, refuse, f"{r}:")) for r in repos} \
            if not base.repository else {}
        rows = []  # described tags: for a repository listing, or for every repository when checking
        if base.repository or check:
            rows = [row for r in repos for row in listing.list_tags(source, source, Reference(base.host, r), jobs,
                                                                   refuse)]
        problems += listing.check(source, rows, jobs) if check else [f"{r.repository}:{r.tag}: {r.error}"
                                                                     for r in rows if r.error]
    finally:
        sources.close()
    if as_json:
        doc: Any = listing.rows_json(rows) if base.repository else [
            {"repository": r, "tags": n} for r, n in tag_counts.items()]
        click.echo(json.dumps({"rows": doc, "problems": problems} if check else doc, indent=2))
    elif base.repository:
        lines = [["REPOSITORY", "TAG", "DIGEST", "PLATFORMS", "SIZE", "ARTIFACTS"]] + [
            [r.repository, r.tag, r.digest[:19], ",".join(r.platforms), human_size(r.size), str(r.artifacts or "")]
            if not r.error else [r.repository, r.tag, "ERROR", r.error, "", ""] for r in rows]
        click.echo(table(lines))
    else:
        click.echo(table([["REPOSITORY", "TAGS"]] + [[r, f"{n} tag{'' if n == 1 else 's'}"] for r, n in tag_counts.items()]))
    for p in problems:
        say(p)
    if check:
        click.echo(f"checked {len(rows)} tag(s): {len(problems)} problem(s)", err=True)
    if problems:
        sys.exit(1)


@main.command(epilog="""\b
Examples:
  porter verify update.tar                         # every blob hashed, every reference present
  porter verify update.tar.000 --base have.txt     # a split delta, against what the far side holds
  porter verify images.tar.zst --json
""")
@click.argument("archives", nargs=-1, required=True, metavar="ARCHIVE...")
@click.option("--base", metavar="BASE", help="For a delta: the base archive or digest list it was made against.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report per archive.")
@click.option("-q", "--quiet", is_flag=True, help="Print only problems.")
@run_guarded
def verify(archives: tuple[str, ...], base: str | None, as_json: bool, quiet: bool) -> None:
    """Check archives offline, with no registry: every blob hashes to its digest, every manifest's
    references are present (a delta's: held by its base), every name is valid, a split set is
    whole (SHA256SUMS). Exit 1 with the list of problems. Run it after writing to removable media
    and again on the far side."""
    from dataclasses import asdict

    from .delta import load_base
    from .places.volumes import set_of
    from .verify import verify as check

    held = load_base(base) if base else None
    sets: dict[str, str] = {}
    for p in archives:  # the volumes of a set are one archive
        sets.setdefault(set_of(p), p)
    reports = [check(p, held) for p in sets.values()]
    if as_json:
        click.echo(json.dumps([dict(asdict(r), throughput=round(r.throughput)) for r in reports], indent=2))
    for r in reports:
        for problem in r.problems:
            say(f"{r.archive}: {problem}")
        if not as_json and not quiet and not r.problems:
            click.echo(f"{r.archive}: ok — {r.images} image(s), {r.blobs} blobs, {human_size(r.bytes)} verified in "
                       f"{r.seconds:.2f}s ({human_size(r.throughput)}/s)"
                       + (f"; a delta against base {r.delta_base}" if r.delta_base else ""))
    if any(r.problems for r in reports):
        click.echo(f"porter: {sum(len(r.problems) for r in reports)} problem(s)", err=True)
        sys.exit(1)


@main.command(epilog="""\b
Examples:
  porter delete 127.0.0.1:5000/team/api:old-tag            # by tag, resolved to the stored digest
  porter delete 127.0.0.1:5000/team/api@sha256:…
  porter delete 127.0.0.1:5000/team/api:1.0 --dry-run
""")
@click.argument("image")
@click.option("-f", "--force", is_flag=True, help="Delete even when other tags point at the same digest (they go too).")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted, delete nothing.")
@registry_options
@run_guarded
def delete(image: str, force: bool, dry_run: bool, creds: str | None, insecure: bool, ca_cert: str | None,
           jobs: int, retries: int, timeout: float, quiet: bool, as_json: bool) -> None:
    """Delete an image's manifest from a registry (by tag or digest). Frees no disk by itself:
    run `porter gc` on the registry's storage afterwards."""
    from .delete import Deleter, delete_image

    ref, reg = registry_for(image, transport_options(creds, insecure, ca_cert, jobs, retries, timeout))
    try:
        summary = delete_image(Deleter(reg, jobs), ref, force, dry_run)
    finally:
        reg.close()
    report(summary, as_json, quiet, f"{'would delete' if dry_run else 'deleted'} {summary.deleted or summary.would_delete}"
           + (f" (tags: {', '.join(summary.tags_removed)})" if summary.tags_removed else "")
           + ("; other tags share the digest, so the real run needs --force" if summary.needs_force else ""))


@main.command(epilog="""\b
Examples:
  porter prune 127.0.0.1:5000/ci/build --keep-last 10 --older-than 30d --dry-run
  porter prune 127.0.0.1:5000/team/api --tags '^pr-' --older-than 14d --keep '^release-'
""")
@click.argument("repository")
@click.option("--keep-last", type=click.IntRange(0), help="Keep the newest N tags (by semver where every tag parses, else image creation time).")
@click.option("--older-than", metavar="DURATION", help="Delete only tags older than this (30d, 12h, 2w).")
@click.option("--tags", "tags_re", metavar="REGEX", help="Only consider tags matching this.")
@click.option("--keep", "keep_re", metavar="REGEX", help="Never delete tags matching this.")
@click.option("--dry-run", is_flag=True, help="Print the plan, delete nothing.")
@registry_options
@run_guarded
def prune(repository: str, keep_last: int | None, older_than: str | None, tags_re: str | None, keep_re: str | None,
          dry_run: bool, creds: str | None, insecure: bool, ca_cert: str | None, jobs: int, retries: int,
          timeout: float, quiet: bool, as_json: bool) -> None:
    """Delete a repository's tags by a retention policy. Never deletes a digest that a kept tag
    points at, nor a child of a kept index. Prints the plan first."""
    from .delete import Deleter, plan_prune
    from .gc import parse_duration

    ref, reg = registry_for(repository, transport_options(creds, insecure, ca_cert, jobs, retries, timeout))
    try:
        d = Deleter(reg, jobs)
        rows = plan_prune(d, ref.repository, keep_last, parse_duration(older_than) if older_than else None,
                          tags_re, keep_re)
        doomed = sorted({r.digest for r in rows if r.action == "delete"})
        if not as_json:
            click.echo(table([["TAG", "DIGEST", "CREATED", "ACTION", "WHY"]] + [
                [r.tag, r.digest[:19], r.created.strftime("%Y-%m-%d %H:%M") if r.created else "?", r.action, r.reason]
                for r in rows]))
        if not dry_run:
            for dg in doomed:
                d.delete_with_attachments(ref.repository, dg)
    finally:
        reg.close()
    summary = PruneResult(ref.name, dry_run, doomed, [PruneTag(r.tag, r.digest, r.action, r.reason) for r in rows])
    report(summary, as_json, quiet, f"{'would delete' if dry_run else 'deleted'} {len(doomed)} manifest(s), "
           f"{sum(r.action == 'delete' for r in rows)} tag(s); run porter gc on the storage to free the disk")


@main.command(epilog="""\b
Examples:
  porter gc /var/lib/registry --dry-run            # what an offline GC would free
  porter gc /var/lib/registry --delete-untagged    # also untagged manifests (multi-arch children kept)
  porter gc /var/lib/registry --json
""")
@click.argument("storage", metavar="DIR")
@click.option("--dry-run", is_flag=True, help="Report what would be removed, remove nothing.")
@click.option("--delete-untagged", is_flag=True, help="Also remove manifests no tag points at (children of tagged indexes are kept).")
@click.option("--upload-age", default="7d", show_default=True, metavar="DURATION", help="Remove unfinished uploads older than this (30d, 12h, 90m).")
@click.option("-f", "--force", is_flag=True, help="Run even though uploads look active (the registry must be stopped or read-only).")
@click.option("--json", "as_json", is_flag=True, help="Print {blobs, manifests, bytes, uploads, problems} as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No summary line (warnings still go to stderr).")
@run_guarded
def gc(storage: str, dry_run: bool, delete_untagged: bool, upload_age: str, force: bool, as_json: bool,
       quiet: bool) -> None:
    """Garbage-collect a registry's storage directory offline: remove every blob no remaining
    manifest references. Stop the registry (or make it read-only) first."""
    gc_report(storage, dry_run, delete_untagged, upload_age, force, as_json, quiet)


def gc_report(storage: str, dry_run: bool, delete_untagged: bool, upload_age: str, force: bool, as_json: bool,
              quiet: bool) -> None:
    from .gc import collect

    plan = collect(storage, dry_run=dry_run, delete_untagged=delete_untagged, upload_age=upload_age, force=force)
    for p in plan.problems:
        say(f"warning: {p}")
    verb = "would remove" if dry_run else "removed"
    report(plan.as_json(), as_json, quiet,
           f"{verb} {len(plan.blobs)} blob(s) ({human_size(plan.bytes)}), {len(plan.manifests)} untagged "
           f"manifest(s), {len(plan.uploads)} stale upload(s); {len(plan.marked)} blobs in use")
