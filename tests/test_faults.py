"""Reliability: network faults, corrupt answers, credentials, interrupts — for every command that
moves images, against the real registry with the fault proxy in front."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import PASSWORD, USER, porter, skopeo_digest
from images import Seeder, tar_layer
from proxy import FailFirst, Fault, FlipFirstByte, Proxy


@pytest.mark.fault("500/502/503 on a blob download", "retried with backoff; completes")
@pytest.mark.parametrize("status", [500, 502, 503])
def test_export_retries_blob_5xx(registry, catalog, tmp_path, status):
    proxy = Proxy(registry.url, FailFirst(status, 2, "/blobs/", "GET"))
    try:
        p = porter("export", f"{proxy.host}/team/api:1.4", "-o", str(tmp_path / "a.tar"))
        assert p.returncode == 0, p.stderr
        assert sum(1 for s in proxy.seen if s.method == "GET" and "/blobs/" in s.path and s.status == status) == 2
    finally:
        proxy.stop()


@pytest.fixture(scope="module")
def api_archive(registry, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faults") / "api.tar"
    porter("export", f"{registry.host}/team/api:1.4", "-o", str(out), check=True)
    return out


@pytest.mark.fault("503 when starting or finishing an upload (import, mirror)", "retried with backoff; completes")
@pytest.mark.parametrize("command", ["mirror", "import"])
@pytest.mark.parametrize("method,match", [("POST", "/blobs/uploads/"), ("PUT", "/blobs/uploads/")])
def test_push_retries_upload_5xx(registry, catalog, fresh_registry, api_archive, command, method, match):
    dest = fresh_registry()
    proxy = Proxy(dest.url, FailFirst(503, 2, match, method))
    try:
        if command == "mirror":
            p = porter("mirror", f"{registry.host}/team/api:1.4", f"{proxy.host}/team/api")
        else:
            p = porter("import", str(api_archive), proxy.host)
        assert p.returncode == 0, p.stderr
        assert len([x for x in proxy.seen if x.method == method and x.status == 503]) == 2
        assert skopeo_digest(f"{dest.host}/team/api:1.4") == catalog["api"].digest
    finally:
        proxy.stop()


class StallOnce(Fault):
    """Send part of one blob, then go silent for ``seconds`` (a stalled stream)."""

    def __init__(self, digest: str, seconds: float):
        self.digest, self.seconds, self.done = digest, seconds, False

    def mangle(self, seen, chunk, offset):
        if self.digest in seen.path and offset > 0 and not self.done:
            self.done = True
            time.sleep(self.seconds)
        return chunk


@pytest.mark.fault("a stalled blob stream (no bytes for --timeout seconds)", "times out, resumes with Range from the last byte")
def test_stalled_stream_times_out_and_resumes(registry, tmp_path):
    s = Seeder(registry.url)
    img = s.image_from_blobs("stall/one", "1", b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers"}}',
                             [os.urandom(3 * 1024 * 1024)])
    layer = img.blobs[1]
    proxy = Proxy(registry.url, StallOnce(layer, 4))
    try:
        t0 = time.monotonic()
        p = porter("export", f"{proxy.host}/stall/one:1", "-o", str(tmp_path / "a.tar"), "--timeout", "1")
        assert p.returncode == 0, p.stderr
        assert time.monotonic() - t0 < 4  # it did not wait out the stall
        gets = [x for x in proxy.seen if x.method == "GET" and layer in x.path]
        assert len(gets) == 2 and gets[1].headers.get("Range", "").startswith("bytes=")
        assert gets[1].headers["Range"] != "bytes=0-"
    finally:
        proxy.stop()


class DifferentManifest(Fault):
    """Answer a manifest-by-digest request with another manifest (a confused or hostile registry)."""

    def __init__(self, asked: str, served: bytes):
        self.asked, self.served = asked, served

    def request(self, seen, headers):
        if seen.path.endswith(f"/manifests/{self.asked}"):
            return 200, {"Content-Type": "application/vnd.docker.distribution.manifest.v2+json",
                         "Docker-Content-Digest": self.asked}, self.served
        return None


@pytest.mark.fault("a registry answering a different manifest than the digest asked for", "refused, naming the digest; exit 1; nothing written")
def test_wrong_manifest_for_digest(registry, catalog, tmp_path):
    api, web = catalog["api"], catalog["web"]
    proxy = Proxy(registry.url, DifferentManifest(api.digest, web.raw))
    try:
        p = porter("export", f"{proxy.host}/team/api@{api.digest}", "-o", str(tmp_path / "a.tar"))
        assert p.returncode == 1 and api.digest.encode() in p.stderr and b"hashes to" in p.stderr
        assert list(tmp_path.iterdir()) == []
    finally:
        proxy.stop()


@pytest.mark.fault("flipped bytes in a blob on the way to a mirror", "refused naming the digest; exit 1; nothing pushed under a tag")
def test_mirror_refuses_corrupt_blob(registry, catalog, fresh_registry):
    layer = catalog["api"].blobs[2]
    src = Proxy(registry.url, FlipFirstByte(layer))
    dest = fresh_registry()
    try:
        p = porter("mirror", f"{src.host}/team/api:1.4", f"{dest.host}/team/api", "--retries", "1")
        assert p.returncode == 1 and layer.encode() in p.stderr and b"corrupt" in p.stderr
        assert httpx.get(f"{dest.url}/v2/team/api/tags/list").status_code == 404
        assert httpx.head(f"{dest.url}/v2/team/api/blobs/{layer}").status_code == 404
    finally:
        src.stop()


class RandomDrops(Fault):
    """Drop about ``rate`` of all connections at a random point of the body, either way."""

    def __init__(self, rate: float, seed: int):
        self.rate, self.rng, self.lock = rate, random.Random(seed), threading.Lock()
        self.dropped = 0

    def _roll(self) -> bool:
        with self.lock:
            hit = self.rng.random() < self.rate
            self.dropped += hit
            return hit

    def cut_after(self, seen):
        if seen.method == "GET" and "/blobs/" in seen.path and self._roll():
            return self.rng.randrange(1, 200_000)
        return None

    def cut_request_after(self, seen):
        if seen.method in ("PATCH", "PUT") and "/blobs/uploads/" in seen.path and self._roll():
            return self.rng.randrange(1, 200_000)
        return None

    def request(self, seen, headers):
        if seen.method in ("HEAD", "POST") and self._roll():
            return 503, {}, b""
        return None


@pytest.mark.fault("soak: ~5% of connections dropped at random during a bulk mirror", "completes; every digest verifies")
def test_soak_bulk_mirror_through_random_drops(registry, catalog, fresh_registry):
    s = Seeder(registry.url)
    for i in range(8):
        s.image(f"soak/r{i % 3}", f"t{i}", [tar_layer({"big": os.urandom(400_000)}), tar_layer({"i": bytes([i])})])
    dest = fresh_registry()
    src_proxy = Proxy(registry.url, RandomDrops(0.05, seed=1))
    dst_proxy = Proxy(dest.url, RandomDrops(0.05, seed=2))
    try:
        p = porter("mirror", src_proxy.host, dst_proxy.host, "--include", "soak/.*", "--chunk-size", "1MiB",
                   "--retries", "8", "--json", timeout=180)
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout)
        assert out["copied"] == 8 and out["failed"] == 0
        assert src_proxy.fault.dropped + dst_proxy.fault.dropped > 0  # faults did happen
        for repo in ("soak/r0", "soak/r1", "soak/r2"):
            for t in httpx.get(f"{registry.url}/v2/{repo}/tags/list").json()["tags"]:
                assert skopeo_digest(f"{dest.host}/{repo}:{t}") == skopeo_digest(f"{registry.host}/{repo}:{t}")
    finally:
        src_proxy.stop()
        dst_proxy.stop()


@pytest.mark.fault("credentials in output, journal or cache", "never written: errors, --json, journal and cache hold no password")
def test_credentials_never_written(basic_registry, fresh_registry, tmp_path):
    dest = fresh_registry()
    cache = tmp_path / "cache"
    env = {"XDG_CACHE_HOME": str(cache), "PORTER_USERNAME": USER, "PORTER_PASSWORD": PASSWORD}
    ok = porter("mirror", f"{basic_registry.host}/team/api", dest.host, "--json", "--state", str(tmp_path / "j.json"),
                env=env)
    bad = porter("mirror", f"{basic_registry.host}/team/api:1.4", dest.host, "--json",
                 env={**env, "PORTER_PASSWORD": PASSWORD + "x"})
    assert ok.returncode == 0, ok.stderr
    assert bad.returncode == 1
    for blob in (ok.stdout, ok.stderr, bad.stdout, bad.stderr):
        assert PASSWORD.encode() not in blob
    for f in list(cache.rglob("*")) + [tmp_path / "j.json"]:
        if f.is_file():
            assert PASSWORD.encode() not in f.read_bytes()


class Trickle(Fault):
    def __init__(self, delay: float):
        self.delay = delay

    def request(self, seen, headers):
        if seen.method in ("PATCH", "PUT", "POST") and "/blobs/" in seen.path:
            time.sleep(self.delay)
        return None


@pytest.mark.fault("SIGINT / SIGTERM during a bulk mirror", "exit 130 / 143 with a clear message; journal kept; the rerun finishes")
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_mirror_interrupted_then_rerun(registry, catalog, fresh_registry, tmp_path, sig, code):
    dest = fresh_registry()
    proxy = Proxy(dest.url, Trickle(0.2))
    state = tmp_path / "job.json"
    args = [sys.executable, "-m", "porter", "mirror", f"{registry.host}/multi/list", proxy.host, "--state", str(state)]
    try:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not proxy.requests("POST"):
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == code, err
        assert err.strip().endswith(b"partial output removed") and err.count(b"porter: error:") == 1
        proxy.fault.delay = 0
        p = subprocess.run(args + ["--json"], capture_output=True)
        assert p.returncode == 0, p.stderr
        assert skopeo_digest(f"{dest.host}/multi/list:1") == catalog["multi/list"].digest
    finally:
        proxy.stop()


@pytest.mark.fault("connection refused / nothing listening", "retried, then one line naming the registry; exit 1")
def test_connection_refused_for_mirror(registry, tmp_path):
    from services import free_port

    p = porter("mirror", f"{registry.host}/team/api:1.4", f"127.0.0.1:{free_port()}/x", "--retries", "1")
    assert p.returncode == 1 and b"unreachable" in p.stderr and p.stderr.count(b"\n") == 1
