"""Archives the ecosystem writes, read by porter; porter's archives, read by the ecosystem (issue 12).

Every input here is made at test time by the real tool: ``docker save`` (dockerd), skopeo,
podman, ``ctr`` (containerd) and umoci. What porter imports is then pulled and run by docker;
what porter exports is loaded by docker, podman and containerd, and read by skopeo and umoci.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import httpx
import pytest

from conftest import need, porter, skopeo_digest
from images import Seeder, busybox_layer, tar_layer
from services import free_port, wait_until

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def run_in_docker(dockerd, ref: str) -> bytes:
    client = dockerd.client()
    client.images.pull(ref)
    return client.containers.run(ref, network_mode="none", remove=True)


def docker_cli(dockerd, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "-H", f"unix://{dockerd.sock}", *args], capture_output=True, check=True)


@pytest.fixture(scope="module")
def src(tools, tmp_path_factory):
    """A source registry with a runnable image, one whose layer repeats, and a multi-platform one."""
    from services import Registry

    reg = Registry(tmp_path_factory.mktemp("interop-src"), free_port()).start()
    s = Seeder(reg.url)
    base = busybox_layer()
    extra = tar_layer({"etc/twice.txt": b"twice\n"})
    reg.api = s.image("team/api", "1.4", [base, tar_layer({"etc/api.txt": b"api 1.4\n"})],
                      cmd=["/bin/cat", "/etc/api.txt"])
    reg.web = s.image("team/web", "2.0", [base, tar_layer({"etc/web.txt": b"web 2.0\n"})],
                      cmd=["/bin/cat", "/etc/web.txt"])
    reg.twice = s.image("team/twice", "1", [base, extra, tar_layer({"z": b"z"}), extra],
                        cmd=["/bin/cat", "/etc/twice.txt"])
    reg.oci = s.image("oci/app", "1", [base, tar_layer({"etc/oci.txt": b"oci app\n"})], fmt="oci",
                      cmd=["/bin/cat", "/etc/oci.txt"])
    amd = s.image("multi/list", None, [base, tar_layer({"etc/arch.txt": b"amd64\n"})], cmd=["/bin/cat", "/etc/arch.txt"])
    arm = s.image("multi/list", None, [tar_layer({"etc/arch.txt": b"arm64\n"})], arch="arm64", variant="v8")
    reg.multi = s.index("multi/list", "1", [(amd, {"os": "linux", "architecture": "amd64"}),
                                            (arm, {"os": "linux", "architecture": "arm64", "variant": "v8"})])
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def containerd(tools):
    need(shutil.which("containerd") is not None and shutil.which("ctr") is not None,
         "containerd (Debian package containerd) is not installed")
    d = Path(tempfile.mkdtemp(prefix="porter-ctd-"))
    sock = d / "c.sock"
    (d / "config.toml").write_text(f'version = 2\nroot = "{d}/root"\nstate = "{d}/state"\n'
                                   f'[grpc]\n  address = "{sock}"\n')
    proc = subprocess.Popen(["containerd", "--config", str(d / "config.toml")], stdout=open(d / "log", "wb"),
                            stderr=subprocess.STDOUT)
    wait_until(lambda: subprocess.run(["ctr", "-a", str(sock), "version"], capture_output=True).returncode == 0,
               30, "containerd")
    yield ["ctr", "-a", str(sock)]
    proc.terminate()
    proc.wait(30)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def podman(tools, tmp_path_factory):
    need(shutil.which("podman") is not None, "podman (Debian package podman) is not installed")
    d = tmp_path_factory.mktemp("podman")
    return ["podman", "--root", str(d / "root"), "--runroot", str(d / "run"), "--storage-driver", "vfs",
            "--cgroup-manager", "cgroupfs", "--events-backend", "file"]


@pytest.fixture(scope="module")
def umoci(tools):
    need(shutil.which("umoci") is not None, "umoci (Debian package umoci) is not installed")
    return "umoci"


def sh(*args: str, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(list(args), capture_output=True, **kw)
    assert p.returncode == 0, f"{' '.join(args)}: {p.stderr.decode()}"
    return p


def imported(archive: Path | str, dest: str, *extra: str) -> dict:
    p = porter("import", str(archive), dest, "--json", *extra)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


# --- B. what other tools write, porter imports; docker pulls and runs the result ---------------
@pytest.fixture(scope="module")
def saved(src, dockerd, tmp_path_factory) -> Path:
    """``docker save`` of two images sharing a base, one repeating a layer (Docker 20.10: classic
    layout, repeated and shared layers as symlinks)."""
    for ref in ("team/api:1.4", "team/twice:1"):
        dockerd.client().images.pull(f"{src.host}/{ref}")
    out = tmp_path_factory.mktemp("saved") / "saved.tar"
    docker_cli(dockerd, "save", "-o", str(out), f"{src.host}/team/api:1.4", f"{src.host}/team/twice:1")
    with tarfile.open(out) as t:
        assert any(m.issym() for m in t.getmembers()), "docker save wrote no link: the test lost its point"
    return out


@pytest.mark.parametrize("compress", ["none", "gzip", "zstd"])
def test_docker_save_archive_imports_and_runs(saved, src, dockerd, fresh_registry, tmp_path, compress):
    archive = saved
    if compress == "gzip":
        archive = tmp_path / "saved.tar.gz"
        archive.write_bytes(gzip.compress(saved.read_bytes(), compresslevel=1))
    elif compress == "zstd":
        archive = tmp_path / "saved.tar.zst"
        sh("zstd", "-q", "-o", str(archive), str(saved))
    dest = fresh_registry()
    summary = imported(archive, f"{dest.host}/from-save")
    assert summary["copied"] == 2
    assert run_in_docker(dockerd, f"{dest.host}/from-save/team/api:1.4") == b"api 1.4\n"
    assert run_in_docker(dockerd, f"{dest.host}/from-save/team/twice:1") == b"twice\n"
    # The conversion is deterministic: a second import finds everything there.
    again = imported(archive, f"{dest.host}/from-save")
    assert again["present"] == 2 and again["blobs"]["uploaded"] == 0


def test_docker_daemon_source_with_a_repeated_layer(src, dockerd, fresh_registry):
    env = {"DOCKER_HOST": f"unix://{dockerd.sock}"}
    dockerd.client().images.pull(f"{src.host}/team/twice:1")
    dest = fresh_registry()
    p = porter("mirror", f"docker-daemon:{src.host}/team/twice:1", f"{dest.host}/twice:1", env=env)
    assert p.returncode == 0, p.stderr
    assert run_in_docker(dockerd, f"{dest.host}/twice:1") == b"twice\n"


def test_skopeo_docker_archive_with_additional_tag(src, dockerd, fresh_registry, tmp_path):
    out = tmp_path / "sk.tar"
    sh("skopeo", "copy", "--src-tls-verify=false", "--additional-tag", "local/web:extra",
       f"docker://{src.host}/team/web:2.0", f"docker-archive:{out}:local/web:2.0")
    dest = fresh_registry()
    imported(out, dest.host)
    tags = httpx.get(f"{dest.url}/v2/local/web/tags/list").json()["tags"]
    assert sorted(tags) == ["2.0", "extra"]
    assert run_in_docker(dockerd, f"{dest.host}/local/web:extra") == b"web 2.0\n"


def test_podman_save_multi_image_and_oci_archive(src, podman, dockerd, fresh_registry, tmp_path):
    for ref in ("team/api:1.4", "team/web:2.0"):
        sh(*podman, "pull", "-q", "--tls-verify=false", f"{src.host}/{ref}")
    multi = tmp_path / "podman-m.tar"
    sh(*podman, "save", "-m", "-o", str(multi), f"{src.host}/team/api:1.4", f"{src.host}/team/web:2.0")
    oci = tmp_path / "podman-oci.tar"
    sh(*podman, "save", "--format", "oci-archive", "-o", str(oci), f"{src.host}/team/api:1.4")
    dest = fresh_registry()
    assert imported(multi, f"{dest.host}/pm")["copied"] == 2
    assert run_in_docker(dockerd, f"{dest.host}/pm/team/web:2.0") == b"web 2.0\n"
    # podman's OCI archive names the image by a full reference in ref.name: digests survive.
    imported(oci, f"{dest.host}/pmoci")
    assert run_in_docker(dockerd, f"{dest.host}/pmoci/team/api:1.4") == b"api 1.4\n"


@pytest.mark.parametrize("layout", ["oci-archive", "oci"])
def test_skopeo_oci_layout_named_by_tag_only(src, dockerd, fresh_registry, tmp_path, layout):
    target = tmp_path / ("sk-oci.tar" if layout == "oci-archive" else "sk-oci")
    sh("skopeo", "copy", "--src-tls-verify=false", f"docker://{src.host}/oci/app:1", f"{layout}:{target}:v1")
    dest = fresh_registry()
    # A tag-only name needs the repository from the command line, and says so.
    p = porter("import", str(target), dest.host)
    assert p.returncode == 1 and b"only by the tag 'v1'" in p.stderr
    imported(target, f"{dest.host}/team/app")
    assert skopeo_digest(f"{dest.host}/team/app:v1") == src.oci.digest  # digest survives
    assert run_in_docker(dockerd, f"{dest.host}/team/app:v1") == b"oci app\n"


def test_unnamed_image_is_named_by_the_destination(src, fresh_registry, tmp_path):
    layout = tmp_path / "unnamed"
    sh("skopeo", "copy", "--src-tls-verify=false", f"docker://{src.host}/oci/app:1", f"oci:{layout}")
    index = json.loads((layout / "index.json").read_text())
    for m in index["manifests"]:
        m.pop("annotations", None)
    (layout / "index.json").write_text(json.dumps(index))
    dest = fresh_registry()
    p = porter("import", str(layout), f"{dest.host}/team")
    assert p.returncode == 1 and b"carries no name" in p.stderr
    imported(layout, f"{dest.host}/team/app:1.0")
    assert skopeo_digest(f"{dest.host}/team/app:1.0") == src.oci.digest


def test_ctr_export_with_some_platforms(src, containerd, dockerd, fresh_registry, tmp_path):
    sh(*containerd, "images", "pull", "--plain-http", f"{src.host}/multi/list:1")
    out = tmp_path / "ctr.tar"
    sh(*containerd, "images", "export", str(out), f"{src.host}/multi/list:1")
    dest = fresh_registry()
    p = porter("import", str(out), f"{dest.host}/ctr")
    assert p.returncode == 1 and b"present: linux/amd64" in p.stderr and b"--platform linux/amd64" in p.stderr
    imported(out, f"{dest.host}/ctr", "--platform", "linux/amd64")
    assert run_in_docker(dockerd, f"{dest.host}/ctr/multi/list:1") == b"amd64\n"


def test_umoci_layout(src, umoci, dockerd, fresh_registry, tmp_path):
    layout, bundle = tmp_path / "um", tmp_path / "bundle"
    sh("skopeo", "copy", "--src-tls-verify=false", f"docker://{src.host}/oci/app:1", f"oci:{layout}:1.0")
    sh(umoci, "unpack", "--image", f"{layout}:1.0", str(bundle))
    (bundle / "rootfs/etc/oci.txt").write_text("changed by umoci\n")
    sh(umoci, "repack", "--image", f"{layout}:1.1", str(bundle))
    dest = fresh_registry()
    assert imported(layout, f"{dest.host}/um/app")["copied"] == 2
    assert run_in_docker(dockerd, f"{dest.host}/um/app:1.1") == b"changed by umoci\n"


def test_import_keeps_the_destination_tag(src, fresh_registry, tmp_path):
    out = tmp_path / "one.tar"
    porter("export", f"{src.host}/team/api:1.4", "-o", str(out), check=True)
    dest = fresh_registry()
    imported(out, f"{dest.host}/foo:1")
    assert httpx.get(f"{dest.url}/v2/foo/tags/list").json()["tags"] == ["1"]
    two = tmp_path / "two.tar"
    porter("export", f"{src.host}/team/api:1.4", f"{src.host}/team/web:2.0", "-o", str(two), check=True)
    p = porter("import", str(two), f"{dest.host}/foo:2")
    assert p.returncode == 1 and b"a tag names one image" in p.stderr


# --- C. what porter writes, other tools read -----------------------------------------------------
@pytest.fixture(scope="module")
def ours(src, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ours") / "porter.tar"
    porter("export", f"{src.host}/oci/app:1", f"{src.host}/team/web:2.0", "-o", str(out), check=True)
    return out


def test_docker_loads_and_runs_porter_archive(ours, src, dockerd):
    docker_cli(dockerd, "load", "-i", str(ours))
    assert dockerd.client().containers.run(f"{src.host}/oci/app:1", network_mode="none", remove=True) == b"oci app\n"


def test_podman_loads_porter_archive(ours, src, podman):
    sh(*podman, "load", "-q", "-i", str(ours))
    names = sh(*podman, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode()
    assert f"{src.host}/oci/app:1" in names and f"{src.host}/team/web:2.0" in names


def test_containerd_imports_porter_archive(ours, src, containerd):
    sh(*containerd, "images", "import", str(ours))
    check = sh(*containerd, "images", "check").stdout.decode()
    line = next(x for x in check.splitlines() if f"{src.host}/oci/app:1" in x)
    assert "complete" in line


def test_skopeo_reads_porter_archive_by_tag(ours, src, tmp_path):
    sh("skopeo", "copy", f"oci-archive:{ours}:1", f"dir:{tmp_path}/d")
    import hashlib

    raw = (tmp_path / "d/manifest.json").read_bytes()
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == src.oci.digest


def test_umoci_reads_porter_archive(ours, umoci, tmp_path):
    layout = tmp_path / "layout"
    layout.mkdir()
    with tarfile.open(ours) as t:
        t.extractall(layout, filter="data")
    out = sh(umoci, "stat", "--image", f"{layout}:1").stdout.decode()
    assert "LAYER" in out or "history" in out.lower()


# --- A. never a wrong result reported as success -------------------------------------------------
def test_single_platform_image_refuses_another_platform(src, fresh_registry, tmp_path):
    dest = fresh_registry()
    for args in (["export", f"{src.host}/team/api:1.4", "-o", str(tmp_path / "x.tar")],
                 ["mirror", f"{src.host}/team/api:1.4", f"{dest.host}/x"]):
        p = porter(*args, "--platform", "linux/s390x")
        assert p.returncode == 1 and b"the image is linux/amd64, not linux/s390x" in p.stderr, p.stderr
    out = tmp_path / "ok.tar"
    porter("export", f"{src.host}/team/api:1.4", "-o", str(out), check=True)
    p = porter("import", str(out), dest.host, "--platform", "linux/s390x")
    assert p.returncode == 1 and b"not linux/s390x" in p.stderr
    job = tmp_path / "job.toml"
    job.write_text(f'[[mirror]]\nsource = "{src.host}/team/api:1.4"\ndestination = "{dest.host}/y"\n'
                   f'platform = "linux/s390x"\n')
    p = porter("mirror", "--config", str(job))
    assert p.returncode == 1 and b"not linux/s390x" in p.stderr
    assert httpx.get(f"{dest.url}/v2/_catalog").json()["repositories"] == []


def test_export_says_when_the_digest_will_change(src, tmp_path):
    p = porter("export", f"{src.host}/multi/list:1", "-o", str(tmp_path / "m.tar"))
    assert p.returncode == 0 and b"an import pushes that digest, not the index's" in p.stderr


def test_registry_that_lies_after_the_push_is_not_a_success(src, fresh_registry):
    from proxy import Fault, Proxy

    dest = fresh_registry()

    class LiesAfterPut(Fault):
        pushed = False

        def request(self, seen, headers):
            if seen.method == "PUT" and "/manifests/" in seen.path:
                LiesAfterPut.pushed = True
            if seen.method == "HEAD" and "/manifests/1.4" in seen.path and LiesAfterPut.pushed:
                return 200, {"Docker-Content-Digest": "sha256:" + "0" * 64}, b""
            return None

    with Proxy(dest.url, LiesAfterPut()) as proxy:
        p = porter("mirror", f"{src.host}/team/api:1.4", f"{proxy.host}/team/api", "--json")
    assert p.returncode == 1 and b"not counted as copied" in p.stderr


def test_repository_without_tags_is_just_empty(src, fresh_registry):
    reg = fresh_registry()
    Seeder(reg.url).blob("half/pushed", b"a blob whose manifest never came")
    Seeder(reg.url).image("team/api", "1", [tar_layer({"a": b"a"})])
    p = porter("ls", reg.host)
    assert p.returncode == 0 and b"half/pushed  0 tags" in p.stdout, p.stderr
    dest = fresh_registry()
    p = porter("mirror", reg.host, dest.host)
    assert p.returncode == 0, p.stderr
    assert httpx.get(f"{dest.url}/v2/_catalog").json()["repositories"] == ["team/api"]


def test_delete_source_of_a_multi_platform_image_frees_the_disk(tools, fresh_registry, tmp_path):
    from services import Registry
    from test_gc import registry_gc

    src = Registry(tmp_path / "src", free_port()).start()
    try:
        s = Seeder(src.url)
        amd = s.image("multi/list", None, [tar_layer({"a": b"amd64" * 100})])
        arm = s.image("multi/list", None, [tar_layer({"a": b"arm64" * 100})], arch="arm64")
        s.index("multi/list", "1", [(amd, {"os": "linux", "architecture": "amd64"}),
                                    (arm, {"os": "linux", "architecture": "arm64"})])
        dest = fresh_registry()
        p = porter("mirror", f"{src.host}/multi/list:1", f"{dest.host}/multi/list", "--delete-source",
                   "--gc-storage", str(src.storage))
        assert p.returncode == 0, p.stderr
        blobs = src.storage / "docker/registry/v2/blobs/sha256"
        assert [p for p in blobs.rglob("data")] == []
        assert registry_gc(src, untagged=False) == (set(), set())
    finally:
        src.stop()


def test_two_repositories_sharing_a_tag_stay_selectable(src, umoci, tmp_path):
    for repo in ("a/x", "b/y"):
        sh("skopeo", "copy", "--format", "oci", "--src-tls-verify=false", "--dest-tls-verify=false",
           f"docker://{src.host}/team/api:1.4", f"docker://{src.host}/{repo}:1.0")
    out, layout = tmp_path / "two.tar", tmp_path / "two"
    porter("export", f"{src.host}/a/x:1.0", f"{src.host}/b/y:1.0", "-o", str(out), check=True)
    layout.mkdir()
    with tarfile.open(out) as t:
        t.extractall(layout, filter="data")
    for repo in ("a/x", "b/y"):
        sh(umoci, "stat", "--image", f"{layout}:{src.host}/{repo}:1.0")
        sh("skopeo", "inspect", f"oci:{layout}:{src.host}/{repo}:1.0")


def test_export_warns_about_zstd_layers(src, tmp_path):
    import zstandard

    layer = tar_layer({"z": b"zstd"})
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": ["sha256:" + __import__("hashlib").sha256(layer).hexdigest()]}}).encode()
    s = Seeder(src.url)
    packed = zstandard.ZstdCompressor().compress(layer)
    blobs = [s.blob("zstd/app", cfg), s.blob("zstd/app", packed)]
    man = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blobs[0], "size": len(cfg)},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": blobs[1],
                       "size": len(packed)}]}
    s.manifest("zstd/app", "1", json.dumps(man).encode(), OCI_MANIFEST)
    p = porter("export", f"{src.host}/zstd/app:1", "-o", str(tmp_path / "z.tar"))
    assert p.returncode == 0 and b"zstd/app:1 has zstd-compressed layers" in p.stderr and b"Docker 23" in p.stderr


def test_buildah_oci_archive(tools, dockerd, fresh_registry, tmp_path):
    from images import BUSYBOX

    need(shutil.which("buildah") is not None, "buildah (Debian package buildah) is not installed")
    b = ["buildah", "--root", str(tmp_path / "root"), "--runroot", str(tmp_path / "run"), "--storage-driver", "vfs"]
    ctr = sh(*b, "from", "scratch").stdout.decode().strip().splitlines()[-1]
    (tmp_path / "hello.txt").write_text("built by buildah\n")
    sh(*b, "copy", ctr, shutil.which(BUSYBOX), "/bin/busybox")
    sh(*b, "copy", ctr, str(tmp_path / "hello.txt"), "/hello.txt")
    sh(*b, "config", "--cmd", '["/bin/busybox", "cat", "/hello.txt"]', ctr)
    out = tmp_path / "buildah.tar"
    sh(*b, "commit", "-q", "--format", "oci", ctr, f"oci-archive:{out}:v1")
    dest = fresh_registry()
    imported(out, f"{dest.host}/built/app")
    assert run_in_docker(dockerd, f"{dest.host}/built/app:v1") == b"built by buildah\n"
