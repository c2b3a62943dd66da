"""porter's command line: parse arguments, build places, call the engine, print a summary."""
from __future__ import annotations

import functools
import json
import os
import signal
import sys
from typing import Any, Callable

import click

from . import __version__
from .errors import PorterError

EXIT_SIGINT, EXIT_SIGTERM = 130, 143
DAEMON = "docker-daemon:"


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so cleanup runs as for Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def fail(message: str, code: int = 1) -> None:
    click.echo(f"porter: error: {message}", err=True)
    sys.stdout.flush()
    os._exit(code)  # transfer threads may still be blocked in reads; cleanup already ran


def run_guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn porter's errors and interrupts into one line on stderr and the right exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            return fn(*args, **kwargs)
        except PorterError as e:
            fail(str(e).splitlines()[0] if str(e) else type(e).__name__, e.exit_code)
        except KeyboardInterrupt:
            fail("interrupted; partial output removed", EXIT_SIGINT)
        except Terminated:
            fail("terminated; partial output removed", EXIT_SIGTERM)
        except BrokenPipeError:
            fail("output pipe closed", 1)

    return wrapper


def registry_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command that talks to registries takes."""
    opts = [
        click.option("--creds", metavar="USER:PASS", help="Registry credentials (else PORTER_USERNAME/PORTER_PASSWORD, else docker's config.json)."),
        click.option("--insecure", is_flag=True, help="Allow plain HTTP and unverified TLS (always allowed for loopback hosts' plain HTTP)."),
        click.option("--ca-cert", type=click.Path(exists=True, dir_okay=False), help="Extra CA certificate to trust (also read: /etc/docker/certs.d/HOST:PORT/ca.crt)."),
        click.option("-j", "--jobs", type=click.IntRange(1, 64), default=4, show_default=True, help="Blobs transferred at once."),
        click.option("--retries", type=click.IntRange(0, 20), default=5, show_default=True, help="Retries per request on connection errors, 5xx and 429."),
        click.option("--timeout", type=click.FloatRange(1, 3600), default=60.0, show_default=True, help="Seconds without data before a connection counts as stalled."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bars."),
        click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def storage_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Read images from a registry's raw storage directory instead of over HTTP."""
    fn = click.option("--as-registry", metavar="HOST[:PORT]",
                      help="With --storage: name images as if served by this registry (e.g. for docker load tags).")(fn)
    return click.option("--storage", metavar="DIR", type=click.Path(file_okay=False),
                        help="A registry's storage root (holding docker/registry/v2) to read directly, no server.")(fn)


