"""Auth, TLS, retries, resume and redirects: porter export against registries that need them."""
from __future__ import annotations

import base64
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import PASSWORD, USER, porter
from proxy import FailFirst, Fault, FlipFirstByte, Proxy


def export_ok(ref: str, out: Path, *extra: str, env: dict | None = None) -> None:
    p = porter("export", ref, "-o", str(out), *extra, env=env)
    assert p.returncode == 0, p.stderr.decode()
    assert out.stat().st_size > 0


def test_basic_auth_creds_flag(basic_registry, tmp_path):
    export_ok(f"{basic_registry.host}/team/api:1.4", tmp_path / "a.tar", "--creds", f"{USER}:{PASSWORD}")


def test_basic_auth_env(basic_registry, tmp_path):
    export_ok(f"{basic_registry.host}/team/api:1.4", tmp_path / "a.tar",
              env={"PORTER_USERNAME": USER, "PORTER_PASSWORD": PASSWORD})


def test_basic_auth_docker_config(basic_registry, tmp_path):
    cfg = tmp_path / "dockercfg"
    cfg.mkdir()
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (cfg / "config.json").write_text(json.dumps({"auths": {basic_registry.host: {"auth": token}}}))
    export_ok(f"{basic_registry.host}/team/api:1.4", tmp_path / "a.tar", env={"DOCKER_CONFIG": str(cfg)})


@pytest.mark.parametrize("config_key", ["credHelpers", "credsStore"])
def test_credential_helper(basic_registry, tmp_path, config_key):
    cfg = tmp_path / "dockercfg"
    bindir = tmp_path / "bin"
    cfg.mkdir()
    bindir.mkdir()
    helper = bindir / "docker-credential-porterfake"
    helper.write_text(f"#!/bin/sh\nread host\n[ \"$host\" = \"{basic_registry.host}\" ] || exit 1\n"
                      f"echo '{{\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n")
    helper.chmod(0o755)
    config = {"credHelpers": {basic_registry.host: "porterfake"}} if config_key == "credHelpers" \
        else {"credsStore": "porterfake"}
    (cfg / "config.json").write_text(json.dumps(config))
    export_ok(f"{basic_registry.host}/team/api:1.4", tmp_path / "a.tar",
              env={"DOCKER_CONFIG": str(cfg), "PATH": f"{bindir}:{os.environ['PATH']}"})


@pytest.mark.fault('wrong password (Basic auth)', 'one line naming 401, without the password; exit 1')
def test_wrong_password_is_one_line_and_leaves_nothing(basic_registry, tmp_path):
    p = porter("export", f"{basic_registry.host}/team/api:1.4", "-o", str(tmp_path / "a.tar"),
               "--creds", f"{USER}:wrong-{PASSWORD}")
    err = p.stderr.decode()
    assert p.returncode == 1
    assert err.startswith("porter: error:") and err.count("\n") == 1
    assert "401" in err and "credentials" in err
    assert PASSWORD not in err
    assert list(tmp_path.iterdir()) == []


def test_no_credentials_for_auth_registry(basic_registry, tmp_path):
    p = porter("export", f"{basic_registry.host}/team/api:1.4", "-o", str(tmp_path / "a.tar"),
               env={"DOCKER_CONFIG": str(tmp_path)})
    assert p.returncode == 1 and b"401" in p.stderr


def test_token_auth(token_registry, token_server, tmp_path):
    before = token_server.issued
    export_ok(f"{token_registry.host}/team/api:1.4", tmp_path / "a.tar", "--creds", f"{USER}:{PASSWORD}")
    # The token is cached per scope: the ping and one repository scope, not one per request.
    assert token_server.issued - before <= 2


@pytest.mark.fault('wrong password (token auth)', 'one line: authentication failed; exit 1')
def test_token_auth_wrong_password(token_registry, tmp_path):
    p = porter("export", f"{token_registry.host}/team/api:1.4", "-o", str(tmp_path / "a.tar"),
               "--creds", f"{USER}:nope")
    assert p.returncode == 1 and b"authentication failed" in p.stderr


