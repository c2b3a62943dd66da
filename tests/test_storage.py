"""The raw storage directory as a source: export, ls, --check, and the errors broken storage gets."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from conftest import porter
from images import Seeder, busybox_layer, tar_layer
from proxy import Fault, Proxy
from services import Registry, free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def own(tools, tmp_path_factory):
    """A registry of this module's own, with nested names; stopped by the last tests."""
    reg = Registry(tmp_path_factory.mktemp("own"), free_port()).start()
    s = Seeder(reg.url)
    base = busybox_layer()
    pushed = {
        "app": s.image("team/app", "1.0", [base, tar_layer({"etc/app.txt": b"app from storage\n"})],
                       cmd=["/bin/cat", "/etc/app.txt"]),
        "nested": s.image("org/team/deep/tool", "v2", [base], fmt="oci", cmd=["/bin/echo", "deep"]),
    }
    for i in range(5):
        s.image("many/repo", f"t{i}", [tar_layer({f"f{i}": b"x"})])
    for i in range(5):
        s.image(f"page/r{i}", "1", [tar_layer({f"g{i}": b"y"})])
    amd = s.image("multi/img", None, [base], cmd=["/bin/echo", "amd64"])
    arm = s.image("multi/img", None, [tar_layer({"a": b"arm"})], arch="arm64")
    s.index("multi/img", "1", [(amd, {"os": "linux", "architecture": "amd64"}),
                               (arm, {"os": "linux", "architecture": "arm64"})], fmt="oci")
    reg.pushed = pushed
    yield reg
    reg.stop()


def test_export_from_storage_loads_and_runs(own, dockerd, tmp_path):
    out = tmp_path / "s.tar"
    porter("export", "--storage", str(own.storage), "team/app:1.0", "org/team/deep/tool:v2", "-o", str(out),
           check=True)
    client = dockerd.client()
    client.images.load(out.read_bytes())
    assert client.containers.run("team/app:1.0", network_mode="none", remove=True) == b"app from storage\n"
    assert client.containers.run("org/team/deep/tool:v2", network_mode="none", remove=True) == b"deep\n"


def test_storage_archive_identical_to_http(own, tmp_path):
    refs = ["team/app:1.0", "org/team/deep/tool:v2", "multi/img:1"]
    http_out, storage_out = tmp_path / "http.tar", tmp_path / "storage.tar"
    porter("export", *[f"{own.host}/{r}" for r in refs], "--all-platforms", "-o", str(http_out), check=True)
    # The storage root, and the v2 directory itself, are both accepted.
    for root in (own.storage, own.storage / "docker" / "registry" / "v2"):
        porter("export", "--storage", str(root), "--as-registry", own.host, *refs, "--all-platforms",
               "-o", str(storage_out), "--force", check=True)
        assert storage_out.read_bytes() == http_out.read_bytes()


def ls_json(*args: str) -> list:
    p = porter("ls", *args, "--json")
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


class SmallPages(Fault):
    """Ask the registry for pages of 2, so the Link header has to be followed."""

    def request(self, seen, headers):
        seen.path = seen.path.replace("n=1000", "n=2")
        return None


def test_ls_matches_catalog_and_tags(own):
    catalog = httpx.get(f"{own.url}/v2/_catalog?n=1000").json()["repositories"]
    from_storage = ls_json("--storage", str(own.storage))
    assert [r["repository"] for r in from_storage] == catalog
    proxy = Proxy(own.url, SmallPages())
    try:
        over_http = ls_json(proxy.host)
        assert [r["repository"] for r in over_http] == catalog
        assert len(proxy.requests("GET", "/v2/_catalog")) > 3  # it really paged
        tags = httpx.get(f"{own.url}/v2/many/repo/tags/list").json()["tags"]
        rows = ls_json(f"{proxy.host}/many/repo")
        assert sorted(r["tag"] for r in rows) == sorted(tags)
        assert len(proxy.requests("GET", "/tags/list")) >= 3
    finally:
        proxy.stop()
    rows = ls_json("--storage", str(own.storage), "many/repo")
    assert sorted(r["tag"] for r in rows) == sorted(tags)
    # Storage and HTTP describe a tag the same way (digest, platforms, size).
    assert ls_json("--storage", str(own.storage), "multi/img") == ls_json(f"{own.host}/multi/img")
    row = ls_json("--storage", str(own.storage), "multi/img")[0]
    assert row["platforms"] == ["linux/amd64", "linux/arm64"]
    app = ls_json("--storage", str(own.storage), "team/app")[0]
    assert app["digest"] == own.pushed["app"].digest and app["platforms"] == ["linux/amd64"]


