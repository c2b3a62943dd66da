"""Command-line plumbing shared by the commands: option groups, converters, and the guard
that turns porter's errors and interrupts into one line and an exit code."""
from __future__ import annotations

import functools
import os
import signal
import sys
from dataclasses import replace
from typing import Any, Callable

import click

from . import interrupts
from .errors import PorterError, UsageError

EXIT_SIGINT, EXIT_SIGTERM = 130, 143


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so cleanup runs as for Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise interrupts.note(Terminated())


def _on_sigint(signum: int, frame: Any) -> None:
    raise interrupts.note(KeyboardInterrupt())


def fail(message: str, code: int = 1) -> None:
    from .output import clean

    click.echo(f"porter: error: {clean(message)}", err=True)
    sys.stdout.flush()
    os._exit(code)  # transfer threads may still be blocked in reads; cleanup already ran


def run_guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn porter's errors and interrupts into one line on stderr and the right exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        signal.signal(signal.SIGTERM, _on_sigterm)
        signal.signal(signal.SIGINT, _on_sigint)
        try:
            result = fn(*args, **kwargs)
            interrupts.check()  # an interrupt Python swallowed still ends the command as one
            return result
        except PorterError as e:
            if isinstance(e, UsageError):  # as click does for its own usage errors
                ctx = click.get_current_context(silent=True)
                if ctx is not None:
                    click.echo(ctx.get_usage() + f"\nTry '{ctx.command_path} -h' for help.\n", err=True)
            fail(str(e) or type(e).__name__, e.exit_code)
        except KeyboardInterrupt:
            fail("interrupted; partial output removed", EXIT_SIGINT)
        except Terminated:
            fail("terminated; partial output removed", EXIT_SIGTERM)
        except BrokenPipeError:
            fail("output pipe closed", 1)
        except click.exceptions.Exit:
            raise
        except (click.ClickException, click.exceptions.Abort):
            raise
        except Exception as e:  # a bug: still one line, never a traceback (PORTER_DEBUG=1 shows it)
            if os.environ.get("PORTER_DEBUG"):
                raise
            fail(f"internal error ({type(e).__name__}: {e}); please report it (PORTER_DEBUG=1 shows where)", 1)

    return wrapper


def registry_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options every command that talks to registries takes."""
    opts = [
        click.option("--creds", metavar="USER:PASS", help="Registry credentials (else PORTER_USERNAME/PORTER_PASSWORD, else docker's config.json)."),
        click.option("--insecure", is_flag=True, help="Allow plain HTTP and unverified TLS (always allowed for loopback hosts' plain HTTP)."),
        click.option("--ca-cert", type=click.Path(exists=True, dir_okay=False), help="Extra CA certificate to trust (also read: /etc/docker/certs.d/HOST:PORT/ca.crt)."),
        click.option("-j", "--jobs", type=click.IntRange(1, 64), default=4, show_default=True, help="Transfers and requests at once."),
        click.option("--retries", type=click.IntRange(0, 20), default=5, show_default=True, help="Retries per request on connection errors, 5xx and 429."),
        click.option("--timeout", type=click.FloatRange(1, 3600), default=60.0, show_default=True, help="Seconds without data before a connection counts as stalled."),
        click.option("-q", "--quiet", is_flag=True, help="No progress bars and no summary line."),
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
        click.option("--tags", "tags_re", metavar="REGEX", help="Only tags in which this regex is found (searched, unlike --include/--exclude: anchor it, '^v1\\.'; '1\\.' also takes v2.1.0)."),
        click.option("--latest", type=click.IntRange(1), metavar="N", help="Only the newest N tags per repository (semver, else creation time)."),
        click.option("--shard", metavar="I/N", help="Take only shard I (from 0) of N, split by repository."),
        click.option("--shards", type=click.IntRange(1), metavar="N", help="N shards, this one's index from JOB_COMPLETION_INDEX."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def referrer_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Artifacts attached to images (signatures, attestations, SBOMs) travel with them by default."""
    fn = click.option("--referrers-type", "referrer_types", multiple=True, metavar="TYPE",
                      help="Only attachments of this artifact type (repeatable), e.g. "
                           "application/vnd.dev.cosign.simplesigning.v1+json.")(fn)
    return click.option("--no-referrers", is_flag=True,
                        help="Leave behind what is attached to the images: OCI referrers, cosign .sig/.att/.sbom tags.")(fn)


def attachments(no_referrers: bool, types: tuple[str, ...]) -> Any:
    from .referrers import Attachments

    return Attachments(not no_referrers, tuple(types))


def push_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options of the commands that push into a registry."""
    opts = [
        click.option("--platform", "platform_", metavar="OS/ARCH[/VARIANT]",
                     help="Push only this platform of multi-platform images (the pushed digest then differs from the index's)."),
        click.option("--chunk-size", default="64MiB", show_default=True, metavar="SIZE", help="Upload blobs larger than this in chunks of this size (e.g. 64MiB, 1G)."),
        click.option("--dest-creds", metavar="USER:PASS", help="Credentials for the destination registry (default: --creds)."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def settings_picker(settings: dict[str, Any]) -> Callable[[str, Any, str], Any]:
    """``pick(param, value, key)``: a flag given on the command line wins over the job file's
    ``key``, which wins over the flag's default."""
    ctx = click.get_current_context()

    def pick(param: str, value: Any, key: str) -> Any:
        given = ctx.get_parameter_source(param) == click.core.ParameterSource.COMMANDLINE
        return value if given or key not in settings else settings[key]

    return pick


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


def parse_size(text: str, what: str = "chunk size") -> int:
    units = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20, "mb": 10**6, "mib": 1 << 20,
             "g": 1 << 30, "gb": 10**9, "gib": 1 << 30}
    t = text.strip().lower()
    num = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    try:
        n = int(float(num) * units[t[len(num):].strip()])
    except (ValueError, KeyError, OverflowError):
        raise click.BadParameter(f"{text!r} is not a size like 64MiB") from None
    if n < 1 << 20:
        raise click.BadParameter(f"{what} must be at least 1MiB")
    return n


def dest_options(opts: Any, creds: str | None) -> Any:
    """``opts`` with other credentials (``--src-creds``/``--dest-creds``) when given."""
    from .auth import Credentials

    return replace(opts, creds=Credentials.parse(creds)) if creds else opts
