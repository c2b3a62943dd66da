"""Tampered and hostile archives are refused with a clear message before anything is pushed."""
from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import httpx
import pytest
import zstandard

from conftest import porter


@pytest.fixture(scope="module")
def good(registry, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("good") / "good.tar"
    porter("export", f"{registry.host}/team/api:1.4", "-o", str(out), check=True)
    return out


def rebuild(src: Path, dst: Path, change) -> Path:
    """Copy ``src`` member by member through ``change(info, data) -> [(info, data)]``."""
    with tarfile.open(src) as t, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as out:
        for m in t.getmembers():
            data = t.extractfile(m).read() if m.isfile() else None
            for info, d in change(m, data):
                out.addfile(info, io.BytesIO(d) if d is not None else None)
    return dst


def extra(info_kw: dict, data: bytes | None = None):
    ti = tarfile.TarInfo(info_kw.pop("name"))
    for k, v in info_kw.items():
        setattr(ti, k, v)
    if data is not None:
        ti.size = len(data)
    return ti, data


def nothing_pushed(dest) -> None:
    assert httpx.get(f"{dest.url}/v2/_catalog").json()["repositories"] == []


def layer_of(good: Path) -> str:
    with tarfile.open(good) as t:
        return json.loads(t.extractfile("manifest.json").read())[0]["Layers"][-1]


@pytest.mark.fault('archive blob not matching its digest', 'refused naming the blob; nothing pushed under a tag')
def test_blob_not_matching_digest(good, fresh_registry, tmp_path):
    layer = layer_of(good)

    def flip(m, data):
        if m.name == layer:
            data = bytes([data[0] ^ 1]) + data[1:]
        return [(m, data)]

    bad = rebuild(good, tmp_path / "bad.tar", flip)
    dest = fresh_registry()
    p = porter("import", str(bad), dest.host)
    assert p.returncode == 1 and b"is corrupt" in p.stderr and layer.split("/")[-1].encode() in p.stderr
    assert httpx.get(f"{dest.url}/v2/team/api/tags/list").status_code == 404  # nothing under a tag


@pytest.mark.fault('archive lacking a blob its manifest lists', 'refused before anything is pushed')
def test_missing_blob(good, fresh_registry, tmp_path):
    layer = layer_of(good)
    bad = rebuild(good, tmp_path / "bad.tar", lambda m, d: [] if m.name == layer else [(m, d)])
    dest = fresh_registry()
    p = porter("import", str(bad), dest.host)
    assert p.returncode == 1 and b"missing from the archive" in p.stderr
    nothing_pushed(dest)


@pytest.mark.fault('archive members with ../, absolute paths, links leaving the archive, devices, FIFOs, duplicates', 'refused naming the member; nothing pushed')
@pytest.mark.parametrize("member,needle", [
    ({"name": "../evil", "size": 0}, b"points outside"),
    ({"name": "/etc/evil", "size": 0}, b"absolute path"),
    ({"name": "blobs/sha256/link", "type": tarfile.SYMTYPE, "linkname": "/etc/passwd"}, b"leaves the archive"),
    ({"name": "blobs/sha256/up", "type": tarfile.SYMTYPE, "linkname": "../../../etc/passwd"}, b"leaves the archive"),
    ({"name": "blobs/sha256/hard", "type": tarfile.LNKTYPE, "linkname": "../etc/passwd"}, b"leaves the archive"),
    ({"name": "dev", "type": tarfile.CHRTYPE, "devmajor": 1, "devminor": 3}, b"device or special"),
    ({"name": "fifo", "type": tarfile.FIFOTYPE}, b"device or special"),
    ({"name": "oci-layout", "size": 0}, b"appears twice"),
])
def test_hostile_members(good, fresh_registry, tmp_path, member, needle):
    bad = rebuild(good, tmp_path / "bad.tar", lambda m, d: [(m, d)] + ([extra(dict(member), b"" if member.get("size") == 0 else None)] if m.name == "index.json" else []))
    dest = fresh_registry()
    p = porter("import", str(bad), dest.host)
    assert p.returncode == 1 and needle in p.stderr, p.stderr
    assert p.stderr.count(b"\n") == 1
    nothing_pushed(dest)


@pytest.mark.fault('index.json naming a path outside blobs/', 'refused (malformed digest); nothing pushed')
def test_index_pointing_outside_blobs(good, fresh_registry, tmp_path):
    def evil(m, d):
        if m.name == "index.json":
            doc = json.loads(d)
            doc["manifests"][0]["digest"] = "sha256:../../../../etc/passwd"
            d = json.dumps(doc).encode()
            m.size = len(d)
        return [(m, d)]

    bad = rebuild(good, tmp_path / "bad.tar", evil)
    dest = fresh_registry()
    p = porter("import", str(bad), dest.host)
    assert p.returncode == 1 and b"malformed digest" in p.stderr
    nothing_pushed(dest)


@pytest.mark.fault('oversized index.json', 'refused; nothing pushed')
def test_oversized_json(good, fresh_registry, tmp_path):
    def huge(m, d):
        if m.name == "index.json":
            d = b'{"manifests": [], "pad": "' + b"x" * (17 * 1024 * 1024) + b'"}'
            m.size = len(d)
        return [(m, d)]

    bad = rebuild(good, tmp_path / "bad.tar", huge)
    dest = fresh_registry()
    p = porter("import", str(bad), dest.host)
    assert p.returncode == 1 and b"more than the" in p.stderr
    nothing_pushed(dest)


@pytest.mark.fault('a zstd bomb larger than the free disk', 'decompression stopped before the disk filled; refused; temp file removed')
def test_zstd_bomb(fresh_registry, tmp_path):
    """No fixed ratio: an archive that declares no size may decompress up to the free disk (less a
    reserve). A 64 MiB scratch filesystem shows the bound without filling the real disk."""
    bomb = tmp_path / "bomb.tar.zst"
    cctx = zstandard.ZstdCompressor(level=19)
    with open(bomb, "wb") as f, cctx.stream_writer(f) as w:
        zeros = bytes(1 << 20)
        for _ in range(1024):  # 1 GiB of zeros: a few tens of KB compressed
            w.write(zeros)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600m", "tmpfs", str(scratch)]).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        dest = fresh_registry()
        p = porter("import", str(bomb), dest.host, env={"TMPDIR": str(scratch)})
        assert p.returncode == 1 and b"decompresses to more than the free disk" in p.stderr, p.stderr
        assert list(scratch.iterdir()) == []  # the partial decompression is gone
    finally:
        subprocess.run(["umount", str(scratch)])


@pytest.mark.fault('a .tar.zst holding a 200 MiB layer of zeros', 'imported: no fixed ratio refuses a legitimate archive')
def test_highly_compressible_archive_imports(tools, fresh_registry, tmp_path):
    import gzip as gz

    from images import Seeder

    src, dest = fresh_registry(), fresh_registry()
    layer = gz.compress(bytes(200 << 20), compresslevel=1)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    pushed = Seeder(src.url).image_from_blobs("zeros/app", "1", cfg, [layer])
    out = tmp_path / "z.tar.zst"
    porter("export", f"{src.host}/zeros/app:1", "-o", str(out), check=True)
    p = porter("import", str(out), dest.host)
    assert p.returncode == 0, p.stderr
    assert httpx.head(f"{dest.url}/v2/zeros/app/manifests/1", headers={"Accept": pushed.media_type}).headers[
        "Docker-Content-Digest"] == pushed.digest


@pytest.mark.fault('a file that is not a tar', 'one line; exit 1')
def test_not_an_archive(fresh_registry, tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar file at all" * 100)
    p = porter("import", str(junk), fresh_registry().host)
    assert p.returncode == 1 and b"porter: error:" in p.stderr and b"Traceback" not in p.stderr
