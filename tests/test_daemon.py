"""The docker engine as source and destination (real dockerd through the SDK)."""
from __future__ import annotations

import json

import pytest

from conftest import porter, skopeo_digest


@pytest.fixture
def env(dockerd) -> dict:
    return {"DOCKER_HOST": f"unix://{dockerd.sock}"}


def run(client, ref: str) -> bytes:
    client.images.get(ref)  # never let containers.run try a pull
    return client.containers.run(ref, network_mode="none", remove=True)


def test_import_into_daemon(registry, dockerd, env, tmp_path):
    out = tmp_path / "a.tar.zst"
    porter("export", f"{registry.host}/team/web:2.0", f"{registry.host}/multi/oci:1", "--all-platforms",
           "-o", str(out), check=True)
    p = porter("import", str(out), "docker-daemon:", "--json", env=env)
    assert p.returncode == 0, p.stderr
    assert set(json.loads(p.stdout)["loaded"]) == {f"{registry.host}/team/web:2.0", f"{registry.host}/multi/oci:1"}
    client = dockerd.client()
    assert run(client, f"{registry.host}/team/web:2.0") == b"web 2.0\n"
    assert run(client, f"{registry.host}/multi/oci:1") == b"amd64\n"


def test_registry_to_daemon_with_new_name(registry, dockerd, env):
    p = porter("mirror", f"{registry.host}/team/api:1.4", "docker-daemon:pulled/api:local", env=env)
    assert p.returncode == 0, p.stderr
    assert run(dockerd.client(), "pulled/api:local") == b"api 1.4\n"


def test_daemon_to_registry_and_back(registry, fresh_registry, dockerd, env):
    client = dockerd.client()
    porter("mirror", f"{registry.host}/team/api:1.4", "docker-daemon:local/app:dev", env=env, check=True)
    dest = fresh_registry()
    p = porter("mirror", "docker-daemon:local/app:dev", f"{dest.host}/myapp:dev", "--json", env=env)
    assert p.returncode == 0, p.stderr
    pushed = json.loads(p.stdout)
    assert skopeo_digest(f"{dest.host}/myapp:dev") == pushed["images"][0]["digest"]
    # Compression is deterministic: a rerun finds every blob and the manifest already there.
    again = json.loads(porter("mirror", "docker-daemon:local/app:dev", f"{dest.host}/myapp:dev", "--json",
                              env=env, check=True).stdout)
    assert again["blobs"]["uploaded"] == 0 and again["images"][0]["digest"] == pushed["images"][0]["digest"]
    # What the registry got runs: pull it into the daemon under another name.
    client.images.pull(f"{dest.host}/myapp:dev")
    assert run(client, f"{dest.host}/myapp:dev") == b"api 1.4\n"


def test_unknown_daemon_image(dockerd, env, fresh_registry):
    p = porter("mirror", "docker-daemon:no/such:image", f"{fresh_registry().host}/x:1", env=env)
    assert p.returncode == 1 and b"no such image in the docker daemon" in p.stderr


def test_no_daemon(tmp_path, registry):
    p = porter("mirror", f"{registry.host}/team/api:1.4", "docker-daemon:",
               env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert p.returncode == 1 and b"no docker engine answers at DOCKER_HOST=" in p.stderr
    assert p.stderr.count(b"\n") == 1