def bulk_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options of the commands that can take whole repositories or registries."""
    opts = [
        click.option("--include", multiple=True, metavar="REGEX", help="Only repositories matching (whole name; repeatable)."),
        click.option("--exclude", multiple=True, metavar="REGEX", help="Skip repositories matching (whole name; repeatable)."),
        click.option("--tags", "tags_re", metavar="REGEX", help="Only tags matching (searched)."),
        click.option("--latest", type=click.IntRange(1), metavar="N", help="Only the newest N tags per repository (semver, else creation time)."),
        click.option("--shard", metavar="I/N", help="Take only shard I (from 0) of N, split by repository."),
        click.option("--shards", type=click.IntRange(1), metavar="N", help="N shards, this one's index from JOB_COMPLETION_INDEX."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def make_filters(include: tuple[str, ...], exclude: tuple[str, ...], tags_re: str | None, latest: int | None,
                 shard: str | None, shards: int | None) -> Any:
    from .selection import Filters, parse_shard

    return Filters(list(include) or None, list(exclude) or None, tags_re, latest,
                   parse_shard(shard, os.environ.get("JOB_COMPLETION_INDEX"), shards))


def transport_options(creds: str | None, insecure: bool, ca_cert: str | None, jobs: int, retries: int, timeout: float):
    from .auth import Credentials
    from .transport import Options

    return Options(creds=Credentials.parse(creds) if creds else None, insecure=insecure, ca_cert=ca_cert,
                   jobs=jobs, retries=retries, timeout=timeout)


class Sources:
    """Where images are read from: one Storage for ``--storage DIR``, else one Registry per host.

    Storage images are named by repository path alone (``team/api:1.4``), or as if served by
    ``--as-registry HOST``, so that ``docker load`` tags them the way the registry would."""

    def __init__(self, opts: Any, storage: str | None = None, as_registry: str | None = None):
        self.opts, self.storage_dir = opts, storage
        self.names_host = as_registry or ""
        self._storage: Any = None
        self._daemon: Any = None
        self._by_host: dict[str, Any] = {}
        if storage:
            from .places.storage import Storage

            self._storage = Storage(storage)
        elif as_registry:
            raise PorterError("--as-registry only applies with --storage")

    def parse(self, text: str, allow_registry: bool = False) -> Any:
        from .reference import Reference, parse

        if self._storage is not None and text in ("", "/"):
            return Reference(self.names_host)  # the whole storage directory

        if text.startswith(DAEMON):
            if self._storage is not None:
                raise PorterError("--storage and a docker-daemon: source do not go together")
            from .places.daemon import DaemonSource

            ref = parse(text[len(DAEMON):]).with_default_tag()
            self._daemon = DaemonSource(text[len(DAEMON):])
            return ref
        ref = parse(text, host=self.names_host) if self._storage else parse(text)
        if ref.is_registry and not allow_registry:
            raise PorterError(f"{ref} names a whole registry; name an image (host/repository[:tag])")
        return ref

    def __call__(self, ref: Any) -> Any:
        if self._daemon is not None:
            return self._daemon
        if self._storage is not None:
            return self._storage
        if ref.host not in self._by_host:
            from .places.registry import Registry

            self._by_host[ref.host] = Registry(ref, self.opts)
        return self._by_host[ref.host]

    def close(self) -> None:
        for r in self._by_host.values():
            r.close()
        if self._daemon is not None:
            self._daemon.close()


def human_size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


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
""")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("-o", "--output", required=True, help="Archive to write: x.tar, x.tar.zst (zstd), or - for stdout.")
@click.option("--platform", "platform_", metavar="OS/ARCH[/VARIANT]", help="Platform docker load gets from a multi-platform image [default: this host's].")
@click.option("--all-platforms", is_flag=True, help="Also keep the whole index and every platform's blobs in the OCI part.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@bulk_options
@storage_options
@registry_options
@run_guarded
def export(images: tuple[str, ...], output: str, platform_: str | None, all_platforms: bool, force: bool,
           include: tuple[str, ...], exclude: tuple[str, ...], tags_re: str | None, latest: int | None,
           shard: str | None, shards: int | None, storage: str | None, as_registry: str | None, creds: str | None, insecure: bool, ca_cert: str | None, jobs: int, retries: int, timeout: float,
           quiet: bool, as_json: bool) -> None:
    """Export IMAGE... into one archive that `docker load -i` takes and that is also an OCI layout.

    Layers are stored exactly as the registry serves them (not decompressed) and the original
    manifest bytes are kept, so importing the archive reproduces the same digests."""
    from . import progress
    from .export import export as do_export
    from .mediatypes import Platform

    from .places.base import Lister
    from .selection import expand

    filters = make_filters(include, exclude, tags_re, latest, shard, shards)
    sources = Sources(transport_options(creds, insecure, ca_cert, jobs, retries, timeout), storage, as_registry)
    try:
        refs = []
        for text in images:  # an image, or every (matching) tag of a repository or registry
            ref = sources.parse(text, allow_registry=True)
            source = sources(ref)
            refs += expand(source, source if isinstance(source, Lister) else None, ref, filters, jobs)
        if not refs:
            raise PorterError("no image matched: nothing to export")
        plat = Platform.parse(platform_) if platform_ else Platform.host()
        summary = do_export(refs, sources, output, platform=plat, all_platforms=all_platforms, jobs=jobs,
                            force=force, progress=progress.make(quiet))
    finally:
        sources.close()
    report(summary, as_json, quiet, f"wrote {output}: {len(summary['images'])} image(s), {summary['blobs']} blobs, "
           f"{human_size(summary['archive_bytes'])} in {summary['seconds']:.2f}s")


def report(summary: dict[str, Any], as_json: bool, quiet: bool, line: str) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    elif not quiet:
        click.echo(line, err=summary.get("output") == "-")


@main.command(name="ls", epilog="""\b
Examples:
  porter ls 127.0.0.1:5000                     # every repository (catalog, paginated)
  porter ls 127.0.0.1:5000/team/api            # its tags: digest, platforms, size
  porter ls --storage /mnt/old-registry        # every repository in a storage directory
  porter ls --storage /mnt/old-registry team/api --check   # and verify every blob
""")
@click.argument("target", required=False, metavar="[REGISTRY[/REPOSITORY] | REPOSITORY]")
@click.option("--check", is_flag=True, help="Re-read every blob of the listed images and verify it; exit 1 if any is corrupt or missing.")
@storage_options
@registry_options
@run_guarded
def ls(target: str | None, check: bool, storage: str | None, as_registry: str | None, creds: str | None,
       insecure: bool, ca_cert: str | None, jobs: int, retries: int, timeout: float, quiet: bool, as_json: bool) -> None:
    """List repositories, or a repository's tags with digest, platforms and size.

    TARGET is a registry (REGISTRY or REGISTRY/REPOSITORY) or, with --storage, a repository path."""
    from . import listing
    from .reference import Reference, parse

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
        repos = [base.repository] if base.repository else list(source.repositories())
        tag_counts = {r: len(list(source.tags(r))) for r in repos} if not base.repository else {}
        rows = []  # described tags: for a repository listing, or for every repository when checking
        if base.repository or check:
            rows = [row for r in repos for row in listing.list_tags(source, source, Reference(base.host, r), jobs)]
        problems = listing.check(source, base.host, rows, jobs) if check else []
    finally:
        sources.close()
    if as_json:
        doc: Any = listing.rows_json(rows) if base.repository else [
            {"repository": r, "tags": n} for r, n in tag_counts.items()]
        click.echo(json.dumps({"rows": doc, "problems": problems} if check else doc, indent=2))
    elif base.repository:
        lines = [["REPOSITORY", "TAG", "DIGEST", "PLATFORMS", "SIZE"]] + [
            [r.repository, r.tag, r.digest[:19], ",".join(r.platforms), human_size(r.size)] if not r.error
            else [r.repository, r.tag, "ERROR", r.error, ""] for r in rows]
        click.echo(table(lines))
    else:
        click.echo(table([["REPOSITORY", "TAGS"]] + [[r, str(n)] for r, n in tag_counts.items()]))
    for p in problems:
        click.echo(f"porter: {p}", err=True)
    if check:
        click.echo(f"checked {len(rows)} tag(s): {len(problems)} problem(s)", err=True)
    if problems:
        sys.exit(1)


def parse_size(text: str) -> int:
    units = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20, "mb": 10**6, "mib": 1 << 20,
             "g": 1 << 30, "gb": 10**9, "gib": 1 << 30}
    t = text.strip().lower()
    num = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    try:
        n = int(float(num) * units[t[len(num):].strip()])
    except (ValueError, KeyError):
        raise click.BadParameter(f"{text!r} is not a size like 64MiB") from None
    if n < 1 << 20:
        raise click.BadParameter("chunk size must be at least 1MiB")
    return n


