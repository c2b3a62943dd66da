"""What the commands print: human sizes and tables on the terminal, or one JSON summary."""
from __future__ import annotations

import json
from typing import Any

import click


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


def report(summary: dict[str, Any], as_json: bool, quiet: bool, line: str) -> None:
    """``--json``: the summary on stdout; else one line (on stderr when stdout carries data)."""
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    elif not quiet:
        click.echo(clean(line), err=summary.get("output") == "-")


def report_push(summary: dict[str, Any], quiet: bool, as_json: bool) -> None:
    for img in summary["images"]:
        if "source_digest" in img and not quiet:
            say(f"note: pushed only {img['platform']} of {img['source']}: {img['destination']} is "
                f"{img['digest']}, not the index digest {img['source_digest']}")
        if img["state"] == "failed":
            say(f"failed: {img['source']}: {img['error']}")
    b = summary["blobs"]
    report(summary, as_json, quiet,
           f"{summary['copied']} image(s) copied, {summary['present']} already there, {summary['failed']} failed"
           + (f" (of them {summary['artifacts']} attached artifact(s): signatures, SBOMs, …)" if summary.get("artifacts") else "")
           + "; "
           f"blobs: {b['uploaded']} uploaded ({human_size(summary['bytes_sent'])}), {b['mounted']} mounted, "
           f"{b['skipped']} already there ({human_size(summary['bytes_skipped'])} not sent); "
           f"{summary['seconds']:.2f}s")


def report_load(summary: dict[str, Any], quiet: bool, as_json: bool) -> None:
    report(summary, as_json, quiet, f"loaded into the docker daemon: {', '.join(summary['loaded']) or 'nothing'} "
           f"in {summary['seconds']:.2f}s")


def report_preview(pre: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(pre, indent=2))
        return
    rows = [["SOURCE", "DESTINATION", "ACTION", "SIZE"]] + [
        [i["source"], i["destination"], "copy" if i["state"] == "copy" else "already there", human_size(i["bytes"])]
        for i in pre["images"]] + [[f["source"], f["destination"], f"fails: {f['error']}", ""] for f in pre["failed"]]
    click.echo(table(rows))
    click.echo(f"{sum(i['state'] == 'copy' for i in pre['images'])} of {len(pre['images'])} image(s) to copy: "
               f"{human_size(pre['bytes_to_send'])} to send, {human_size(pre['bytes_present'])} already at the "
               f"destination" + (f"; {len(pre['failed'])} cannot be read" if pre["failed"] else ""))
