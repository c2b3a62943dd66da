"""The details a newcomer trips on (issue 15): exit codes, messages, help text, listings, files."""
from __future__ import annotations

import json
import os
import pty
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import porter

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("args", [
    ["prune", "127.0.0.1:9/x", "--older-than", "30x"],
    ["gc", "/nonexistent", "--upload-age", "7"],
    ["mirror", "127.0.0.1:9", "127.0.0.1:9/y", "--shard", "3/2"],
    ["mirror", "127.0.0.1:9", "127.0.0.1:9/y", "--include", "team/("],
    ["export", "127.0.0.1:9/x:1", "-o", "/tmp/porter-never.tar", "--platform", "arm64"],
    ["ls", "127.0.0.1:9", "--creds", "alice"],
    ["ls", "127.0.0.1:9", "--as-registry", "foo"],
])
def test_malformed_arguments_exit_2_with_usage(args):
    p = porter(*args)
    err = p.stderr.decode()
    assert p.returncode == 2 and "Usage:" in err and "porter: error:" in err, err


def test_plain_http_registry_is_named_as_such(registry):
    name = socket.gethostname()
    if not socket.gethostbyname(name).startswith("127."):
        pytest.skip(f"{name} does not resolve to a loopback address here")
    p = porter("ls", f"{name}:{registry.port}/team/api", "--retries", "0")
    assert p.returncode == 1 and b"speaks plain HTTP" in p.stderr and b"--insecure" in p.stderr, p.stderr


def test_no_docker_engine_is_said_plainly(registry, tmp_path):
    p = porter("mirror", "docker-daemon:busybox:1", f"{registry.host}/x",
               env={"DOCKER_HOST": f"unix://{tmp_path}/none.sock"})
    assert p.returncode == 1 and b"no docker engine answers at DOCKER_HOST=" in p.stderr, p.stderr


def test_archive_to_a_terminal_is_refused(registry):
    main, sub = pty.openpty()
    try:
        p = subprocess.run([sys.executable, "-m", "porter", "export", f"{registry.host}/team/api:1.4", "-o", "-"],
                           stdout=sub, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(sub)
        os.close(main)
    assert p.returncode == 1 and b"refusing to write an archive to a terminal" in p.stderr


@pytest.mark.parametrize("name", ["out.tgz", "out.tar.gz"])
def test_gzip_output_names_are_refused(registry, tmp_path, name):
    p = porter("export", f"{registry.host}/team/api:1.4", "-o", str(tmp_path / name))
    assert p.returncode == 1 and b".tar.zst" in p.stderr and not (tmp_path / name).exists()


def test_archive_mode_follows_the_umask(registry, tmp_path):
    out = tmp_path / "a.tar"
    wrapper = "import os, sys, runpy; os.umask(0o022); sys.argv = sys.argv[1:]; runpy.run_module('porter', run_name='__main__')"
    subprocess.run([sys.executable, "-c", wrapper, "porter", "export", f"{registry.host}/team/api:1.4", "-o", str(out)],
                   check=True, capture_output=True)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_delete_dry_run_shows_the_plan_with_shared_tags(fresh_registry, registry):
    dest = fresh_registry()
    porter("mirror", f"{registry.host}/team/api:1.4", f"{dest.host}/team/api:1.4", check=True)
    porter("mirror", f"{registry.host}/team/api:1.4", f"{dest.host}/team/api:also", check=True)
    p = porter("delete", f"{dest.host}/team/api:1.4", "--dry-run")
    assert p.returncode == 0, p.stderr
    assert b"also" in p.stdout + p.stderr and b"--force" in p.stdout + p.stderr
    rows = json.loads(porter("ls", f"{dest.host}/team/api", "--json").stdout)
    assert sorted(r["tag"] for r in rows) == ["1.4", "also"]  # a dry run deleted nothing


def test_missing_platform_lists_what_there_is(registry, tmp_path):
    p = porter("export", f"{registry.host}/multi/list:1", "--platform", "linux/s390x", "-o", str(tmp_path / "x.tar"))
    err = p.stderr.decode()
    assert p.returncode == 1 and "platforms: linux/amd64, linux/arm64/v8" in err and "use --platform" not in err


def test_help_texts():
    assert b"-f, --force" in porter("delete", "--help").stdout
    gc = porter("gc", "--help").stdout.decode()
    assert "-q, --quiet" in gc and "No summary line" in gc and "uploads, problems" in gc and "DURATION" in gc
    mirror = porter("mirror", "--help").stdout.decode()
    assert "--chunk-size SIZE" in mirror and "TEXT" not in mirror.split("--chunk-size")[1].split("\n")[0]
    assert "searched" in mirror and "anchor" in mirror
    assert "TARGET" not in porter("ls", "--help").stdout.decode()


def test_ls_labels_counts_and_sorts_versions(fresh_registry, registry):
    dest = fresh_registry()
    for tag in ("v1.10.0", "v1.2.0", "latest", "v1.9.1"):
        porter("mirror", f"{registry.host}/team/api:1.4", f"{dest.host}/team/api:{tag}", check=True)
    listing = porter("ls", dest.host).stdout.decode()
    assert "team/api    4 tags" in listing
    rows = porter("ls", f"{dest.host}/team/api").stdout.decode().splitlines()[1:]
    assert [r.split()[1] for r in rows] == ["v1.2.0", "v1.9.1", "v1.10.0", "latest"]


def test_suite_writes_no_journal_under_home():
    assert os.environ["XDG_CACHE_HOME"].startswith(("/tmp", os.environ.get("TMPDIR", "/tmp")))


def test_kubernetes_job_keeps_journals_on_a_volume_that_outlives_pods():
    text = (ROOT / "deploy/kubernetes/mirror-job.yaml").read_text()
    assert "emptyDir" not in text.split("volumes:")[1]
    assert "persistentVolumeClaim: {claimName: porter-state}" in text and "shard-$(SHARD).json" in text


def test_make_venv_is_a_regular_install_and_says_what_it_does():
    mk = (ROOT / "Makefile").read_text()
    assert "pip install -q --disable-pip-version-check '.[test]'" in mk and "-e '.[test]'" not in mk
    assert "@echo \"make: installing porter" in mk


def test_explicit_state_file_is_kept_after_a_clean_finish(registry, fresh_registry, tmp_path):
    dest, state = fresh_registry(), tmp_path / "state.json"
    porter("mirror", f"{registry.host}/team/api", f"{dest.host}/team/api", "--state", str(state), check=True)
    import sqlite3

    with sqlite3.connect(state) as db:
        assert db.execute("SELECT COUNT(*) FROM images").fetchone()[0] > 0
