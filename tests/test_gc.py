"""delete, prune and gc against a real registry, with the registry's own garbage-collect as the oracle."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import porter, skopeo_digest
from images import Seeder, busybox_layer, tar_layer
from proxy import Proxy
from services import Registry, free_port


def registry_gc(reg: Registry, untagged: bool) -> tuple[set[str], set[str]]:
    """(blobs, manifests) the registry's own GC would delete, from its --dry-run output."""
    args = ["docker-registry", "garbage-collect", "--dry-run"] + (["--delete-untagged"] if untagged else [])
    out = subprocess.run(args + [str(reg.root / "config.yml")], capture_output=True, text=True, check=True).stdout
    blobs = set(re.findall(r"blob eligible for deletion: (sha256:[a-f0-9]{64})", out))
    manifests = set(re.findall(r"manifest eligible for deletion: (sha256:[a-f0-9]{64})", out))
    return blobs, manifests


def porter_gc(reg: Registry, *args: str) -> dict:
    p = porter("gc", str(reg.storage), "--json", *args)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def delete_api(reg: Registry, repo: str, digest: str) -> None:
    assert httpx.delete(f"{reg.url}/v2/{repo}/manifests/{digest}").status_code == 202


@pytest.fixture
def scenario(tools, tmp_path):
    """A registry with: shared layers across repos, a deleted tag, an overwritten tag (untagged
    revision), a Docker list whose child is also tagged elsewhere, and an OCI index."""
    reg = Registry(tmp_path / "reg", free_port()).start()
    s = Seeder(reg.url)
    base = busybox_layer()
    keep = s.image("shared/a", "1", [base, tar_layer({"a": b"a"})], cmd=["/bin/cat", "/a"])
    s.image("shared/b", "1", [base, tar_layer({"b": b"b"})], cmd=["/bin/cat", "/b"])
    gone = s.image("shared/a", "old", [base, tar_layer({"gone": b"deleted tag"})])
    delete_api(reg, "shared/a", gone.digest)
    s.image("over/write", "latest", [base, tar_layer({"v": b"v1"})])
    s.image("over/write", "latest", [base, tar_layer({"v": b"v2"})])  # v1 is now an untagged revision
    amd = s.image("multi/list", None, [base, tar_layer({"m": b"amd64"})], cmd=["/bin/cat", "/m"])
    arm = s.image("multi/list", None, [tar_layer({"m": b"arm64"})], arch="arm64")
    s.index("multi/list", "1", [(amd, {"os": "linux", "architecture": "amd64"}),
                                (arm, {"os": "linux", "architecture": "arm64"})])
    s.image("multi/list", "amd64-only", [base, tar_layer({"m": b"amd64"})], cmd=["/bin/cat", "/m"])  # = amd
    oamd = s.image("multi/oci", None, [base, tar_layer({"o": b"oci amd64"})], fmt="oci", cmd=["/bin/cat", "/o"])
    oarm = s.image("multi/oci", None, [tar_layer({"o": b"oci arm64"})], fmt="oci", arch="arm64")
    s.index("multi/oci", "1", [(oamd, {"os": "linux", "architecture": "amd64"}),
                               (oarm, {"os": "linux", "architecture": "arm64"})], fmt="oci")
    reg.children = {"multi/list": (amd, arm), "multi/oci": (oamd, oarm)}
    reg.keep, reg.gone = keep, gone
    yield reg
    reg.stop()


def all_tags(reg: Registry) -> list[str]:
    refs = []
    for repo in httpx.get(f"{reg.url}/v2/_catalog").json()["repositories"]:
        tags = httpx.get(f"{reg.url}/v2/{repo}/tags/list").json().get("tags") or []
        refs += [f"{repo}:{t}" for t in tags]
    return refs


def assert_serves_everything(reg: Registry, refs: list[str], tmp_path: Path) -> None:
    """After a GC: the restarted registry serves every tag, all platforms, every blob verified."""
    reg.stop()
    reg.start()
    for i, ref in enumerate(refs):
        subprocess.run(["skopeo", "copy", "--all", "--src-tls-verify=false", f"docker://{reg.host}/{ref}",
                        f"dir:{tmp_path}/copy{i}"], check=True, capture_output=True)