def test_ls_human_table(own):
    p = porter("ls", "--storage", str(own.storage), "team/app")
    out = p.stdout.decode()
    assert p.returncode == 0 and out.splitlines()[0].split() == ["REPOSITORY", "TAG", "DIGEST", "PLATFORMS", "SIZE", "ARTIFACTS"]
    assert "team/app" in out and "1.0" in out and own.pushed["app"].digest[:19] in out


@pytest.fixture
def broken(own, tmp_path):
    """A private copy of the storage to break."""
    d = tmp_path / "copy"
    shutil.copytree(own.storage, d)
    return d


def _blob(root: Path, digest: str) -> Path:
    h = digest[7:]
    return root / "docker/registry/v2/blobs/sha256" / h[:2] / h / "data"


@pytest.mark.fault('corrupt blob in a storage directory', 'export refused naming it; ls --check reports it, exit 1')
def test_corrupt_blob(own, broken, tmp_path):
    layer = own.pushed["app"].blobs[2]
    p = _blob(broken, layer)
    p.write_bytes(b"X" + p.read_bytes()[1:])
    r = porter("export", "--storage", str(broken), "team/app:1.0", "-o", str(tmp_path / "a.tar"))
    assert r.returncode == 1 and b"is corrupt" in r.stderr and layer.encode() in r.stderr, r.stderr
    assert not (tmp_path / "a.tar").exists()
    c = porter("ls", "--storage", str(broken), "--check")
    assert c.returncode == 1 and layer.encode() in c.stderr and b"1 problem" in c.stderr


@pytest.mark.fault('missing blob in a storage directory', 'export refused naming it; ls --check reports it')
def test_missing_blob(own, broken, tmp_path):
    layer = own.pushed["app"].blobs[2]
    _blob(broken, layer).unlink()
    r = porter("export", "--storage", str(broken), "team/app:1.0", "-o", str(tmp_path / "a.tar"))
    assert r.returncode == 1 and b"missing from storage" in r.stderr and layer.encode() in r.stderr
    c = porter("ls", "--storage", str(broken), "team/app", "--check")
    assert c.returncode == 1 and b"missing" in c.stderr


@pytest.mark.fault('tag link pointing at a missing manifest', 'named in the error and by ls --check')
def test_dangling_tag_link(own, broken, tmp_path):
    _blob(broken, own.pushed["app"].digest).unlink()
    r = porter("export", "--storage", str(broken), "team/app:1.0", "-o", str(tmp_path / "a.tar"))
    assert r.returncode == 1 and b"team/app:1.0: points at" in r.stderr and b"missing" in r.stderr
    c = porter("ls", "--storage", str(broken), "team/app", "--check")
    assert c.returncode == 1 and b"team/app:1.0" in c.stderr


def test_clean_check_passes(own):
    c = porter("ls", "--storage", str(own.storage), "--check")
    assert c.returncode == 0, c.stderr
    assert b"0 problem(s)" in c.stderr


@pytest.mark.fault('a directory that is not registry storage', 'one line; exit 1')
def test_not_registry_storage(tmp_path):
    (tmp_path / "random").mkdir()
    for d, needle in ((tmp_path / "random", b"is not registry storage"), (tmp_path / "nope", b"no such directory")):
        r = porter("ls", "--storage", str(d))
        assert r.returncode == 1 and needle in r.stderr and r.stderr.count(b"\n") == 1


def test_unknown_repository_and_tag(own, tmp_path):
    r = porter("export", "--storage", str(own.storage), "team/nope:1", "-o", str(tmp_path / "a.tar"))
    assert r.returncode == 1 and b"no such repository" in r.stderr
    r = porter("export", "--storage", str(own.storage), "team/app:9.9", "-o", str(tmp_path / "a.tar"))
    assert r.returncode == 1 and b"team/app:9.9: not found" in r.stderr


@pytest.mark.fault('an unreadable file in storage', 'one line naming it; no traceback')
def test_unreadable_file(own, broken, tmp_path):
    p = _blob(broken, own.pushed["app"].blobs[2])
    p.unlink()
    p.mkdir()  # a directory where the data file should be: unreadable even for root
    r = porter("export", "--storage", str(broken), "team/app:1.0", "-o", str(tmp_path / "a.tar"))
    assert r.returncode == 1 and b"not a regular file" in r.stderr and b"Traceback" not in r.stderr


def test_export_while_registry_stopped(own, tmp_path):
    """Last in this module: the storage of a stopped registry is still a full source."""
    own.stop()
    out = tmp_path / "stopped.tar"
    porter("export", "--storage", str(own.storage), "team/app:1.0", "multi/img:1", "-o", str(out), check=True)
    names = subprocess.run(["tar", "tf", str(out)], capture_output=True, text=True, check=True).stdout.split()
    assert "manifest.json" in names and f"blobs/sha256/{own.pushed['app'].digest[7:]}" in names
