"""porter's command line: parse arguments, build places, call the jobs, print a summary."""
from __future__ import annotations

import json
import sys
from typing import Any

import click

from . import __version__
from .endpoints import DAEMON, Sources, registry_for
from .errors import PorterError
from .options import (attachments, bulk_options, dest_options, make_filters, parse_size, push_options,
                      referrer_options, registry_options, run_guarded, settings_picker, storage_options,
                      transport_options)
from .output import human_size, report, report_load, report_preview, report_push, say, table


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="porter")
def main() -> None:
    """porter moves container images: registry or raw registry storage → docker-loadable archive,
    archive → registry, registry → registry."""


@main.command(epilog="""\b
Examples:
  porter export 127.0.0.1:5000/team/api:1.4 127.0.0.1:5000/team/web:2.0 -o images.tar
  docker load -i images.tar
  porter export registry.example.com/app:1 -o app.tar.zst --platform linux/arm64 --creds user:pass
  porter export 127.0.0.1:5000/app@sha256:… --all-platforms -o - | ssh airgap 'cat > app.tar'
  porter export --storage /var/lib/registry team/api:1.4 team/web:2.0 -o images.tar
  porter export 127.0.0.1:5000/team/api --tags 'v1\\..*' -o team-api-v1.tar     # every matching tag
  porter export 127.0.0.1:5000/team/api -o update.tar --since full.tar            # delta: new layers only
  porter export 127.0.0.1:5000/team/api -o update.tar --since have.txt --split-size 4G  # FAT32 volumes
""")
@click.argument("images", nargs=-1, metavar="IMAGE...")
@click.option("-o", "--output", help="Archive to write: x.tar, x.tar.zst (zstd), or - for stdout.")
@click.option("--config", "job_file", type=click.Path(dir_okay=False), help="A TOML job file of [[export]] entries and [settings] (see README); a flag given here wins over its settings.")
@click.option("--platform", "platform_", metavar="OS/ARCH[/VARIANT]", help="Platform docker load gets from a multi-platform image [default: this host's].")
@click.option("--all-platforms", is_flag=True, help="Also keep the whole index and every platform's blobs in the OCI part.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--since", metavar="BASE", help="Write a delta: leave out the layers BASE holds — an earlier porter archive "
              "the far side imported, or a digest list from `porter ls --blobs` there.")
