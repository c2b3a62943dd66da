"""porter's command line: parse arguments, build places, call the jobs, print a summary."""
from __future__ import annotations

import sys

import click

from . import __version__
from .endpoints import DAEMON
from .errors import PorterError
from .options import (attachments, bulk_options, dest_options, make_filters, parse_size, push_options,
                      referrer_options, registry_options, run_guarded, settings_picker, storage_options,
                      transport_options)
from .output import report_export, say, show
from .results import PreviewResult


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
        result = do_export(refs, source_for, output, platform=plat, all_platforms=all_platforms, jobs=jobs,
                           force=force, progress=progress.make(quiet), strict=platform_ is not None,
                           since=base, split_size=volume, attach=attachments(no_referrers, referrer_types),
                           retries=retries)
    finally:
        close()
    result.refused = refused
    report_export(result, quiet, as_json)
    if refused:
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
    from .places.volumes import one_archive

    if len(paths) < 2:
        raise click.UsageError("give ARCHIVE (or the volumes of a split set) and DESTINATION")
    archive, destination = one_archive(paths[:-1]), paths[-1]
    opts = dest_options(transport_options(creds, insecure, ca_cert, jobs, retries, timeout), dest_creds)
    result = import_archive(archive, destination, opts, parse_size(chunk_size),
                            attachments(no_referrers, referrer_types),
                            Platform.parse(platform_) if platform_ else None, jobs, quiet)
    show(result, quiet, as_json)
    if getattr(result, "failed", 0):
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
        show(migrate.mirror_to_daemon(entries[0], base, as_registry, jobs, quiet), quiet, as_json)
        return
    result = migrate.mirror(entries, base, as_registry, parse_size(chunk_size), jobs, dry_run=dry_run,
                            state_file=state_file, delete_source=delete_source, quiet=quiet, say=say,
                            attach=attachments(no_referrers, referrer_types))
    show(result, quiet, as_json)
    if isinstance(result, PreviewResult):
        return
    if gc_storage:
        cli_admin.gc_report(gc_storage, dry_run=False, delete_untagged=False, upload_age="7d", force=False, as_json=False,
                  quiet=quiet)
    if result.failed:
        sys.exit(1)


from . import cli_admin  # noqa: E402,F401  (registers ls, verify, delete, prune and gc on main)