def push_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options of the commands that push into a registry."""
    opts = [
        click.option("--platform", "platform_", metavar="OS/ARCH[/VARIANT]",
                     help="Push only this platform of multi-platform images (the pushed digest then differs from the index's)."),
        click.option("--chunk-size", default="64MiB", show_default=True, help="Upload blobs larger than this in chunks of this size."),
        click.option("--dest-creds", metavar="USER:PASS", help="Credentials for the destination registry (default: --creds)."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def run_push(jobs_list: list[Any], jobs: int, quiet: bool, as_json: bool) -> dict[str, Any]:
    from . import progress
    from .push import push

    summary = push(jobs_list, jobs, progress.make(quiet))
    for img in summary["images"]:
        if "source_digest" in img and not quiet:
            click.echo(f"porter: note: pushed only {img['platform']} of {img['source']}: {img['destination']} is "
                       f"{img['digest']}, not the index digest {img['source_digest']}", err=True)
    b = summary["blobs"]
    report(summary, as_json, quiet, f"pushed {len(summary['images'])} image(s): {b['uploaded']} blobs uploaded "
           f"({human_size(summary['bytes_sent'])}), {b['mounted']} mounted, {b['skipped']} already there, "
           f"in {summary['seconds']:.2f}s")
    return summary


def run_load(images: list[Any], source_for: Callable[[Any], Any], jobs: int, quiet: bool, as_json: bool) -> None:
    from . import progress
    from .export import load_into_daemon

    summary = load_into_daemon(images, source_for, jobs, progress.make(quiet))
    report(summary, as_json, quiet, f"loaded into the docker daemon: {', '.join(summary['loaded']) or 'nothing'} "
           f"in {summary['seconds']:.2f}s")


class Pushers:
    """One Pusher per destination host."""

    def __init__(self, opts: Any, chunk_size: int, journal: Any = None):
        self.opts, self.chunk_size, self.journal = opts, chunk_size, journal
        self._by_host: dict[str, Any] = {}

    def __call__(self, ref: Any) -> Any:
        from .places.registry import Registry
        from .places.registry_push import Pusher

        if ref.host not in self._by_host:
            self._by_host[ref.host] = Pusher(Registry(ref, self.opts), self.chunk_size, self.journal)
        return self._by_host[ref.host]

    def close(self) -> None:
        for p in self._by_host.values():
            p.reg.close()


def dest_options(opts: Any, dest_creds: str | None) -> Any:
    from dataclasses import replace

    from .auth import Credentials

    return replace(opts, creds=Credentials.parse(dest_creds)) if dest_creds else opts


@main.command(name="import", epilog="""\b
Examples:
  porter import images.tar registry.internal:5000               # every image, same repository paths
  porter import images.tar.zst registry.internal:5000/mirror    # under a prefix
  porter import images.tar 127.0.0.1:5000 --platform linux/amd64 --json
  porter import images.tar docker-daemon:                       # like docker load, via the SDK