@click.option("--split-size", metavar="SIZE", help="Write OUTPUT.000, .001, … none larger than SIZE (4G, 700M), plus SHA256SUMS.")
@bulk_options
@referrer_options
@storage_options
@registry_options
@run_guarded
def export(images: tuple[str, ...], output: str | None, job_file: str | None, platform_: str | None,
           all_platforms: bool, force: bool, since: str | None, split_size: str | None,
           no_referrers: bool, referrer_types: tuple[str, ...],
           include: tuple[str, ...], exclude: tuple[str, ...], tags_re: str | None, latest: int | None,
           shard: str | None, shards: int | None, storage: str | None, as_registry: str | None, creds: str | None, insecure: bool, ca_cert: str | None, jobs: int, retries: int, timeout: float,
           quiet: bool, as_json: bool) -> None:
    """Export IMAGE... into one archive that `docker load -i` takes and that is also an OCI layout.

    IMAGE may also be a repository (every tag, as docker save does) or a whole registry, narrowed
    with --include/--exclude/--tags/--latest. Layers are stored exactly as the registry serves them
    (not decompressed) and the original manifest bytes are kept, so importing the archive
    reproduces the same digests."""
    from . import progress
    from .bulk import Entry
    from .delta import load_base
    from .export import export as do_export, expand_entries
    from .jobfile import load_job_file
    from .mediatypes import Platform

    if job_file:
        if images:
            raise click.UsageError("give either IMAGE... or --config, not both")
        entries, settings = load_job_file(job_file, "export")
        pick = settings_picker(settings)
        output, since, all_platforms = pick("output", output, "output"), pick("since", since, "since"), \
            pick("all_platforms", all_platforms, "all_platforms")
        platform_ = pick("platform_", platform_, "platform")
        split_size = str(pick("split_size", split_size, "split_size") or "") or None
        jobs, retries, timeout = pick("jobs", jobs, "jobs"), pick("retries", retries, "retries"), \
            pick("timeout", timeout, "timeout")
        insecure, ca_cert = pick("insecure", insecure, "insecure"), pick("ca_cert", ca_cert, "ca_cert")
        extra = make_filters((), (), None, None, shard, shards).shard
        for e in entries:
            e.filters.shard = extra
    elif not images:
        raise click.UsageError("give IMAGE... or --config FILE")
    else:
        filters = make_filters(include, exclude, tags_re, latest, shard, shards)
        entries = [Entry(text, "", filters, None, storage) for text in images]
    if not output:
        raise click.UsageError("give -o/--output FILE (or output in the job file)")
    for e in entries:  # attachment tags travel with their images, not as images of their own
        e.filters.skip_attachment_tags = not no_referrers
    volume = parse_size(split_size, "--split-size") if split_size else None
    base = load_base(since) if since else None
    plat = Platform.parse(platform_) if platform_ else Platform.host()
    refused: list[str] = []

    def refuse(name: str, why: str) -> None:
        refused.append(name)
        say(f"refused: {name}: {why}")

    opts = transport_options(creds, insecure, ca_cert, jobs, retries, timeout)
    refs, source_for, close = expand_entries(entries, opts, as_registry, jobs, refuse)
    try:
        if not refs:
            raise PorterError("no image matched: nothing to export")
        summary = do_export(refs, source_for, output, platform=plat, all_platforms=all_platforms, jobs=jobs,
                            force=force, progress=progress.make(quiet), strict=platform_ is not None,
                            since=base, split_size=volume, attach=attachments(no_referrers, referrer_types))
    finally:
        close()
    summary["refused"] = refused
    for img in summary["images"]:
        if "archived_digest" in img:
            say(f"note: {img['reference']} is a multi-platform image; the archive keeps only {img['platform']} "
                f"({img['archived_digest']}), so an import pushes that digest, not the index's {img['digest']} "
                f"(--all-platforms keeps every platform and the index digest)")
        if img.get("zstd_layers"):
            say(f"warning: {img['reference']} has zstd-compressed layers: docker load before Docker 23 "
                f"(Debian's docker.io 20.10 among them) cannot load it")
    delta = summary.get("delta")
    written = f"{len(summary['volumes'])} volume(s) {output}.000…" if volume else output
    report(summary, as_json, quiet, f"wrote {written}: {len(summary['images'])} image(s), {summary['blobs']} blobs, "
           f"{human_size(summary['archive_bytes'])} in {summary['seconds']:.2f}s"
           + (f"; a delta: {delta['omitted']} layer(s) ({human_size(delta['omitted_bytes'])}) left to the base"
              if delta else "")
           + (f"; {len(refused)} listed name(s) refused" if refused else ""))
    if refused:
        sys.exit(1)


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
    from .places.base import Lister
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


@main.command(name="import", epilog="""\b
Examples:
  porter import images.tar registry.internal:5000               # every image, same repository paths
  porter import images.tar.zst registry.internal:5000/mirror    # under a prefix
  porter import images.tar 127.0.0.1:5000 --platform linux/amd64 --json
  porter import saved.tar.gz 127.0.0.1:5000                     # docker save | gzip, skopeo/podman archives
  porter import ./oci-layout 127.0.0.1:5000/team/app            # a layout directory; tag-only names
  porter import one.tar 127.0.0.1:5000/team/app:1.0             # a one-image archive, named here
  porter import images.tar docker-daemon:                       # like docker load, via the SDK
""")
@click.argument("paths", nargs=-1, required=True, metavar="ARCHIVE... DESTINATION")
@push_options
@referrer_options
@registry_options
@run_guarded
def import_(paths: tuple[str, ...], platform_: str | None, chunk_size: str, dest_creds: str | None,
            no_referrers: bool, referrer_types: tuple[str, ...],
            creds: str | None, insecure: bool, ca_cert: str | None, jobs: int, retries: int, timeout: float,
            quiet: bool, as_json: bool) -> None:
    """Push every image of an archive into a registry, digests unchanged.

    ARCHIVE is a tar, .tar.gz or .tar.zst, or an OCI layout directory: porter export, docker save,
    skopeo and podman docker-archive/oci-archive, ctr images export, umoci. DESTINATION is a
    registry, a prefix, a repository (for images named only by a tag), or REPOSITORY:TAG for a
    one-image archive. Nothing is pushed under a tag until every blob of the archive verified; a
    tampered or incomplete archive is refused."""
    from .mediatypes import Platform
    from .migrate import import_archive

    if len(paths) < 2:
        raise click.UsageError("give ARCHIVE (or the volumes of a split set) and DESTINATION")
    archive, destination = one_archive(paths[:-1]), paths[-1]
    opts = dest_options(transport_options(creds, insecure, ca_cert, jobs, retries, timeout), dest_creds)
    kind, summary = import_archive(archive, destination, opts, parse_size(chunk_size), attachments(no_referrers, referrer_types),
                                   Platform.parse(platform_) if platform_ else None, jobs, quiet)
    (report_load if kind == "load" else report_push)(summary, quiet, as_json)
    if summary.get("failed"):
        sys.exit(1)


