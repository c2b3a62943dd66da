"""porter import and porter mirror into real registries: digests kept, blobs moved once, resumable."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

from conftest import PASSWORD, USER, porter, skopeo_digest
from proxy import Fault, Proxy
from services import htpasswd_file

KINDS = [("team/api:1.4", "api"), ("oci/app:1", "oci"), ("multi/list:1", "multi/list"), ("multi/oci:1", "multi/oci")]


def run_ok(*args: str, env: dict | None = None) -> dict:
    p = porter(*args, "--json", env=env)
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def archive(registry, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("arch") / "all.tar"
    porter("export", *[f"{registry.host}/{r}" for r, _ in KINDS], "--all-platforms", "-o", str(out), check=True)
    return out


@pytest.mark.parametrize("ref,key", KINDS)
def test_mirror_keeps_digest(registry, catalog, fresh_registry, ref, key):
    dest = fresh_registry()
    repo = ref.split(":")[0]
    run_ok("mirror", f"{registry.host}/{ref}", f"{dest.host}/{repo}")
    assert skopeo_digest(f"{dest.host}/{ref}") == catalog[key].digest == skopeo_digest(f"{registry.host}/{ref}")


def test_import_keeps_digests_and_paths(archive, catalog, fresh_registry):
    dest = fresh_registry()
    summary = run_ok("import", str(archive), f"{dest.host}/mirror")
    assert len(summary["images"]) == len(KINDS)
    for ref, key in KINDS:
        assert skopeo_digest(f"{dest.host}/mirror/{ref}") == catalog[key].digest
    # Every platform of the indexes came along (children pushed by digest).
    for arch in ("amd64", "arm64"):
        child = catalog[f"multi/oci:{arch}"]
        assert skopeo_digest(f"{dest.host}/mirror/multi/oci@{child.digest}") == child.digest


def test_import_zstd_archive(registry, catalog, fresh_registry, tmp_path):
    out = tmp_path / "a.tar.zst"
    porter("export", f"{registry.host}/team/api:1.4", "-o", str(out), check=True)
    dest = fresh_registry()
    run_ok("import", str(out), dest.host)
    assert skopeo_digest(f"{dest.host}/team/api:1.4") == catalog["api"].digest


def test_pulled_image_runs(archive, fresh_registry, dockerd):
    dest = fresh_registry()
    run_ok("import", str(archive), dest.host)
    client = dockerd.client()
    for ref, expected in (("team/api:1.4", b"api 1.4\n"), ("multi/list:1", b"amd64\n")):
        client.images.pull(f"{dest.host}/{ref}")
        assert client.containers.run(f"{dest.host}/{ref}", network_mode="none", remove=True) == expected


def test_platform_narrows_and_says_so(registry, catalog, fresh_registry):
    dest = fresh_registry()
    p = porter("mirror", f"{registry.host}/multi/list:1", f"{dest.host}/only/arm", "--platform", "linux/arm64")
    assert p.returncode == 0, p.stderr
    arm = catalog["multi/list:arm64"]
    assert b"pushed only linux/arm64" in p.stderr and arm.digest.encode() in p.stderr
    assert skopeo_digest(f"{dest.host}/only/arm:1") == arm.digest


def test_digest_source_to_new_tag(registry, catalog, fresh_registry):
    dest = fresh_registry()
    api = catalog["api"]
    run_ok("mirror", f"{registry.host}/team/api@{api.digest}", f"{dest.host}/team/api:stable")
    assert skopeo_digest(f"{dest.host}/team/api:stable") == api.digest


@pytest.mark.parametrize("kind", ["basic", "token"])
def test_mirror_into_auth_registries(registry, catalog, fresh_registry, token_server, tmp_path, kind):
    if kind == "basic":
        auth = {"htpasswd": {"realm": "porter", "path": str(htpasswd_file(tmp_path / "htpasswd", USER, PASSWORD))}}
    else:
        auth = token_server.registry_auth()
    dest = fresh_registry(auth=auth)
    bad = porter("mirror", f"{registry.host}/team/api:1.4", f"{dest.host}/team/api", "--dest-creds", f"{USER}:nope")
    assert bad.returncode == 1 and (b"401" in bad.stderr or b"authentication failed" in bad.stderr)
    run_ok("mirror", f"{registry.host}/team/api:1.4", f"{dest.host}/team/api", "--dest-creds", f"{USER}:{PASSWORD}")
    assert skopeo_digest(f"{dest.host}/team/api:1.4", f"{USER}:{PASSWORD}") == catalog["api"].digest


def test_second_run_only_heads(archive, fresh_registry):
    dest = fresh_registry()
    run_ok("import", str(archive), dest.host)
    proxy = Proxy(dest.url)
    try:
        summary = run_ok("import", str(archive), proxy.host)
        assert summary["blobs"]["uploaded"] == 0 and summary["bytes_sent"] == 0
        writes = [s for s in proxy.seen if s.method not in ("HEAD", "GET")]
        assert writes == []
        assert all(s.path == "/v2/" for s in proxy.seen if s.method == "GET")
    finally:
        proxy.stop()


def test_mount_across_repositories(registry, catalog, fresh_registry):
    dest = fresh_registry()
    proxy = Proxy(dest.url)
    try:
        run_ok("mirror", f"{registry.host}/team/api:1.4", f"{proxy.host}/a/api")
        # Within one registry every blob is mounted from the source repository, none sent.
        summary = run_ok("mirror", f"{proxy.host}/a/api:1.4", f"{proxy.host}/c/api")
        assert summary["blobs"]["mounted"] == 3 and summary["bytes_sent"] == 0
        mounts = [unquote(s.path) for s in proxy.seen if s.method == "POST" and s.status == 201]
        assert sorted(m.split("mount=")[1].split("&")[0] for m in mounts) == sorted(catalog["api"].blobs)
        assert all("from=a/api" in m for m in mounts)
    finally:
        proxy.stop()


def test_shared_blob_uploaded_once_then_mounted(archive, catalog, fresh_registry):
    dest = fresh_registry()
    proxy = Proxy(dest.url)
    try:
        summary = run_ok("import", str(archive), proxy.host, "-j", "8")
        base = catalog["api"].blobs[1]
        uploads = [s for s in proxy.seen if s.method == "PUT" and f"digest={base}" in unquote(s.path)]
        assert len(uploads) == 1, uploads
        assert summary["blobs"]["mounted"] >= 3  # the base into the other repositories
    finally:
        proxy.stop()


class FailPatch(Fault):
    """Answer the Nth PATCH with 503 without forwarding it (the registry gets nothing)."""

    def __init__(self, n: int):
        self.n, self.count = n, 0

    def request(self, seen, headers):
        if seen.method == "PATCH":
            self.count += 1
            if self.count == self.n:
                return 503, {}, b""
        return None


class CutPatch(Fault):
    """Forward only the head of the Nth PATCH body, then drop the connection."""

    def __init__(self, n: int):
        self.n, self.count = n, 0

    def cut_request_after(self, seen):
        if seen.method == "PATCH":
            self.count += 1
            if self.count == self.n:
                return 300_000
        return None


@pytest.fixture(scope="module")
def big_image(registry):
    from images import Seeder

    s = Seeder(registry.url)
    layer = os.urandom(5 * 1024 * 1024 + 12345)
    return s.image_from_blobs("big/one", "1", b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}',
                              [layer])


@pytest.mark.fault('an upload chunk answered 503', 'registry asked for its offset; upload goes on from there')
def test_failed_chunk_resumes_at_reported_offset(registry, big_image, fresh_registry):
    dest = fresh_registry()
    proxy = Proxy(dest.url, FailPatch(3))
    try:
        run_ok("mirror", f"{registry.host}/big/one:1", f"{proxy.host}/big/one", "--chunk-size", "1MiB", "-j", "1")
        patches = [s.headers["Content-Range"] for s in proxy.seen if s.method == "PATCH"]
        mib = 1 << 20
        # Chunk 3 failed; the status query said 2 MiB were there; chunk 3 was sent again, nothing before it.
        assert patches[:4] == ["0-%d" % (mib - 1), f"{mib}-{2 * mib - 1}", f"{2 * mib}-{3 * mib - 1}",
                               f"{2 * mib}-{3 * mib - 1}"]
        status = [s for s in proxy.seen if s.method == "GET" and "/blobs/uploads/" in s.path]
        assert len(status) == 1 and status[0].status == 204
        assert skopeo_digest(f"{dest.host}/big/one:1") == big_image.digest
    finally:
        proxy.stop()


@pytest.mark.fault('connection dropped mid-chunk (upload)', 'the registry voids that upload; the blob is sent again; completes')
def test_cut_chunk_still_completes(registry, big_image, fresh_registry):
    dest = fresh_registry()
    proxy = Proxy(dest.url, CutPatch(3))
    try:
        run_ok("mirror", f"{registry.host}/big/one:1", f"{proxy.host}/big/one", "--chunk-size", "1MiB", "-j", "1")
        assert skopeo_digest(f"{dest.host}/big/one:1") == big_image.digest
    finally:
        proxy.stop()


class Slow(Fault):
    def __init__(self):
        self.delay = 0.15

    def request(self, seen, headers):
        if seen.method in ("PUT", "PATCH") and "/blobs/" in seen.path:
            time.sleep(self.delay)
        return None


@pytest.mark.fault('kill -9 during import', 'rerun completes; no finished blob is sent again')
def test_kill_9_then_rerun_sends_no_finished_blob(archive, fresh_registry):
    dest = fresh_registry()
    proxy = Proxy(dest.url, Slow())
    try:
        proc = subprocess.Popen([sys.executable, "-m", "porter", "import", str(archive), proxy.host, "-q", "-j", "1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len([s for s in proxy.seen if s.method == "PUT"]) < 4:
            time.sleep(0.02)
        proc.kill()
        proc.wait()
        done = {unquote(s.path).split("digest=")[1] for s in proxy.seen
                if s.method == "PUT" and "digest=" in s.path and s.status == 201}
        assert done, "nothing finished before the kill"
        first_seen = len(proxy.seen)
        proxy.fault.delay = 0
        run_ok("import", str(archive), proxy.host)
        again = [s for s in proxy.seen[first_seen:] if s.method in ("PUT", "PATCH") and "/blobs/" in s.path
                 and any(d in unquote(s.path) for d in done)]
        assert again == []
        with tarfile.open(archive) as t:
            index = json.loads(t.extractfile("index.json").read())
        for d in index["manifests"]:
            name = d["annotations"]["io.containerd.image.name"].split("/", 1)[1]
            assert skopeo_digest(f"{dest.host}/{name}") == d["digest"]
    finally:
        proxy.stop()


class NoChunks(Fault):
    """A registry (or proxy in front of one) that refuses PATCH uploads."""

    def request(self, seen, headers):
        if seen.method == "PATCH":
            return 405, {}, b'{"errors":[{"code":"UNSUPPORTED","message":"no chunked uploads"}]}'
        return None


@pytest.mark.fault('a registry refusing chunked uploads', 'falls back to whole-blob PUTs')
def test_monolithic_fallback_when_chunks_refused(registry, big_image, fresh_registry):
    dest = fresh_registry()
    proxy = Proxy(dest.url, NoChunks())
    try:
        run_ok("mirror", f"{registry.host}/big/one:1", f"{proxy.host}/big/one", "--chunk-size", "1MiB")
        assert len(proxy.requests("PATCH")) == 1  # tried once, then whole-blob PUTs
        assert skopeo_digest(f"{dest.host}/big/one:1") == big_image.digest
    finally:
        proxy.stop()


def test_source_credentials(basic_registry, catalog, fresh_registry):
    dest = fresh_registry()
    bad = porter("mirror", f"{basic_registry.host}/team/api:1.4", f"{dest.host}/team/api")
    assert bad.returncode == 1 and b"401" in bad.stderr
    run_ok("mirror", f"{basic_registry.host}/team/api:1.4", f"{dest.host}/team/api", "--src-creds", f"{USER}:{PASSWORD}")
    assert skopeo_digest(f"{dest.host}/team/api:1.4") == catalog["api"].digest