""")
@click.argument("archive", type=click.Path(exists=True, dir_okay=False))
@click.argument("destination", metavar="REGISTRY[/PREFIX]")
@push_options
@registry_options
@run_guarded
def import_(archive: str, destination: str, platform_: str | None, chunk_size: str, dest_creds: str | None,
            creds: str | None, insecure: bool, ca_cert: str | None, jobs: int, retries: int, timeout: float,
            quiet: bool, as_json: bool) -> None:
    """Push every image of an archive (from porter export) into a registry, digests unchanged.

    Nothing is pushed under a tag until every blob of the archive verified; a tampered or
    incomplete archive is refused."""
    from .engine import resolve
    from .mediatypes import Platform
    from .places.archive_reader import ArchiveSource
    from .push import Job, dest_for
    from .reference import Reference, parse

    to_daemon = destination.startswith(DAEMON)
    if to_daemon and destination != DAEMON:
        raise PorterError("import into the docker daemon keeps the archive's names: use plain 'docker-daemon:'")
    dest = None if to_daemon else parse(destination)
    size = parse_size(chunk_size)
    opts = dest_options(transport_options(creds, insecure, ca_cert, jobs, retries, timeout), dest_creds)
    plat = Platform.parse(platform_) if platform_ else None
    source = ArchiveSource(archive)
    pushers = Pushers(opts, size)
    try:
        plan = []
        for entry in source.images():
            if not entry.name:
                raise PorterError(f"{archive}: image {entry.desc.digest} has no name in index.json")
            named = parse(entry.name)
            ref = Reference(named.host, named.repository, named.tag, entry.desc.digest)
            if to_daemon:  # docker load takes one platform per image
                plan.append((ref, resolve(source, ref, plat or Platform.host(), all_platforms=False)))
            else:
                plan.append((ref, resolve(source, ref, plat, all_platforms=plat is None)))
        source.check_complete([m for _, img in plan for m in img.manifests])
        if to_daemon:
            run_load([img for _, img in plan], lambda r: source, jobs, quiet, as_json)
        else:
            jobs_list = [Job(img, source, d, pushers(d)) for ref, img in plan
                         for d in [dest_for(ref, dest, keep_path=True)]]
            run_push(jobs_list, jobs, quiet, as_json)
    finally:
        pushers.close()
        source.close()


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
""")
@click.argument("source_ref", metavar="SOURCE", required=False)
@click.argument("destination", metavar="DESTINATION", required=False)
@click.option("--config", "job_file", type=click.Path(dir_okay=False), help="A TOML job file of [[mirror]] entries (see README).")
@click.option("--src-creds", metavar="USER:PASS", help="Credentials for the source registry (default: --creds).")
@click.option("--dry-run", is_flag=True, help="Show what would move, how many bytes, how much is already there.")
@click.option("--state", "state_file", metavar="FILE", help="The job's journal [default: under ~/.cache/porter/jobs, per job].")
@click.option("--delete-source", is_flag=True, help="Afterwards delete each image from the source, once the destination serves the same digest.")
@click.option("--gc-storage", metavar="DIR", help="With --delete-source: then garbage-collect the source registry's storage DIR.")
@bulk_options
@push_options
@storage_options
@registry_options
@run_guarded
def mirror(source_ref: str | None, destination: str | None, job_file: str | None, src_creds: str | None,
           dry_run: bool, state_file: str | None, delete_source: bool, gc_storage: str | None,
           include: tuple[str, ...], exclude: tuple[str, ...], tags_re: str | None, latest: int | None,
           shard: str | None, shards: int | None, platform_: str | None, chunk_size: str,
           dest_creds: str | None, storage: str | None, as_registry: str | None, creds: str | None, insecure: bool,
           ca_cert: str | None, jobs: int, retries: int, timeout: float, quiet: bool, as_json: bool) -> None:
    """Copy images into a registry, digests unchanged: one image, every tag of a repository, or a
    whole registry or storage directory (repository paths kept, under DESTINATION's prefix).

    DESTINATION is REGISTRY/REPOSITORY[:TAG] for one image or repository (the tag defaults to the
    source's), or REGISTRY[/PREFIX]. All platforms are copied unless --platform. A bulk job keeps
    going past an image that fails, journals its progress, and resumes where it stopped when run
    again; it exits 1 if any image failed."""
    from .auth import Credentials
    from .bulk import Entry, load_job_file

    if job_file:
        if source_ref or destination:
            raise click.UsageError("give either SOURCE DESTINATION or --config, not both")
        entries, settings = load_job_file(job_file)
        jobs = int(settings.get("jobs", jobs))
        chunk_size = str(settings.get("chunk_size", chunk_size))
        retries, timeout = int(settings.get("retries", retries)), float(settings.get("timeout", timeout))
        insecure, ca_cert = bool(settings.get("insecure", insecure)), settings.get("ca_cert", ca_cert)
        state_file = state_file or settings.get("state")
        if settings.get("shards") and not shard and not shards:
            shards = int(settings["shards"])
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
    if not job_file and destination.startswith(DAEMON):
        return mirror_to_daemon(entries[0], base, as_registry, jobs, quiet, as_json)
    run_mirror(entries, base, as_registry, parse_size(chunk_size), jobs, dry_run, state_file, delete_source,
               gc_storage, quiet, as_json)