def write_list(output: str | None, lines: list[str]) -> None:
    """Lines to stdout, or to ``output`` atomically (a temp file beside it, then renamed)."""
    import os
    import tempfile

    text = "\n".join(lines) + "\n"
    if not output:
        click.echo(text, nl=False)
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(output)}.", dir=os.path.dirname(output) or ".")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, output)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def one_archive(paths: tuple[str, ...]) -> str:
    """The archive several paths name: one path, or the volumes of one split set (any order)."""
    import os

    from .places.volumes import is_volume, set_of

    for p in paths:
        if not os.path.exists(p):
            raise click.BadParameter(f"{p!r} does not exist", param_hint="ARCHIVE")
    if len(paths) == 1:
        return paths[0]
    if len({set_of(p) for p in paths}) != 1 or not all(is_volume(p) for p in paths):
        raise click.UsageError("several ARCHIVEs must be the volumes of one split set (NAME.000, NAME.001, …)")
    return min(paths)


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
  porter mirror 127.0.0.1:5000/team/api:1.4 registry.internal:5000/team/api        # keeps the tag
  porter mirror 127.0.0.1:5000/team/api@sha256:… registry.internal:5000/team/api:stable
  porter mirror 127.0.0.1:5000/team/api registry.internal:5000/team/api            # every tag
  porter mirror 127.0.0.1:5000 registry.internal:5000 --include 'team/.*' --exclude '.*/tmp-.*' \\
        --tags '^v?\\d+\\.\\d+\\.\\d+$' --latest 5                          # a whole catalog, filtered
  porter mirror --config migration.toml                                          # a job file
  porter mirror 127.0.0.1:5000 registry.internal:5000 --shard 2/8                # one worker of eight
  porter mirror --storage /var/lib/registry "" registry.internal:5000            # all of a storage dir
  porter mirror docker-daemon:myapp:dev registry.internal:5000/myapp:dev         # from the local engine
  porter mirror 127.0.0.1:5000/team/api:1.4 docker-daemon:                       # into it, like docker pull
  porter mirror 127.0.0.1:5000/team/api:1.4 registry.internal:5000/team/api --no-referrers   # no signatures
