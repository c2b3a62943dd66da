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

    def parse(self, text: str) -> Any:
        from .reference import parse

        if text.startswith(DAEMON):
            if self._storage is not None:
                raise PorterError("--storage and a docker-daemon: source do not go together")
            from .places.daemon import DaemonSource

            ref = parse(text[len(DAEMON):]).with_default_tag()
            self._daemon = DaemonSource(text[len(DAEMON):])
            return ref
        ref = parse(text, host=self.names_host) if self._storage else parse(text)
        if ref.is_registry:
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
""")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("-o", "--output", required=True, help="Archive to write: x.tar, x.tar.zst (zstd), or - for stdout.")
@click.option("--platform", "platform_", metavar="OS/ARCH[/VARIANT]", help="Platform docker load gets from a multi-platform image [default: this host's].")
@click.option("--all-platforms", is_flag=True, help="Also keep the whole index and every platform's blobs in the OCI part.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@storage_options
@registry_options
@run_guarded
def export(images: tuple[str, ...], output: str, platform_: str | None, all_platforms: bool, force: bool,
           storage: str | None, as_registry: str | None, creds: str | None, insecure: bool, ca_cert: str | None, jobs: int, retries: int, timeout: float,
           quiet: bool, as_json: bool) -> None:
    """Export IMAGE... into one archive that `docker load -i` takes and that is also an OCI layout.

    Layers are stored exactly as the registry serves them (not decompressed) and the original
    manifest bytes are kept, so importing the archive reproduces the same digests."""
    from . import progress
    from .export import export as do_export
    from .mediatypes import Platform

    sources = Sources(transport_options(creds, insecure, ca_cert, jobs, retries, timeout), storage, as_registry)
    try:
        refs = [sources.parse(i) for i in images]
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

    def __init__(self, opts: Any, chunk_size: int):
        self.opts, self.chunk_size = opts, chunk_size
        self._by_host: dict[str, Any] = {}

    def __call__(self, ref: Any) -> Any:
        from .places.registry import Registry
        from .places.registry_push import Pusher

        if ref.host not in self._by_host:
            self._by_host[ref.host] = Pusher(Registry(ref, self.opts), self.chunk_size)
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
  porter mirror 127.0.0.1:5000/team/api:1.4 registry.internal:5000                 # same path there
  porter mirror --storage /var/lib/registry team/api:1.4 registry.internal:5000/team/api
  porter mirror docker-daemon:myapp:dev registry.internal:5000/myapp:dev       # from the local engine
  porter mirror 127.0.0.1:5000/team/api:1.4 docker-daemon:                     # like docker pull
""")
@click.argument("source_ref", metavar="SOURCE")
@click.argument("destination", metavar="DESTINATION")
@click.option("--src-creds", metavar="USER:PASS", help="Credentials for the source registry (default: --creds).")
@click.option("--delete-source", is_flag=True, help="Afterwards delete the image from the source, once the destination serves the same digest.")
@click.option("--gc-storage", metavar="DIR", help="With --delete-source: then garbage-collect the source registry's storage DIR.")
@push_options
@storage_options
@registry_options
@run_guarded
def mirror(source_ref: str, destination: str, src_creds: str | None, delete_source: bool, gc_storage: str | None,
           platform_: str | None, chunk_size: str,
           dest_creds: str | None, storage: str | None, as_registry: str | None, creds: str | None, insecure: bool,
           ca_cert: str | None, jobs: int, retries: int, timeout: float, quiet: bool, as_json: bool) -> None:
    """Copy an image from a registry (or a storage directory) into a registry, digests unchanged.

    DESTINATION is REGISTRY/REPOSITORY[:TAG] (the tag defaults to the source's), or a bare
    REGISTRY to keep the source's repository path. All platforms are copied unless --platform."""
    from dataclasses import replace

    from .engine import resolve
    from .mediatypes import Platform
    from .places.registry import Registry
    from .push import Job, dest_for
    from .reference import parse

    base = transport_options(creds, insecure, ca_cert, jobs, retries, timeout)
    sources = Sources(dest_options(base, src_creds), storage, as_registry)
    pushers = Pushers(dest_options(base, dest_creds), parse_size(chunk_size))
    try:
        ref = sources.parse(source_ref)
        source = sources(ref)
        plat = Platform.parse(platform_) if platform_ else None
        if destination.startswith(DAEMON):
            img = resolve(source, ref, plat or Platform.host(), all_platforms=False)
            name = destination[len(DAEMON):]
            if name:
                img.rename = replace(parse(name).with_default_tag(), digest=None)
            run_load([img], lambda r: source, jobs, quiet, as_json)
            return
        dest = parse(destination)
        if gc_storage and not delete_source:
            raise PorterError("--gc-storage goes with --delete-source")
        if delete_source and (plat or not isinstance(source, Registry)):
            raise PorterError("--delete-source needs a registry source and every platform (no --platform)")
        img = resolve(source, ref, plat, all_platforms=plat is None)
        target = dest_for(img.ref, dest, keep_path=dest.is_registry)  # a digest-only source stays untagged
        job = Job(img, source, target, pushers(target))
        run_push([job], jobs, quiet, as_json)
        if delete_source:
            delete_migrated(job, source, quiet)
    finally:
        pushers.close()
        sources.close()
    if gc_storage:
        run_gc(gc_storage, dry_run=False, delete_untagged=False, upload_age="7d", force=False, as_json=False,
               quiet=quiet)


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
