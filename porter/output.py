"""What the commands print: human sizes and tables on the terminal, or one JSON summary."""
from __future__ import annotations

import json
from typing import Any

import click

from .results import ExportResult, LoadResult, PreviewResult, PushResult, to_json


def clean(text: object) -> str:
    """``text`` safe for a terminal: control and format characters (escape sequences, CR, LF,
    bidi overrides) from registries, names or archives become visible escapes."""
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else repr(c)[1:-1] if c != "'" else c for c in s)


def human_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def table(rows: list[list[str]]) -> str:
    rows = [[clean(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def say(message: str) -> None:
    """A note on stderr (progress of a job, a warning): never mixed into --json output."""
    click.echo(f"porter: {clean(message)}", err=True)


def report(result: Any, as_json: bool, quiet: bool, line: str, to_stderr: bool = False) -> None:
    """``--json``: the result on stdout; else one line (on stderr when stdout carries data)."""
    if as_json:
        click.echo(json.dumps(to_json(result), indent=2))
    elif not quiet:
        click.echo(clean(line), err=to_stderr)


def report_push(r: PushResult, quiet: bool, as_json: bool) -> None:
    for img in r.images:
        if img.source_digest and not quiet:
            say(f"note: pushed only {img.platform} of {img.source}: {img.destination} is "
                f"{img.digest}, not the index digest {img.source_digest}")
        if img.state == "failed":
            say(f"failed: {img.source}: {img.error}")
    b = r.blobs
    report(r, as_json, quiet,
           f"{r.copied} image(s) copied, {r.present} already there, {r.failed} failed"
           + (f" (of them {r.artifacts} attached artifact(s): signatures, SBOMs, …)" if r.artifacts else "")
           + "; "
           f"blobs: {b.uploaded} uploaded ({human_size(r.bytes_sent)}), {b.mounted} mounted, "
           f"{b.skipped} already there ({human_size(r.bytes_skipped)} not sent); "
           f"{r.seconds:.2f}s")


def report_load(r: LoadResult, quiet: bool, as_json: bool) -> None:
    report(r, as_json, quiet, f"loaded into the docker daemon: {', '.join(r.loaded) or 'nothing'} "
           f"in {r.seconds:.2f}s")


def report_preview(pre: PreviewResult, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(to_json(pre), indent=2))
        return
    rows = [["SOURCE", "DESTINATION", "ACTION", "SIZE"]] + [
        [i.source, i.destination, "copy" if i.state == "copy" else "already there", human_size(i.bytes)]
        for i in pre.images] + [[f.source, f.destination, f"fails: {f.error}", ""] for f in pre.failed]
    click.echo(table(rows))
    click.echo(f"{sum(i.state == 'copy' for i in pre.images)} of {len(pre.images)} image(s) to copy: "
               f"{human_size(pre.bytes_to_send)} to send, {human_size(pre.bytes_present)} already at the "
               f"destination" + (f"; {len(pre.failed)} cannot be read" if pre.failed else ""))


def report_export(r: ExportResult, quiet: bool, as_json: bool) -> None:
    for img in r.images:
        if img.archived_digest:
            say(f"note: {img.reference} is a multi-platform image; the archive keeps only {img.platform} "
                f"({img.archived_digest}), so an import pushes that digest, not the index's {img.digest} "
                f"(--all-platforms keeps every platform and the index digest)")
        if img.zstd_layers:
            say(f"warning: {img.reference} has zstd-compressed layers: docker load before Docker 23 "
                f"(Debian's docker.io 20.10 among them) cannot load it")
    written = f"{len(r.volumes)} volume(s) {r.output}.000…" if r.volumes else r.output
    d = r.delta
    report(r, as_json, quiet, f"wrote {written}: {len(r.images)} image(s), {r.blobs} blobs, "
           f"{human_size(r.archive_bytes)} in {r.seconds:.2f}s"
           + (f"; a delta: {d.omitted} layer(s) ({human_size(d.omitted_bytes)}) left to the base" if d else "")
           + (f"; {len(r.refused)} listed name(s) refused" if r.refused else ""), to_stderr=r.output == "-")


def show(result: PushResult | LoadResult | PreviewResult, quiet: bool, as_json: bool) -> None:
    """Print the result of an import or mirror, whichever kind of job it was."""
    if isinstance(result, PreviewResult):
        report_preview(result, as_json)
    elif isinstance(result, LoadResult):
        report_load(result, quiet, as_json)
    else:
        report_push(result, quiet, as_json)


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