@pytest.mark.fault('TLS certificate from an unknown CA', 'refused until --ca-cert, certs.d or --insecure')
def test_tls_needs_trusted_ca(tls_registry, tmp_path):
    ref = f"{tls_registry.host}/team/api:1.4"
    p = porter("export", ref, "-o", str(tmp_path / "a.tar"))
    assert p.returncode == 1 and b"TLS certificate not trusted" in p.stderr
    ca = tls_registry.tls[1]
    export_ok(ref, tmp_path / "b.tar", "--ca-cert", str(ca))
    certs_d = tmp_path / "certs.d"
    (certs_d / tls_registry.host).mkdir(parents=True)
    shutil.copy(ca, certs_d / tls_registry.host / "ca.crt")
    export_ok(ref, tmp_path / "c.tar", env={"PORTER_CERTS_D": str(certs_d)})
    export_ok(ref, tmp_path / "d.tar", "--insecure")
    assert (tmp_path / "b.tar").read_bytes() == (tmp_path / "c.tar").read_bytes()


class DropOnce(Fault):
    """Cut the first GET of one blob after ``at`` bytes."""

    def __init__(self, digest: str, at: int):
        self.digest, self.at, self.done = digest, at, False

    def cut_after(self, seen):
        if seen.method == "GET" and self.digest in seen.path and not self.done:
            self.done = True
            return self.at
        return None


@pytest.mark.fault('connection dropped mid-blob, a body shorter than its Content-Length (download)', 'resumed with Range: only the remainder is fetched')
def test_dropped_connection_resumes_with_range(registry, catalog, tmp_path):
    base = catalog["api"].blobs[1]  # the busybox layer, ~1 MB
    proxy = Proxy(registry.url, DropOnce(base, 300_000))
    try:
        out = tmp_path / "a.tar"
        export_ok(f"{proxy.host}/team/api:1.4", out)
        gets = proxy.requests("GET", base)
        assert len(gets) == 2, gets
        assert "Range" not in gets[0].headers and gets[1].headers.get("Range") == "bytes=300000-"
        assert gets[1].status == 206
        direct = tmp_path / "direct.tar"
        export_ok(f"{registry.host}/team/api:1.4", direct)
        # Same bytes apart from the reference names.
        assert out.stat().st_size == direct.stat().st_size
    finally:
        proxy.stop()


@pytest.mark.fault('500 / 503 / 429 with Retry-After on manifests', 'retried with backoff, Retry-After honoured; completes')
@pytest.mark.parametrize("status,headers", [(503, {}), (500, {}), (429, {"Retry-After": "1"})])
def test_retries_temporary_errors(registry, tmp_path, status, headers):
    import time

    proxy = Proxy(registry.url, FailFirst(status, 2, "/manifests/", headers=headers))
    try:
        t0 = time.monotonic()
        export_ok(f"{proxy.host}/team/api:1.4", tmp_path / "a.tar")
        if "Retry-After" in headers:
            assert time.monotonic() - t0 >= 2  # two waits of one second each
        assert len(proxy.requests("GET", "/manifests/")) == 3
    finally:
        proxy.stop()


@pytest.mark.fault('a registry that keeps answering 503', 'gives up after --retries: one line; exit 1; nothing written')
def test_gives_up_after_retries(registry, tmp_path):
    proxy = Proxy(registry.url, FailFirst(503, 100, "/manifests/"))
    try:
        p = porter("export", f"{proxy.host}/team/api:1.4", "-o", str(tmp_path / "a.tar"), "--retries", "2")
        assert p.returncode == 1 and b"503" in p.stderr
        assert list(tmp_path.iterdir()) == []
    finally:
        proxy.stop()


