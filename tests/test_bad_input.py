"""Bad input gets one clear line, the right exit code, and leaves nothing behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import porter
from proxy import Fault, Proxy
from services import free_port


def one_line_error(p: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    err = p.stderr.decode()
    assert p.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(("porter: error:", "Error:")), err
    for n in needles:
        assert n in err, err
    assert "Traceback" not in err
    return err


@pytest.mark.fault('a malformed image reference', 'one line naming the problem; exit 2; nothing written')
@pytest.mark.parametrize("ref,why", [
    ("127.0.0.1:5000/Team/api:1", "uppercase"),
    ("127.0.0.1:5000/team/api:bad:tag", "bad"),
    ("127.0.0.1:5000/team/api@sha256:1234", "digest"),
    ("", "empty"),
])
def test_malformed_reference_exits_2(tmp_path, ref, why):
    p = porter("export", ref, "-o", str(tmp_path / "a.tar"))
    one_line_error(p, 2, "invalid reference", why)
    assert list(tmp_path.iterdir()) == []


def test_nothing_matched(tmp_path, registry):
    p = porter("export", registry.host, "--include", "no/such/.*", "-o", str(tmp_path / "a.tar"))
    one_line_error(p, 1, "no image matched")
    assert list(tmp_path.iterdir()) == []


def test_usage_error_exits_2(tmp_path):
    p = porter("export", "127.0.0.1:5000/a:1")
    assert p.returncode == 2 and b"--output" in p.stderr


@pytest.mark.fault('an unknown repository or tag', 'one line naming it; exit 1; nothing written')
@pytest.mark.parametrize("ref,needle", [("team/api:nope", "not found"), ("team/nothere:1", "not found")])
def test_unknown_image(registry, tmp_path, ref, needle):
    p = porter("export", f"{registry.host}/{ref}", "-o", str(tmp_path / "a.tar"))
    one_line_error(p, 1, needle, ref.split(":")[0])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.fault('registry unreachable (connection refused)', 'retried with backoff, then one line; exit 1')
def test_unreachable_registry(tmp_path):
    p = porter("export", f"127.0.0.1:{free_port()}/team/api:1", "-o", str(tmp_path / "a.tar"), "--retries", "1")
    one_line_error(p, 1, "unreachable")


@pytest.mark.fault('output file already exists', 'refused without --force; the file is untouched')
def test_refuses_to_overwrite_without_force(registry, tmp_path):
    out = tmp_path / "a.tar"
    out.write_bytes(b"keep me")
    p = porter("export", f"{registry.host}/team/api:1.4", "-o", str(out))
    one_line_error(p, 1, "already exists", "--force")
    assert out.read_bytes() == b"keep me"
    porter("export", f"{registry.host}/team/api:1.4", "-o", str(out), "--force", check=True)
    assert out.stat().st_size > 1000


@pytest.mark.fault('output directory missing', 'one line; exit 1')
def test_missing_output_directory(registry, tmp_path):
    p = porter("export", f"{registry.host}/team/api:1.4", "-o", str(tmp_path / "no" / "a.tar"))
    one_line_error(p, 1, "does not exist")


@pytest.mark.fault('output directory not writable', 'one line; exit 1; nothing left behind')
def test_unwritable_output_directory(registry, tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o500)
    try:
        if os.access(d, os.W_OK):  # root ignores modes: use a read-only bind instead
            subprocess.run(["mount", "--bind", "-o", "ro", str(d), str(d)], check=True)
            subprocess.run(["mount", "-o", "remount,bind,ro", str(d)], check=True)
        p = porter("export", f"{registry.host}/team/api:1.4", "-o", str(d / "a.tar"))
        one_line_error(p, 1, "cannot write")
    finally:
        subprocess.run(["umount", str(d)], capture_output=True)
    assert list(d.iterdir()) == []


@pytest.fixture
def small_fs(tmp_path):
    """Mount a tmpfs of the given size (bytes) and return its path; unmounted afterwards."""
    mounted = []

    def make(size: int) -> Path:
        d = tmp_path / f"small{len(mounted)}"
        d.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True)
        if r.returncode != 0:
            pytest.fail(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
        mounted.append(d)
        return d

    yield make
    for d in mounted:
        subprocess.run(["umount", str(d)], check=True)


@pytest.mark.fault('disk full before the archive fits', 'space reserved up front: one line; exit 1; no partial file')
def test_disk_full(registry, small_fs):
    d = small_fs(600 * 1024)
    p = porter("export", f"{registry.host}/team/api:1.4", "-o", str(d / "a.tar"))
    one_line_error(p, 1, "not enough disk space")
    assert list(d.iterdir()) == []


@pytest.mark.fault('disk full while writing .tar.zst', 'one line; exit 1; temp files removed')
def test_disk_full_while_compressing(registry, small_fs, tmp_path):
    ref = f"{registry.host}/team/api:1.4"
    porter("export", ref, "-o", str(tmp_path / "probe.tar"), check=True)
    size = (tmp_path / "probe.tar").stat().st_size
    # The staged tar fits; the tar plus its (barely smaller) zstd copy does not.
    d = small_fs(int(size * 1.5) // 4096 * 4096)
    p = porter("export", ref, "-o", str(d / "a.tar.zst"))
    one_line_error(p, 1, "disk full")
    assert list(d.iterdir()) == []


class Slow(Fault):
    """Trickle blob bodies so the transfer is still running when the test interrupts it."""

    def mangle(self, seen, chunk, offset):
        if "/blobs/" in seen.path:
            time.sleep(0.2)
        return chunk


@pytest.mark.fault('SIGINT / SIGTERM during an export', 'exit 130 / 143; the partial archive is removed')
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_removes_partial_output(registry, tmp_path, sig, code):
    proxy = Proxy(registry.url, Slow())
    try:
        out = tmp_path / "a.tar"
        proc = subprocess.Popen([sys.executable, "-m", "porter", "export", f"{proxy.host}/team/api:1.4",
                                 "-o", str(out)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not any(tmp_path.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any(tmp_path.iterdir()), "the temp archive never appeared"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == code, err
        assert b"partial output removed" in err
        assert list(tmp_path.iterdir()) == []
    finally:
        proxy.stop()
