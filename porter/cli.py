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


def transport_options(creds: str | None, insecure: bool, ca_cert: str | None, jobs: int, retries: int, timeout: float):
    from .auth import Credentials
    from .transport import Options

    return Options(creds=Credentials.parse(creds) if creds else None, insecure=insecure, ca_cert=ca_cert,
                   jobs=jobs, retries=retries, timeout=timeout)


class Registries:
    """One Registry client per host for the whole command; closed at the end."""

    def __init__(self, opts: Any):
        self.opts = opts
        self._by_host: dict[str, Any] = {}

    def __call__(self, ref: Any) -> Any:
        from .places.registry import Registry

        if ref.host not in self._by_host:
            self._by_host[ref.host] = Registry(ref, self.opts)
        return self._by_host[ref.host]

    def close(self) -> None:
        for r in self._by_host.values():
            r.close()


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
""")
@click.argument("images", nargs=-1, required=True, metavar="IMAGE...")
@click.option("-o", "--output", required=True, help="Archive to write: x.tar, x.tar.zst (zstd), or - for stdout.")
@click.option("--platform", "platform_", metavar="OS/ARCH[/VARIANT]", help="Platform docker load gets from a multi-platform image [default: this host's].")
@click.option("--all-platforms", is_flag=True, help="Also keep the whole index and every platform's blobs in the OCI part.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@registry_options
@run_guarded
def export(images: tuple[str, ...], output: str, platform_: str | None, all_platforms: bool, force: bool,
           creds: str | None, insecure: bool, ca_cert: str | None, jobs: int, retries: int, timeout: float,
           quiet: bool, as_json: bool) -> None:
    """Export IMAGE... into one archive that `docker load -i` takes and that is also an OCI layout.

    Layers are stored exactly as the registry serves them (not decompressed) and the original
    manifest bytes are kept, so importing the archive reproduces the same digests."""
    from . import progress
    from .export import export as do_export
    from .mediatypes import Platform
    from .reference import parse

    refs = [parse(i) for i in images]
    for r in refs:
        if r.is_registry:
            raise PorterError(f"{r} names a whole registry; name an image (host/repository[:tag])")
    plat = Platform.parse(platform_) if platform_ else Platform.host()
    registries = Registries(transport_options(creds, insecure, ca_cert, jobs, retries, timeout))
    try:
        summary = do_export(refs, registries, output, platform=plat, all_platforms=all_platforms, jobs=jobs,
                            force=force, progress=progress.make(quiet))
    finally:
        registries.close()
    report(summary, as_json, quiet, f"wrote {output}: {{n}} image(s), {summary['blobs']} blobs, "
           f"{summary['archive_bytes'] / 1e6:.1f} MB in {summary['seconds']:.2f}s".replace("{n}", str(len(summary["images"]))))


def report(summary: dict[str, Any], as_json: bool, quiet: bool, line: str) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    elif not quiet:
        click.echo(line, err=summary.get("output") == "-")