class RedirectBlobs(Fault):
    """Redirect blob GETs to ``target`` (another loopback port), as registries do to object storage."""

    def __init__(self, target: str):
        self.target = target

    def request(self, seen, headers):
        if seen.method == "GET" and "/blobs/sha256:" in seen.path:
            return 307, {"Location": f"http://{self.target}{seen.path}"}, b""
        return None


@pytest.mark.fault('blob redirect to another host', 'followed without the Authorization header')
def test_redirect_does_not_leak_credentials(basic_registry, registry, tmp_path):
    # Object storage stand-in: the plain registry behind a recording proxy on another port.
    storage = Proxy(registry.url)
    front = Proxy(basic_registry.url, RedirectBlobs(storage.host))
    try:
        export_ok(f"{front.host}/team/api:1.4", tmp_path / "a.tar", "--creds", f"{USER}:{PASSWORD}")
        assert any("Authorization" in s.headers for s in front.requests("GET", "/manifests/"))
        blob_gets = storage.requests("GET", "/blobs/")
        assert blob_gets and all("Authorization" not in s.headers for s in blob_gets)
    finally:
        front.stop()
        storage.stop()


@pytest.mark.fault('flipped bytes in a blob (export)', 'refused naming the digest; exit 1; no archive left')
def test_corrupt_blob_refused(registry, catalog, tmp_path):
    layer = catalog["api"].blobs[2]
    proxy = Proxy(registry.url, FlipFirstByte(layer))
    try:
        p = porter("export", f"{proxy.host}/team/api:1.4", "-o", str(tmp_path / "a.tar"))
        assert p.returncode == 1
        assert layer.encode() in p.stderr and b"hashes to" in p.stderr
        assert list(tmp_path.iterdir()) == []
    finally:
        proxy.stop()


SCHEMA1 = json.dumps({"schemaVersion": 1, "name": "team/api", "tag": "1.4", "architecture": "amd64",
                      "fsLayers": [], "history": [], "signatures": []}).encode()


class ServeSchema1(Fault):
    """Answer manifest requests as an old registry holding a schema 1 image does."""

    def request(self, seen, headers):
        if "/manifests/" in seen.path:
            return 200, {"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"}, SCHEMA1
        return None


@pytest.mark.fault('a Docker schema 1 manifest', 'one line: not supported; exit 1')
def test_schema1_is_refused_clearly(registry, tmp_path):
    proxy = Proxy(registry.url, ServeSchema1())
    try:
        p = porter("export", f"{proxy.host}/team/api:1.4", "-o", str(tmp_path / "a.tar"))
        assert p.returncode == 1 and b"schema 1 manifests are not supported" in p.stderr, p.stderr
        assert list(tmp_path.iterdir()) == []
    finally:
        proxy.stop()


def test_through_a_forward_proxy(registry, catalog, tmp_path):
    """With HTTP_PROXY set, requests go through it (httpx's own transport handles proxies)."""
    proxy = Proxy(registry.url)
    try:
        export_ok(f"{registry.host}/team/api:1.4", tmp_path / "a.tar",
                  env={"HTTP_PROXY": f"http://{proxy.host}", "NO_PROXY": ""})
        assert proxy.requests("GET", "/blobs/") and proxy.requests("GET", "/manifests/")
    finally:
        proxy.stop()


def test_anonymous_token_auth(registry, tmp_path, tmp_path_factory):
    """Docker Hub's way: a token server that hands anonymous pull tokens; no credentials at all."""
    from services import Registry, TokenServer, free_port

    ts = TokenServer(tmp_path_factory.mktemp("anon-token"))
    reg = Registry(tmp_path / "anon", free_port(), auth=ts.registry_auth(), shared_storage=registry.storage).start()
    try:
        export_ok(f"{reg.host}/team/api:1.4", tmp_path / "a.tar", env={"DOCKER_CONFIG": str(tmp_path)})
        assert ts.issued >= 1
    finally:
        reg.stop()
        ts.stop()