def mirror_to_daemon(e: Any, base: Any, as_registry: str | None, jobs: int, quiet: bool, as_json: bool) -> None:
    from dataclasses import replace

    from .engine import resolve
    from .mediatypes import Platform
    from .reference import parse

    sources = Sources(dest_options(base, None) if not e.src_creds else replace(base, creds=e.src_creds),
                      e.storage, as_registry)
    try:
        ref = sources.parse(e.source)
        source = sources(ref)
        img = resolve(source, ref, Platform.parse(e.platform) if e.platform else Platform.host(), all_platforms=False)
        name = e.destination[len(DAEMON):]
        if name:
            img.rename = replace(parse(name).with_default_tag(), digest=None)
        run_load([img], lambda r: source, jobs, quiet, as_json)
    finally:
        sources.close()


def run_mirror(entries: list[Any], base: Any, as_registry: str | None, chunk: int, jobs: int, dry_run: bool,
               state_file: str | None, delete_source: bool, gc_storage: str | None, quiet: bool,
               as_json: bool) -> None:
    from dataclasses import replace

    from . import progress
    from .bulk import job_key, plan
    from .journal import Journal, default_path
    from .mediatypes import Platform
    from .places.base import Lister
    from .places.registry import Registry
    from .push import Job, preview, push
    from .reference import parse

    key = job_key(entries)
    journal = Journal(state_file or default_path(key), key)
    all_sources: list[Sources] = []
    pushers: dict[Any, Pushers] = {}
    planned: list[Any] = []
    single = False
    try:
        for e in entries:
            sources = Sources(replace(base, creds=e.src_creds) if e.src_creds else base, e.storage, as_registry)
            all_sources.append(sources)
            ref = sources.parse(e.source, allow_registry=True)
            source = sources(ref)
            single = len(entries) == 1 and bool(ref.tag or ref.digest)
            if gc_storage and not delete_source:
                raise PorterError("--gc-storage goes with --delete-source")
            if delete_source and (e.platform or not isinstance(source, Registry)):
                raise PorterError("--delete-source needs a registry source and every platform (no --platform)")
            plat = Platform.parse(e.platform) if e.platform else None
            dest = parse(e.destination)
            push_to = pushers.setdefault(e.dest_creds, Pushers(replace(base, creds=e.dest_creds) if e.dest_creds
                                                               else base, chunk, journal))
            for p in plan(ref, dest, source, source if isinstance(source, Lister) else None, e.filters, plat, jobs):
                p.pusher = push_to(p.dest)
                planned.append(p)
        if single and planned and planned[0].error:
            raise PorterError(planned[0].error)
        jobs_list = [Job(p.image, p.source, p.dest, p.pusher) for p in planned if p.image]
        failed = [{"source": str(p.ref), "destination": str(p.dest), "state": "failed", "error": p.error}
                  for p in planned if p.error]
        if dry_run:
            return report_preview(preview(jobs_list, jobs), failed, quiet, as_json)
        summary = push(jobs_list, jobs, progress.make(quiet), journal, keep_going=not single)
        if delete_source:
            for j in jobs_list:
                if j.state in ("copied", "present"):
                    delete_migrated(j, j.source, quiet)
    finally:
        for pu in pushers.values():
            pu.close()
        for so in all_sources:
            so.close()
    summary["images"] += failed
    summary["failed"] += len(failed)
    if not summary["failed"] and not state_file:
        journal.remove()
    report_mirror(summary, single, quiet, as_json)
    if gc_storage:
        run_gc(gc_storage, dry_run=False, delete_untagged=False, upload_age="7d", force=False, as_json=False,
               quiet=quiet)
    if summary["failed"]:
        sys.exit(1)


