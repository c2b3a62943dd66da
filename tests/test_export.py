"""porter export against a real registry, checked with docker load/run, skopeo and by hashing."""
from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest

from conftest import porter


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as t:
        return {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_two_images_load_and_run(registry, catalog, dockerd, tmp_path):
    out = tmp_path / "images.tar"
    api, web = f"{registry.host}/team/api:1.4", f"{registry.host}/team/web:2.0"
    porter("export", api, web, "-o", str(out), check=True)
    client = dockerd.client()
    with open(out, "rb") as f:
        loaded = client.images.load(f.read())
    tags = {t for img in loaded for t in img.tags}
    assert {api, web} <= tags
    assert client.containers.run(api, network_mode="none", remove=True) == b"api 1.4\n"
    assert client.containers.run(web, network_mode="none", remove=True) == b"web 2.0\n"


def test_archive_keeps_blobs_as_served_and_dedups(registry, catalog, tmp_path):
    out = tmp_path / "images.tar"
    porter("export", f"{registry.host}/team/api:1.4", f"{registry.host}/team/web:2.0", "-o", str(out), check=True)
    m = members(out)
    api, web = catalog["api"], catalog["web"]
    # Every blob is stored under its digest and hashes to it; the shared base layer once.
    for name, data in m.items():
        if name.startswith("blobs/sha256/"):
            assert sha(data) == "sha256:" + name.rsplit("/", 1)[1]
    assert api.blobs[1] == web.blobs[1]  # the busybox base
    with tarfile.open(out) as t:
        names = [x.name for x in t.getmembers()]
    assert names.count(f"blobs/sha256/{api.blobs[1][7:]}") == 1
    # The original manifest bytes are kept, so a later import reproduces the digests.
    assert m[f"blobs/sha256/{api.digest[7:]}"] == api.raw
    index = json.loads(m["index.json"])
    assert [d["digest"] for d in index["manifests"]] == [api.digest, web.digest]
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "1.4"
    manifest = json.loads(m["manifest.json"])
    assert manifest[0]["RepoTags"] == [f"{registry.host}/team/api:1.4"]
    assert manifest[0]["Layers"] == [f"blobs/sha256/{d[7:]}" for d in api.blobs[1:]]
    assert json.loads(m["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}


def test_oci_part_read_by_skopeo_keeps_digest(registry, catalog, tmp_path):
    out = tmp_path / "oci.tar"
    porter("export", f"{registry.host}/oci/app:1", "-o", str(out), check=True)
    import subprocess

    dest = f"{registry.host}/copied/by-skopeo:1"
    subprocess.run(["skopeo", "copy", "--dest-tls-verify=false", f"oci-archive:{out}:1", f"docker://{dest}"],
                   check=True, capture_output=True)
    raw = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{dest}"],
                         check=True, capture_output=True).stdout
    assert sha(raw) == catalog["oci"].digest


@pytest.mark.parametrize("repo", ["multi/list", "multi/oci"])
def test_platform_selection(registry, catalog, tmp_path, repo):
    out = tmp_path / "arm.tar"
    p = porter("export", f"{registry.host}/{repo}:1", "--platform", "linux/arm64", "-o", str(out), "--json")
    assert p.returncode == 0, p.stderr
    m = members(out)
    arm, amd = catalog[repo + ":arm64"], catalog[repo + ":amd64"]
    index = json.loads(m["index.json"])
    assert [d["digest"] for d in index["manifests"]] == [arm.digest]
    assert json.loads(m["manifest.json"])[0]["Config"] == f"blobs/sha256/{arm.blobs[0][7:]}"
    assert f"blobs/sha256/{amd.digest[7:]}" not in m and f"blobs/sha256/{amd.blobs[-1][7:]}" not in m
    summary = json.loads(p.stdout)
    assert summary["images"][0]["digest"] == catalog[repo].digest
    assert summary["images"][0]["loads"] == arm.digest


@pytest.mark.parametrize("repo", ["multi/list", "multi/oci"])
def test_all_platforms_keeps_whole_index(registry, catalog, dockerd, tmp_path, repo):
    out = tmp_path / "all.tar"
    ref = f"{registry.host}/{repo}:1"
    porter("export", ref, "--all-platforms", "-o", str(out), check=True)
    m = members(out)
    top = catalog[repo]
    index = json.loads(m["index.json"])
    assert [d["digest"] for d in index["manifests"]] == [top.digest]
    assert m[f"blobs/sha256/{top.digest[7:]}"] == top.raw
    for arch in ("amd64", "arm64"):
        child = catalog[f"{repo}:{arch}"]
        assert m[f"blobs/sha256/{child.digest[7:]}"] == child.raw
        for b in child.blobs:
            assert f"blobs/sha256/{b[7:]}" in m
    # docker load gets the host's platform, and it runs.
    client = dockerd.client()
    client.images.load(out.read_bytes())
    assert client.containers.run(ref, network_mode="none", remove=True) == b"amd64\n"


def test_zstd_output_and_stdout(registry, catalog, tmp_path):
    import zstandard

    ref = f"{registry.host}/team/api:1.4"
    plain = tmp_path / "a.tar"
    porter("export", ref, "-o", str(plain), check=True)
    z = tmp_path / "a.tar.zst"
    porter("export", ref, "-o", str(z), check=True)
    assert zstandard.ZstdDecompressor().stream_reader(z.open("rb")).read() == plain.read_bytes()
    p = porter("export", ref, "-o", "-", check=True)
    assert p.stdout == plain.read_bytes()


def test_digest_reference_loads_untagged(registry, catalog, tmp_path):
    api = catalog["api"]
    out = tmp_path / "d.tar"
    porter("export", f"{registry.host}/team/api@{api.digest}", "-o", str(out), check=True)
    m = members(out)
    assert json.loads(m["manifest.json"])[0]["RepoTags"] is None
    assert json.loads(m["index.json"])["manifests"][0]["digest"] == api.digest
