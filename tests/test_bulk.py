"""Bulk migration: whole repositories and catalogs, filters, shards, job files, journal and resume."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from conftest import porter, skopeo_digest
from images import Seeder, busybox_layer, tar_layer
from proxy import Fault, Proxy
from services import Registry, free_port

SEMVER_TAGS = ["v1.0.0", "v1.1.0", "v1.10.0", "v2.0.0-rc.1", "v2.0.0"]


@pytest.fixture(scope="module")
def source(tools, tmp_path_factory):
    """A catalog of a few dozen images with layers shared across repositories."""
    reg = Registry(tmp_path_factory.mktemp("bulksrc"), free_port()).start()
    s = Seeder(reg.url)
    base = busybox_layer()
    pushed = {}
    for r in range(6):
        for t in SEMVER_TAGS:
            repo = f"team/svc{r}"
            pushed[f"{repo}:{t}"] = s.image(repo, t, [base, tar_layer({"v": f"{repo} {t}".encode()})])
    for i in range(5):  # not semver: creation time decides
        pushed[f"ci/build:build-{i}"] = s.image("ci/build", f"build-{i}", [base, tar_layer({"b": bytes([i])})],
                                                created=f"2024-0{i + 1}-01T00:00:00Z")
    pushed["team/tmp-x:1"] = s.image("team/tmp-x", "1", [tar_layer({"t": b"tmp"})])
    pushed["scratch/a:1"] = s.image("scratch/a", "1", [tar_layer({"s": b"s"})])
    reg.pushed = pushed
    yield reg
    reg.stop()


def mirror(*args: str, env: dict | None = None) -> tuple[int, dict, str]:
    p = porter("mirror", *args, "--json", env=env)
    out = json.loads(p.stdout) if p.stdout.strip() else {}
    return p.returncode, out, p.stderr.decode()


def tags_at(reg: Registry) -> set[str]:
    out = set()
    for repo in httpx.get(f"{reg.url}/v2/_catalog").json()["repositories"]:
        out |= {f"{repo}:{t}" for t in httpx.get(f"{reg.url}/v2/{repo}/tags/list").json().get("tags") or []}
    return out


def test_full_catalog_mirror(source, fresh_registry):
    dest = fresh_registry()
    code, out, err = mirror(source.host, f"{dest.host}/backup")
    assert code == 0, err
    assert out["copied"] == len(source.pushed) and out["failed"] == 0
    assert tags_at(dest) == {f"backup/{k}" for k in source.pushed}
    for k, img in source.pushed.items():
        assert skopeo_digest(f"{dest.host}/backup/{k}") == img.digest
    # The busybox base, shared by 36 images in 7 repositories, was sent once and mounted elsewhere.
    assert out["blobs"]["mounted"] >= 6
    again_code, again, _ = mirror(source.host, f"{dest.host}/backup")
    assert again_code == 0 and again["present"] == len(source.pushed) and again["bytes_sent"] == 0


def test_filters(source, fresh_registry):
    dest = fresh_registry()
    code, out, err = mirror(source.host, dest.host, "--include", "team/.*", "--exclude", ".*/tmp-.*",
                            "--tags", r"^v?\d+\.\d+\.\d+$", "--latest", "2")
    assert code == 0, err
    # svc*: release tags only (no -rc), newest two by semver: v2.0.0 and v1.10.0 (not v1.1.0).
    assert tags_at(dest) == {f"team/svc{r}:{t}" for r in range(6) for t in ("v2.0.0", "v1.10.0")}


def test_latest_by_creation_time(source, fresh_registry):
    dest = fresh_registry()
    code, _, err = mirror(f"{source.host}/ci/build", f"{dest.host}/ci/build", "--latest", "2")
    assert code == 0, err
    assert tags_at(dest) == {"ci/build:build-4", "ci/build:build-3"}


def test_dry_run_plan(source, fresh_registry):
    dest = fresh_registry()
    mirror(f"{source.host}/team/svc0:v1.0.0", f"{dest.host}/team/svc0")
    code, out, err = mirror(f"{source.host}/team/svc0", f"{dest.host}/team/svc0", "--dry-run")
    assert code == 0, err
    states = {i["source"].split(":")[-1]: i["state"] for i in out["images"]}
    assert states == {"v1.0.0": "present", **{t: "copy" for t in SEMVER_TAGS[1:]}}
    assert out["bytes_present"] > 0 and out["bytes_to_send"] > 0
    assert tags_at(dest) == {"team/svc0:v1.0.0"}  # nothing moved


def test_shards_cover_catalog_once(source, fresh_registry):
    dest = fresh_registry()
    procs = [subprocess.Popen([sys.executable, "-m", "porter", "mirror", source.host, dest.host, "--shard",
                               f"{i}/3", "--json", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(3)]
    seen: list[str] = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        seen += [i["source"] for i in json.loads(out)["images"]]
    assert len(seen) == len(set(seen)) == len(source.pushed)
    assert tags_at(dest) == set(source.pushed)
    # The same split from the Kubernetes Indexed Job variable.
    code, out, _ = mirror(source.host, dest.host, "--shards", "3", "--dry-run", env={"JOB_COMPLETION_INDEX": "1"})
    code2, out2, _ = mirror(source.host, dest.host, "--shard", "1/3", "--dry-run")
    assert [i["source"] for i in out["images"]] == [i["source"] for i in out2["images"]]


class BreakOne(Fault):
    """Corrupt the manifest of one image on its way from the source."""

    def __init__(self, path: str):
        self.path = path

    def mangle(self, seen, chunk, offset):
        if seen.method == "GET" and seen.path.endswith(self.path) and offset == 0:
            return chunk.replace(b"schemaVersion", b"schemaVersiom", 1)
        return chunk


@pytest.mark.fault('one image of a bulk job failing', 'reported with its reason; the others complete; exit 1')
def test_failing_image_does_not_stop_others(source, fresh_registry):
    dest = fresh_registry()
    proxy = Proxy(source.url, BreakOne("/team/svc1/manifests/v1.1.0"))
    try:
        code, out, err = mirror(f"{proxy.host}", dest.host, "--include", "team/svc1")
        assert code == 1
        assert out["failed"] == 1 and out["copied"] == len(SEMVER_TAGS) - 1
        failed = [i for i in out["images"] if i["state"] == "failed"]
        assert failed[0]["source"].endswith("team/svc1:v1.1.0") and "hashes to" in failed[0]["error"]
        assert "porter: failed:" in err and "team/svc1:v1.1.0" in err
        assert tags_at(dest) == {f"team/svc1:{t}" for t in SEMVER_TAGS if t != "v1.1.0"}
    finally:
        proxy.stop()


def test_job_file(source, fresh_registry, tmp_path):
    a, b = fresh_registry(), fresh_registry()
    job = tmp_path / "migration.toml"
    job.write_text(f"""
