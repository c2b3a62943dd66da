"""Reference parsing: Docker's defaults and clear errors (pure functions, no services needed)."""
from __future__ import annotations

import pytest

from porter.errors import ReferenceError_
from porter.reference import parse

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("text,host,repo,tag,digest,name", [
    ("alpine", "docker.io", "library/alpine", None, None, "alpine"),
    ("alpine:3.19", "docker.io", "library/alpine", "3.19", None, "alpine"),
    ("bitnami/redis:7", "docker.io", "bitnami/redis", "7", None, "bitnami/redis"),
    ("docker.io/library/alpine", "docker.io", "library/alpine", None, None, "alpine"),
    ("index.docker.io/x/y", "docker.io", "x/y", None, None, "x/y"),
    ("localhost/app", "localhost", "app", None, None, "localhost/app"),
    ("localhost:5000/a/b/c:v1", "localhost:5000", "a/b/c", "v1", None, "localhost:5000/a/b/c"),
    ("127.0.0.1:5000/team/api:1.4", "127.0.0.1:5000", "team/api", "1.4", None, "127.0.0.1:5000/team/api"),
    (f"reg.example.com/app@{D}", "reg.example.com", "app", None, D, "reg.example.com/app"),
    (f"reg.example.com/app:1@{D}", "reg.example.com", "app", "1", D, "reg.example.com/app"),
    ("[::1]:5000/app:x", "[::1]:5000", "app", "x", None, "[::1]:5000/app"),
    ("docker://quay.io/a/b:c", "quay.io", "a/b", "c", None, "quay.io/a/b"),
])
def test_parse(text, host, repo, tag, digest, name):
    r = parse(text)
    assert (r.host, r.repository, r.tag, r.digest, r.name) == (host, repo, tag, digest, name)


@pytest.mark.parametrize("text", ["127.0.0.1:5000", "registry.example.com", "localhost", "localhost:5000",
                                  "reg.example.com:443", "[::1]:5000"])
def test_bare_host_is_registry(text):
    assert parse(text).is_registry


@pytest.mark.parametrize("text", ["alpine:3.19", "ubuntu:22.04", "busybox", "host:5000"])
def test_lone_name_with_tag_is_an_image(text):
    assert parse(text).host == "docker.io" and not parse(text).is_registry


def test_defaults_and_api_host():
    r = parse("alpine")
    assert r.with_default_tag().tag == "latest" and r.manifest_ref == "latest"
    assert r.api_host == "registry-1.docker.io"
    assert r.with_default_tag().tagged_name() == "alpine:latest"
    assert parse("127.0.0.1:5000/x").is_loopback and parse("localhost:1/x").is_loopback
    assert not parse("reg.example.com/x").is_loopback


def test_storage_paths_are_literal():
    r = parse("busybox:1", host="")
    assert (r.host, r.repository, r.name) == ("", "busybox", "busybox")
    assert parse("reg.local/x", host="").repository == "reg.local/x"


@pytest.mark.parametrize("text", ["", " alpine", "Alpine", "a/B", "a:b:c", "a@sha256:xyz",
                                  "a//b", "a/-b", "bad_host:x:5000/a", "x/" + "a" * 256])
def test_malformed(text):
    with pytest.raises(ReferenceError_):
        parse(text)