def test_gc_matches_registry(scenario, tmp_path):
    reg_blobs, _ = registry_gc(scenario, untagged=False)
    plan = porter_gc(scenario, "--dry-run")
    assert set(plan["blobs"]) == reg_blobs
    assert scenario.gone.blobs[-1] in reg_blobs  # the deleted tag's own layer
    assert plan["manifests"] == []
    refs = all_tags(scenario)
    real = porter_gc(scenario)
    assert set(real["blobs"]) == reg_blobs and real["bytes"] > 0
    assert registry_gc(scenario, untagged=False)[0] == set()  # nothing left for the registry to collect
    assert_serves_everything(scenario, refs, tmp_path)


def test_gc_delete_untagged_keeps_multiarch_children(scenario, tmp_path):
    reg_blobs, reg_manifests = registry_gc(scenario, untagged=True)
    plan = porter_gc(scenario, "--dry-run", "--delete-untagged")
    # Registry 2.8 also deletes the untagged children of the tagged indexes, and the blobs only
    # they use. The amd64 child of multi/list is tagged itself (amd64-only), so both keep that one.
    amd_list = scenario.children["multi/list"][0]
    untagged_children = {c.digest: c for pair in scenario.children.values() for c in pair} 
    untagged_children.pop(amd_list.digest)
    assert set(untagged_children) <= reg_manifests
    assert set(plan["blobs"]) == reg_blobs - {b for c in untagged_children.values() for b in c.blobs}
    assert set(plan["blobs"]) < reg_blobs
    untagged = {m.split("@")[1] for m in plan["manifests"]}
    assert untagged == reg_manifests - set(untagged_children) and len(untagged) == 1  # over/write v1
    refs = all_tags(scenario)
    porter_gc(scenario, "--delete-untagged")
    assert_serves_everything(scenario, refs, tmp_path)
    for repo, (amd, arm) in scenario.children.items():
        assert skopeo_digest(f"{scenario.host}/{repo}@{arm.digest}") == arm.digest


@pytest.mark.fault('gc on a non-storage directory, or while uploads are active', 'refused; says to stop the registry or make it read-only')
def test_gc_refuses_non_storage_and_active_uploads(scenario, tmp_path):
    p = porter("gc", str(tmp_path))
    assert p.returncode == 1 and b"is not registry storage" in p.stderr
    r = httpx.post(f"{scenario.url}/v2/shared/a/blobs/uploads/")
    loc = httpx.URL(scenario.url).join(r.headers["Location"])
    httpx.patch(loc, content=b"partial", headers={"Content-Type": "application/octet-stream"})
    p = porter("gc", str(scenario.storage))
    assert p.returncode == 1 and b"look active" in p.stderr and b"read-only" in p.stderr
    assert porter("gc", str(scenario.storage), "--dry-run").returncode == 0
    assert porter("gc", str(scenario.storage), "--force").returncode == 0


def test_gc_removes_stale_uploads(scenario):
    httpx.post(f"{scenario.url}/v2/shared/a/blobs/uploads/")
    uploads = scenario.storage / "docker/registry/v2/repositories/shared/a/_uploads"
    (d,) = list(uploads.iterdir())
    (d / "startedat").write_text("2000-01-01T00:00:00Z")
    plan = porter_gc(scenario, "--force")
    assert plan["uploads"] == [str(d)] and not d.exists()


def test_delete_by_tag_and_shared_digest(tools, tmp_path):
    reg = Registry(tmp_path / "reg", free_port()).start()
    try:
        s = Seeder(reg.url)
        img = s.image("team/api", "1.0", [tar_layer({"x": b"1"})])
        s.manifest("team/api", "also", img.raw, img.media_type)
        other = s.image("team/api", "2.0", [tar_layer({"x": b"2"})])
        proxy = Proxy(reg.url)
        try:
            p = porter("delete", f"{proxy.host}/team/api:1.0")
            assert p.returncode == 1 and b"also tagged also" in p.stderr and b"--force" in p.stderr
            dry = porter("delete", f"{proxy.host}/team/api:1.0", "--force", "--dry-run")
            assert dry.returncode == 0 and b"would delete" in dry.stdout
            assert skopeo_digest(f"{reg.host}/team/api:1.0") == img.digest
            porter("delete", f"{proxy.host}/team/api:1.0", "--force", check=True)
            heads = [x for x in proxy.seen if x.method == "HEAD" and x.path.endswith("/manifests/1.0")]
            accept = heads[0].headers["Accept"]
            for mt in ("manifest.v2+json", "manifest.list.v2+json", "image.manifest.v1+json", "image.index.v1+json"):
                assert mt in accept
            assert [x.path for x in proxy.seen if x.method == "DELETE"] == [f"/v2/team/api/manifests/{img.digest}"]
        finally:
            proxy.stop()
        tags = httpx.get(f"{reg.url}/v2/team/api/tags/list").json()["tags"]
        assert tags == ["2.0"]
        # By digest, every tag pointing at it counts as "other": it would vanish silently.
        p = porter("delete", f"{reg.host}/team/api@{other.digest}")
        assert p.returncode == 1 and b"also tagged 2.0" in p.stderr
        porter("delete", f"{reg.host}/team/api@{other.digest}", "--force", check=True)
        p = porter("delete", f"{reg.host}/team/api@{other.digest}")
        assert p.returncode == 1 and b"no such manifest" in p.stderr
    finally:
        reg.stop()