""")
@click.argument("source_ref", metavar="SOURCE", required=False)
@click.argument("destination", metavar="DESTINATION", required=False)
@click.option("--config", "job_file", type=click.Path(dir_okay=False), help="A TOML job file of [[mirror]] entries and [settings] (see README); a flag given here wins over its settings.")
@click.option("--src-creds", metavar="USER:PASS", help="Credentials for the source registry (default: --creds).")
@click.option("--dry-run", is_flag=True, help="Show what would move, how many bytes, how much is already there.")
@click.option("--state", "state_file", metavar="FILE", help="The job's journal [default: under ~/.cache/porter/jobs, per job].")
@click.option("--delete-source", is_flag=True, help="Afterwards delete each image from the source, once the destination serves the same digest.")
@click.option("--gc-storage", metavar="DIR", help="With --delete-source: then garbage-collect the source registry's storage DIR.")
@bulk_options
@push_options
@referrer_options
@storage_options
@registry_options
@run_guarded
def mirror(source_ref: str | None, destination: str | None, job_file: str | None, src_creds: str | None,
           dry_run: bool, state_file: str | None, delete_source: bool, gc_storage: str | None,
           include: tuple[str, ...], exclude: tuple[str, ...], tags_re: str | None, latest: int | None,
           shard: str | None, shards: int | None, platform_: str | None, chunk_size: str,
           dest_creds: str | None, no_referrers: bool, referrer_types: tuple[str, ...], storage: str | None,
           as_registry: str | None, creds: str | None, insecure: bool,
           ca_cert: str | None, jobs: int, retries: int, timeout: float, quiet: bool, as_json: bool) -> None:
    """Copy images into a registry, digests unchanged: one image, every tag of a repository, or a
    whole registry or storage directory (repository paths kept, under DESTINATION's prefix).

    DESTINATION is REGISTRY/REPOSITORY[:TAG] for one image or repository (the tag defaults to the
    source's), or REGISTRY[/PREFIX]. All platforms are copied unless --platform. A bulk job keeps
    going past an image that fails, journals its progress, and resumes where it stopped when run
    again; it exits 1 if any image failed."""
    from . import migrate
    from .auth import Credentials
    from .bulk import Entry
    from .jobfile import load_job_file

    if job_file:
        if source_ref or destination:
            raise click.UsageError("give either SOURCE DESTINATION or --config, not both")
        entries, settings = load_job_file(job_file)
        pick = settings_picker(settings)
        jobs, retries, timeout = pick("jobs", jobs, "jobs"), pick("retries", retries, "retries"), \
            pick("timeout", timeout, "timeout")
        chunk_size = str(pick("chunk_size", chunk_size, "chunk_size"))
        insecure, ca_cert = pick("insecure", insecure, "insecure"), pick("ca_cert", ca_cert, "ca_cert")
        state_file = pick("state_file", state_file, "state")
        if settings.get("shards") and not shard and not shards:
            shards = settings["shards"]
        extra = make_filters((), (), None, None, shard, shards).shard
        for e in entries:
            e.filters.shard = extra
    elif source_ref is None or destination is None:
        raise click.UsageError("give SOURCE and DESTINATION, or --config FILE")
    else:
        entries = [Entry(source_ref, destination, make_filters(include, exclude, tags_re, latest, shard, shards),
                         platform_, storage, Credentials.parse(src_creds) if src_creds else None,
                         Credentials.parse(dest_creds) if dest_creds else None)]
    base = transport_options(creds, insecure, ca_cert, jobs, retries, timeout)
    if gc_storage and not delete_source:
        raise PorterError("--gc-storage goes with --delete-source")
    if not job_file and destination and destination.startswith(DAEMON):
        report_load(migrate.mirror_to_daemon(entries[0], base, as_registry, jobs, quiet), quiet, as_json)
        return
    kind, summary = migrate.mirror(entries, base, as_registry, parse_size(chunk_size), jobs, dry_run=dry_run,
                                   state_file=state_file, delete_source=delete_source, quiet=quiet, say=say,
                                   attach=attachments(no_referrers, referrer_types))
    if kind == "preview":
        report_preview(summary, as_json)
        return
    report_push(summary, quiet, as_json)
    if gc_storage:
        gc_report(gc_storage, dry_run=False, delete_untagged=False, upload_age="7d", force=False, as_json=False,
                  quiet=quiet)
    if summary["failed"]:
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
    name = summary.get("deleted") or summary["would_delete"]
    report(summary, as_json, quiet, f"{'would delete' if dry_run else 'deleted'} {name}"
           + (f" (tags: {', '.join(summary['tags_removed'])})" if summary["tags_removed"] else "")
           + ("; other tags share the digest, so the real run needs --force" if summary["needs_force"] else ""))


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
    summary = {"repository": ref.name, "dry_run": dry_run, "deleted": doomed,
               "tags": [{"tag": r.tag, "digest": r.digest, "action": r.action, "reason": r.reason} for r in rows]}
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