def report_mirror(summary: dict[str, Any], single: bool, quiet: bool, as_json: bool) -> None:
    for img in summary["images"]:
        if "source_digest" in img and not quiet:
            click.echo(f"porter: note: pushed only {img['platform']} of {img['source']}: {img['destination']} is "
                       f"{img['digest']}, not the index digest {img['source_digest']}", err=True)
        if img["state"] == "failed":
            click.echo(f"porter: failed: {img['source']}: {img['error']}", err=True)
    b = summary["blobs"]
    report(summary, as_json, quiet,
           f"{summary['copied']} image(s) copied, {summary['present']} already there, {summary['failed']} failed; "
           f"blobs: {b['uploaded']} uploaded ({human_size(summary['bytes_sent'])}), {b['mounted']} mounted, "
           f"{b['skipped']} already there ({human_size(summary['bytes_skipped'])} not sent); "
           f"{summary['seconds']:.2f}s")


def report_preview(pre: dict[str, Any], failed: list[dict[str, Any]], quiet: bool, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({**pre, "failed": failed}, indent=2))
        return
    rows = [["SOURCE", "DESTINATION", "ACTION", "SIZE"]] + [
        [i["source"], i["destination"], "copy" if i["state"] == "copy" else "already there", human_size(i["bytes"])]
        for i in pre["images"]] + [[f["source"], f["destination"], f"fails: {f['error']}", ""] for f in failed]
    click.echo(table(rows))
    click.echo(f"{sum(i['state'] == 'copy' for i in pre['images'])} of {len(pre['images'])} image(s) to copy: "
               f"{human_size(pre['bytes_to_send'])} to send, {human_size(pre['bytes_present'])} already at the "
               f"destination" + (f"; {len(failed)} cannot be read" if failed else ""))


def delete_migrated(job: Any, source: Any, quiet: bool) -> None:
    """Delete a mirrored image from its source registry, only once the destination is verified to
    serve the same digest, and never when other (unmigrated) tags share that digest."""
    from .delete import Deleter

    digest, src = job.image.listed.digest, job.image.ref
    ref_at_dest = job.dest.tag or digest
    if not job.pusher.has_manifest(job.dest.repository, ref_at_dest, digest):
        raise PorterError(f"{job.dest}: does not serve {digest}; not deleting the source")
    d = Deleter(source)
    others = sorted(t for t, dg in d.tag_digests(src.repository).items() if dg == digest and t != src.tag)
    if others:
        click.echo(f"porter: warning: not deleting {src.name}@{digest} from the source: also tagged "
                   f"{', '.join(others)}, which were not migrated", err=True)
        return
    d.delete(src.repository, digest)
    if not quiet:
        click.echo(f"deleted {src.name}@{digest} from the source", err=True)