[settings]
jobs = 4

[[mirror]]
source = "{source.host}/ci/build"
destination = "{a.host}/ci/build"
latest = 1

[[mirror]]
source = "{source.host}"
destination = "{b.host}/mirror"
include = ["team/svc[23]"]
tags = '^v2'
""")
    p = porter("mirror", "--config", str(job), "--json")
    assert p.returncode == 0, p.stderr
    assert tags_at(a) == {"ci/build:build-4"}
    assert tags_at(b) == {f"mirror/team/svc{r}:{t}" for r in (2, 3) for t in ("v2.0.0", "v2.0.0-rc.1")}


@pytest.mark.fault('a malformed job file', 'one line naming file, line and key; exit 2')
@pytest.mark.parametrize("body,needle", [
    ('[[mirror]]\nsource = "a"\n', ":1: [[mirror]] #1 destination: required"),
    ('[[mirror]]\nsource = "a"\ndestination = "b"\nlatest = "five"\n', ":4: [[mirror]] #1 latest: must be int"),
    ('[[mirror]]\nsource = "a"\ndestination = "b"\n\n[[mirror]]\nsource = "c"\ndestination = "d"\nbogus = 1\n',
     ":8: [[mirror]] #2 bogus: unknown key"),
    ('[settings]\njobz = 3\n[[mirror]]\nsource = "a"\ndestination = "b"\n', ":2: unknown setting 'jobz'"),
    ('[[mirror]]\nsource = "a"\ndestination = "b"\ntags = "("\n', ":4: [[mirror]] #1 tags: invalid --tags"),
    ('[[mirror]\nsource = "a"\n', "line 1"),
    ('[[mirror]]\nsource = "a"\ndestination = "b"\nsource_credentials = "env:NOPE_PORTER"\n',
     ":4: [[mirror]] #1 source_credentials: environment variable NOPE_PORTER_USERNAME"),
])
def test_job_file_errors(tmp_path, body, needle):
    job = tmp_path / "bad.toml"
    job.write_text(body)
    p = porter("mirror", "--config", str(job))
    err = p.stderr.decode()
    assert p.returncode == 2 and str(job) in err and needle in err, err
    assert err.count("\n") == 1


class HoldFourthChunk(Fault):
    """Hold the 4th PATCH (the kill lands while it waits, before the registry sees any of it)."""

    def __init__(self):
        self.patches = 0

    def hold(self, seen):
        if seen.method == "PATCH":
            self.patches += 1
            if self.patches == 4:
                return 20.0
        return 0.0


@pytest.fixture(scope="module")
def big(source):
    s = Seeder(source.url)
    return s.image_from_blobs("big/blob", "1", b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}',
                              [os.urandom(6 * 1024 * 1024 + 7)])


def journal_rows(path, sql: str) -> list:
    """Rows of a journal (SQLite), read as any other program would."""
    import sqlite3

    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


@pytest.mark.fault('kill -9 between upload chunks', 'rerun continues the upload at the journaled offset')
def test_kill_9_mid_upload_resumes_from_journal(source, big, fresh_registry, tmp_path):
    dest = fresh_registry()
    proxy = Proxy(dest.url, HoldFourthChunk())
    state = tmp_path / "job.json"
    args = [sys.executable, "-m", "porter", "mirror", f"{source.host}/big/blob", f"{proxy.host}/big/blob",
            "--chunk-size", "1MiB", "--state", str(state), "-q", "-j", "1"]
    try:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(proxy.requests("PATCH")) < 4:
            time.sleep(0.02)
        proc.kill()
        proc.wait()
        (offset,) = journal_rows(state, "SELECT offset FROM uploads")
        assert offset == (3 * 1024 * 1024,)
        mark = len(proxy.seen)
        p = subprocess.run(args[:-3] + ["--json"], capture_output=True)
        assert p.returncode == 0, p.stderr
        after = proxy.seen[mark:]
        # The rerun asked the registry where the old upload stood and went on from there.
        status = [s for s in after if s.method == "GET" and "/blobs/uploads/" in s.path]
        assert status and status[0].status == 204
        patches = [s.headers["Content-Range"] for s in after if s.method == "PATCH"]
        assert patches[0] == f"{3 * 1024 * 1024}-{4 * 1024 * 1024 - 1}", patches
        assert len(patches) == 4  # 3 MiB + 7 bytes left: chunks 4, 5, 6 and the tail
        assert skopeo_digest(f"{dest.host}/big/blob:1") == big.digest
        assert journal_rows(state, "SELECT * FROM uploads") == []
    finally:
        proxy.stop()


@pytest.mark.fault('kill -9 at several points of a bulk mirror', 'rerun completes; no finished blob is sent again')
def test_kill_9_at_several_points_then_rerun(source, fresh_registry, tmp_path):
    dest = fresh_registry()
    proxy = Proxy(dest.url)
    state = tmp_path / "job.json"
    args = [sys.executable, "-m", "porter", "mirror", source.host, proxy.host, "--include", "team/svc[0-2]",
            "--state", str(state), "-q", "-j", "2"]
    try:
        for wait_puts in (3, 12):
            proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and len([s for s in proxy.seen if s.method == "PUT"]) < wait_puts:
                time.sleep(0.005)
            proc.kill()
            proc.wait()
        finished = {unquote(s.path).split("digest=")[1] for s in proxy.seen
                    if s.method == "PUT" and "digest=" in s.path and s.status == 201}
        mark = len(proxy.seen)
        p = subprocess.run(args + ["--json"], capture_output=True)
        assert p.returncode == 0, p.stderr
        again = [s for s in proxy.seen[mark:] if s.method in ("PUT", "PATCH") and "/blobs/" in s.path
                 and any(d in unquote(s.path) for d in finished)]
        assert again == []
        for r in range(3):
            for t in SEMVER_TAGS:
                assert skopeo_digest(f"{dest.host}/team/svc{r}:{t}") == source.pushed[f"team/svc{r}:{t}"].digest
    finally:
        proxy.stop()


@pytest.mark.fault('a corrupt journal (not a porter journal)', 'refused, left as it is: never replaced')
@pytest.mark.fault("another job's journal", 'reported and ignored; the registry decides')
def test_corrupt_or_foreign_journal(source, fresh_registry, tmp_path):
    dest = fresh_registry()
    state = tmp_path / "job.json"
    state.write_text("{not json")
    code, out, err = mirror(f"{source.host}/scratch/a", f"{dest.host}/scratch/a", "--state", str(state))
    assert code == 1 and "not a porter journal" in err and state.read_text() == "{not json"
    state.write_text(json.dumps({"version": 1, "job": "someone else's", "images": {}, "uploads": {
        "x": {"location": "http://127.0.0.1:1/v2/evil", "offset": 5}}}))
    code, out, err = mirror(f"{source.host}/scratch/a", f"{dest.host}/scratch/a", "--state", str(state))
    assert code == 0 and "belongs to another job" in err


def test_export_bulk(source, tmp_path):
    out = tmp_path / "svc.tar"
    p = porter("export", f"{source.host}/team/svc4", "--tags", r"v1\..*", "-o", str(out), "--json")
    assert p.returncode == 0, p.stderr
    refs = sorted(i["reference"].split(":")[-1] for i in json.loads(p.stdout)["images"])
    assert refs == ["v1.0.0", "v1.1.0", "v1.10.0"]


def test_shipped_example_job_file_parses(monkeypatch):
    from porter.jobfile import load_job_file

    monkeypatch.setenv("OLD_USERNAME", "u")
    monkeypatch.setenv("OLD_PASSWORD", "p")
    root = Path(__file__).resolve().parent.parent
    entries, settings = load_job_file(str(root / "deploy/kubernetes/migration.toml"))
    assert settings["jobs"] == 8 and len(entries) == 2
    assert entries[0].src_creds.username == "u" and entries[0].filters.latest == 5
    assert entries[1].platform == "linux/amd64"


def test_repository_source_refuses_tagged_destination(source, fresh_registry):
    code, _, err = mirror(f"{source.host}/team/svc0", f"{fresh_registry().host}/team/svc0:stable")
    assert code == 1 and "keeps its tags" in err