@pytest.mark.fault('delete on a registry with deletion disabled (405)', 'one line naming the config key to set')
def test_delete_disabled_405(tools, tmp_path):
    reg = Registry(tmp_path / "reg", free_port())
    reg.config = lambda: {**Registry.config(reg), "storage": {"filesystem": {"rootdirectory": str(reg.storage)}}}
    reg.start()
    try:
        Seeder(reg.url).image("a/b", "1", [tar_layer({"x": b"1"})])
        p = porter("delete", f"{reg.host}/a/b:1")
        assert p.returncode == 1 and b"storage.delete.enabled: true" in p.stderr
    finally:
        reg.stop()


def test_ci_registry_prune_then_gc_frees_expected_bytes(tools, tmp_path):
    reg = Registry(tmp_path / "reg", free_port()).start()
    try:
        s = Seeder(reg.url)
        base = tar_layer({"base": b"b" * 100_000})
        pushed = []
        for i in range(50):  # build-0 oldest … build-49 newest; tags are not semver, so time decides
            created = f"2024-01-{1 + i // 24:02d}T{i % 24:02d}:00:00.123456789Z"
            layer = tar_layer({f"build{i}": bytes([i]) * 50_000 + str(i).encode()})
            pushed.append(s.image("ci/build", f"build-{i}", [base, layer], created=created))
        reg_blobs_before = du(reg.storage)
        dry = porter("prune", f"{reg.host}/ci/build", "--keep-last", "5", "--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr
        plan = json.loads(dry.stdout)
        assert len(plan["deleted"]) == 45 and du(reg.storage) == reg_blobs_before
        porter("prune", f"{reg.host}/ci/build", "--keep-last", "5", check=True)
        assert len(httpx.get(f"{reg.url}/v2/ci/build/tags/list").json()["tags"]) == 5
        kept = {t["tag"] for t in plan["tags"] if t["action"] == "keep"}
        assert kept == {f"build-{i}" for i in range(45, 50)}
        doomed = [p for p in pushed if p.tag not in kept]
        expected = sum((reg.storage / "docker/registry/v2/blobs/sha256" / b[7:9] / b[7:] / "data").stat().st_size
                       for p in doomed for b in [p.digest] + p.blobs if b != pushed[0].blobs[1])
        result = porter_gc(reg)
        assert result["bytes"] == expected
        assert reg_blobs_before - du(reg.storage) >= expected
        for t in kept:
            assert skopeo_digest(f"{reg.host}/ci/build:{t}")
    finally:
        reg.stop()


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def test_prune_semver_keep_and_older_than(tools, tmp_path):
    reg = Registry(tmp_path / "reg", free_port()).start()
    try:
        s = Seeder(reg.url)
        tags = ["v1.2.0", "v1.10.0", "v1.9.3", "1.10.0-rc.1", "v2.0.0", "release-1"]
        for i, t in enumerate(tags):
            s.image("app/x", t, [tar_layer({"t": t.encode()})], created=f"202{i}-06-01T00:00:00Z")
        # All candidate tags parse as semver: v2.0.0 and v1.10.0 are the newest two.
        p = porter("prune", f"{reg.host}/app/x", "--keep-last", "2", "--tags", r"^v?\d", "--dry-run", "--json")
        rows = {t["tag"]: t for t in json.loads(p.stdout)["tags"]}
        assert {t for t, r in rows.items() if r["action"] == "keep"} == {"v2.0.0", "v1.10.0", "release-1"}
        assert "semver" in rows["v2.0.0"]["reason"] and "--tags" in rows["release-1"]["reason"]
        # --older-than on creation time, with a protected tag.
        p = porter("prune", f"{reg.host}/app/x", "--older-than", "1000d", "--keep", "^v1\\.2", "--json")
        doomed = {t["tag"] for t in json.loads(p.stdout)["tags"] if t["action"] == "delete"}
        assert doomed == {"v1.10.0", "v1.9.3", "1.10.0-rc.1"}  # 2020-2023; v1.2.0 protected; newer ones stay
        left = set(httpx.get(f"{reg.url}/v2/app/x/tags/list").json()["tags"])
        assert left == {"v1.2.0", "v2.0.0", "release-1"}
    finally:
        reg.stop()


def test_prune_never_deletes_kept_digest_or_child(tools, tmp_path):
    reg = Registry(tmp_path / "reg", free_port()).start()
    try:
        s = Seeder(reg.url)
        old = s.image("r/x", "old", [tar_layer({"a": b"1"})], created="2020-01-01T00:00:00Z")
        s.manifest("r/x", "stable", old.raw, old.media_type)  # a kept tag on the same digest
        child = s.image("r/x", "old-child", [tar_layer({"c": b"c"})], created="2020-01-01T00:00:00Z")
        s.index("r/x", "multi", [(child, {"os": "linux", "architecture": "amd64"})])
        p = porter("prune", f"{reg.host}/r/x", "--older-than", "30d", "--keep", "^(stable|multi)$", "--json")
        rows = {t["tag"]: t for t in json.loads(p.stdout)["tags"]}
        assert rows["old"]["action"] == "keep" and "stable" in rows["old"]["reason"]
        assert rows["old-child"]["action"] == "keep" and "child" in rows["old-child"]["reason"]
        assert json.loads(p.stdout)["deleted"] == []
    finally:
        reg.stop()


def test_mirror_delete_source_then_gc(tools, fresh_registry, tmp_path):
    src = Registry(tmp_path / "src", free_port()).start()
    try:
        s = Seeder(src.url)
        moved = s.image("team/api", "1.0", [tar_layer({"x": b"moved" * 1000})], cmd=["/bin/cat", "/x"])
        shared = s.image("team/api", "2.0", [tar_layer({"y": b"shared"})])
        s.manifest("team/api", "2.0-alias", shared.raw, shared.media_type)
        dest = fresh_registry()
        before = du(src.storage)
        p = porter("mirror", f"{src.host}/team/api:1.0", f"{dest.host}/team/api", "--delete-source",
                   "--gc-storage", str(src.storage))
        assert p.returncode == 0, p.stderr
        assert skopeo_digest(f"{dest.host}/team/api:1.0") == moved.digest
        assert httpx.head(f"{src.url}/v2/team/api/manifests/{moved.digest}").status_code == 404
        assert not (src.storage / "docker/registry/v2/blobs/sha256" / moved.blobs[1][7:9] / moved.blobs[1][7:]).exists()
        assert du(src.storage) < before
        # A digest that other tags share is migrated but not deleted (they were not moved).
        p = porter("mirror", f"{src.host}/team/api:2.0", f"{dest.host}/team/api", "--delete-source")
        assert p.returncode == 0 and b"also tagged 2.0-alias" in p.stderr
        assert skopeo_digest(f"{src.host}/team/api:2.0") == shared.digest
    finally:
        src.stop()


@pytest.mark.fault("gc killed (SIGKILL) part-way through the sweep", "the restarted registry still serves every tagged image")
@pytest.mark.parametrize("delay", [0.25, 0.3, 0.35, 0.45])  # here 0.3-0.35 s lands mid-sweep
def test_interrupted_gc_leaves_served_storage(tools, tmp_path, delay):
    import sys as _sys

    _sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from bench import make_gc_storage

    reg = Registry(tmp_path / "reg", free_port())
    make_gc_storage(reg.storage, repos=30, tags=20)
    proc = subprocess.Popen([sys.executable, "-m", "porter", "gc", str(reg.storage), "--delete-untagged"],
                            stdout=subprocess.DEVNULL)
    time.sleep(delay)
    proc.kill()
    proc.wait()
    reg.start()
    try:
        with httpx.Client(base_url=reg.url) as c:
            for repo in c.get("/v2/_catalog?n=1000").json()["repositories"]:
                for tag in c.get(f"/v2/{repo}/tags/list").json()["tags"]:
                    r = c.get(f"/v2/{repo}/manifests/{tag}",
                              headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
                    assert r.status_code == 200, (repo, tag)
                    man = r.json()
                    for d in [man["config"]] + man["layers"]:
                        assert c.head(f"/v2/{repo}/blobs/{d['digest']}").status_code == 200, (repo, tag, d)
    finally:
        reg.stop()