def registry_for(target: str, opts: Any) -> tuple[Any, Any]:
    from .places.registry import Registry
    from .reference import parse

    ref = parse(target)
    if ref.is_registry:
        raise PorterError(f"{target}: name a repository (host/repository)")
    return ref, Registry(ref, opts)


@main.command(epilog="""\b
Examples:
  porter delete 127.0.0.1:5000/team/api:old-tag            # by tag, resolved to the stored digest
  porter delete 127.0.0.1:5000/team/api@sha256:…
  porter delete 127.0.0.1:5000/team/api:1.0 --dry-run
""")
@click.argument("image")
@click.option("--force", is_flag=True, help="Delete even when other tags point at the same digest (they go too).")
@click.option("--dry-run", is_flag=True, help="Say what would be deleted, delete nothing.")
@registry_options
@run_guarded
def delete(image: str, force: bool, dry_run: bool, creds: str | None, insecure: bool, ca_cert: str | None,
           jobs: int, retries: int, timeout: float, quiet: bool, as_json: bool) -> None:
    """Delete an image's manifest from a registry (by tag or digest). Frees no disk by itself:
    run `porter gc` on the registry's storage afterwards."""
    from .delete import Deleter

    ref, reg = registry_for(image, transport_options(creds, insecure, ca_cert, jobs, retries, timeout))
    try:
        d = Deleter(reg, jobs)
        digest = ref.digest or d.digest_of(ref.repository, ref.tag or "latest")
        sharing = sorted(t for t, dg in d.tag_digests(ref.repository).items() if dg == digest and t != ref.tag)
        if sharing and not force:
            raise PorterError(f"{digest} is also tagged {', '.join(sharing)} in {ref.repository}; deleting it "
                              f"removes those tags too (use --force to do it anyway)")
        if not dry_run:
            d.delete(ref.repository, digest)
    finally:
        reg.close()
    summary = {"deleted" if not dry_run else "would_delete": f"{ref.name}@{digest}",
               "tags_removed": sorted(set(sharing) | ({ref.tag} if ref.tag else set()))}
    report(summary, as_json, quiet, f"{'would delete' if dry_run else 'deleted'} {ref.name}@{digest}"
           + (f" (tags: {', '.join(summary['tags_removed'])})" if summary["tags_removed"] else ""))


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
                d.delete(ref.repository, dg)
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
@click.option("--upload-age", default="7d", show_default=True, help="Remove unfinished uploads older than this.")
@click.option("--force", is_flag=True, help="Run even though uploads look active (the registry must be stopped or read-only).")
@click.option("--json", "as_json", is_flag=True, help="Print {blobs, manifests, bytes} as JSON.")
@click.option("-q", "--quiet", is_flag=True)
@run_guarded
def gc(storage: str, dry_run: bool, delete_untagged: bool, upload_age: str, force: bool, as_json: bool,
       quiet: bool) -> None:
    """Garbage-collect a registry's storage directory offline: remove every blob no remaining
    manifest references. Stop the registry (or make it read-only) first."""
    run_gc(storage, dry_run, delete_untagged, upload_age, force, as_json, quiet)


def run_gc(storage: str, dry_run: bool, delete_untagged: bool, upload_age: str, force: bool, as_json: bool,
           quiet: bool) -> None:
    from .gc import Collector, parse_duration
    from .places.storage import Storage

    collector = Collector(Storage(storage))
    age = parse_duration(upload_age)
    if not dry_run and not force:
        active = collector.active_uploads()
        if active:
            raise PorterError(f"{len(active)} upload(s) look active ({active[0]}, …): stop the registry or make it "
                              f"read-only (storage.maintenance.readonly) first, or pass --force")
    plan = collector.plan(delete_untagged, age)
    if not dry_run:
        collector.sweep(plan)
    for p in plan.problems:
        click.echo(f"porter: warning: {p}", err=True)
    verb = "would remove" if dry_run else "removed"
    report(plan.as_json(), as_json, quiet,
           f"{verb} {len(plan.blobs)} blob(s) ({human_size(plan.bytes)}), {len(plan.manifests)} untagged "
           f"manifest(s), {len(plan.uploads)} stale upload(s); {len(plan.marked)} blobs in use")
