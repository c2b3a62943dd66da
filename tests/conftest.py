"""Fixtures that start real services: Distribution registries (plain, htpasswd, token, TLS) sharing
one storage directory seeded with test images, and a real dockerd.

With CI=true a missing tool or service fails the run; elsewhere it skips with the reason.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from images import Seeder, busybox_layer, tar_layer  # noqa: E402
from services import Dockerd, Registry, TokenServer, free_port, htpasswd_file, make_ca, missing_tools  # noqa: E402

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Nothing a test runs may write outside its temp dirs: porter's default journals go under here.
import tempfile  # noqa: E402

os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="porter-tests-cache-")
USER, PASSWORD = "porter", "s3cret-pass"


def need(condition: bool, reason: str) -> None:
    if condition:
        return
    if CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def tools() -> None:
    missing = missing_tools()
    need(not missing, f"missing packages: {' '.join(missing)} (make test installs them as root on Debian)")


@pytest.fixture(scope="session")
def registry(tools, tmp_path_factory) -> Registry:
    reg = Registry(tmp_path_factory.mktemp("reg"), free_port()).start()
    try:
        seed(reg)
        yield reg
    finally:
        reg.stop()


class Catalog(dict):
    """What ``seed`` pushed, by name."""


def seed(reg: Registry) -> None:
    s = Seeder(reg.url)
    base = busybox_layer()
    cat = Catalog()
    cat["api"] = s.image("team/api", "1.4", [base, tar_layer({"etc/api.txt": b"api 1.4\n"})],
                         cmd=["/bin/cat", "/etc/api.txt"])
    cat["web"] = s.image("team/web", "2.0", [base, tar_layer({"etc/web.txt": b"web 2.0\n"})],
                         cmd=["/bin/cat", "/etc/web.txt"])
    cat["oci"] = s.image("oci/app", "1", [base, tar_layer({"etc/oci.txt": b"oci app\n"})], fmt="oci",
                         cmd=["/bin/cat", "/etc/oci.txt"])
    for fmt, repo in (("docker", "multi/list"), ("oci", "multi/oci")):
        amd = s.image(repo, None, [base, tar_layer({"etc/arch.txt": b"amd64\n"})], fmt=fmt,
                      cmd=["/bin/cat", "/etc/arch.txt"])
        arm = s.image(repo, None, [tar_layer({"etc/arch.txt": b"arm64 (not runnable here)\n"})], fmt=fmt,
                      arch="arm64", variant="v8", cmd=["/bin/cat", "/etc/arch.txt"])
        cat[repo] = s.index(repo, "1", [(amd, {"os": "linux", "architecture": "amd64"}),
                                        (arm, {"os": "linux", "architecture": "arm64", "variant": "v8"})], fmt=fmt)
        cat[repo + ":amd64"], cat[repo + ":arm64"] = amd, arm
    reg.catalog = cat


@pytest.fixture(scope="session")
def catalog(registry) -> Catalog:
    return registry.catalog


def _sibling(registry: Registry, tmp: Path, **kw) -> Registry:
    """Another registry process serving the same storage, with auth or TLS."""
    return Registry(tmp, free_port(), shared_storage=registry.storage, **kw).start()


@pytest.fixture(scope="session")
def basic_registry(registry, tmp_path_factory) -> Registry:
    d = tmp_path_factory.mktemp("basic")
    pw = htpasswd_file(d / "htpasswd", USER, PASSWORD)
    reg = _sibling(registry, d, auth={"htpasswd": {"realm": "porter-test", "path": str(pw)}})
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def token_server(tools, tmp_path_factory) -> TokenServer:
    ts = TokenServer(tmp_path_factory.mktemp("token"), USER, PASSWORD)
    yield ts
    ts.stop()


@pytest.fixture(scope="session")
def token_registry(registry, token_server, tmp_path_factory) -> Registry:
    reg = _sibling(registry, tmp_path_factory.mktemp("tokenreg"), auth=token_server.registry_auth())
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def tls_registry(registry, tmp_path_factory) -> Registry:
    d = tmp_path_factory.mktemp("tls")
    reg = _sibling(registry, d, tls=make_ca(d))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def dockerd(tools, tmp_path_factory) -> Dockerd:
    need(os.geteuid() == 0, "dockerd needs root")
    # Short path: unix socket paths are limited to 108 bytes.
    import tempfile

    d = Dockerd(Path(tempfile.mkdtemp(prefix="porter-dockerd-")))
    try:
        d.start()
    except RuntimeError as e:
        need(False, f"dockerd did not start: {e}")
    yield d
    d.stop()


def porter(*args: str, input: bytes | None = None, env: dict | None = None, check: bool = False,
           timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the porter CLI as a user would (a subprocess), capturing output."""
    e = dict(os.environ, **(env or {}))
    e.pop("PORTER_USERNAME", None) if "PORTER_USERNAME" not in (env or {}) else None
    p = subprocess.run([sys.executable, "-m", "porter", *args], input=input, capture_output=True, env=e,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"porter {' '.join(args)} failed ({p.returncode}): {p.stderr.decode()}")
    return p


@pytest.fixture
def fresh_registry(tools, tmp_path):
    """Start empty registries on demand: ``fresh_registry()``, ``fresh_registry(auth=…)``; all stopped after."""
    started: list[Registry] = []

    def make(**kw) -> Registry:
        reg = Registry(tmp_path / f"fresh{len(started)}", free_port(), **kw).start()
        started.append(reg)
        return reg

    yield make
    for reg in started:
        reg.stop()


def skopeo_digest(ref: str, creds: str | None = None) -> str:
    """The digest skopeo computes over the manifest bytes the registry serves for ``ref``."""
    import hashlib

    args = ["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{ref}"]
    if creds:
        args[2:2] = ["--creds", creds]
    raw = subprocess.run(args, check=True, capture_output=True).stdout
    return "sha256:" + hashlib.sha256(raw).hexdigest()
