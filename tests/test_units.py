"""Fast tests of pure logic added this round — no services, seconds: name and digest checks,
descriptor shapes, bounded body reads, origin checks, safe paths, archive members and links,
the layer converter, split volumes, delta bases, referrer index merges, job-file typing.
Run only the fast ones with ``pytest tests/test_units.py tests/test_reference.py``."""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import zlib
from pathlib import Path

import httpx
import pytest

from porter import safepath
from porter.delta import load_base
from porter.errors import ArchiveError, PorterError, StorageError, TransportError
from porter.mediatypes import Descriptor, Manifest
from porter.places.archive_members import Members
from porter.places.layers import GZIP, convert
from porter.places.volumes import Chained, VolumeWriter, find_set
from porter.reference import check_repository, check_tag
from porter.referrers import fallback_tag, is_attachment_tag, merged_index
from porter.transport import check_url, origin, read_body

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("name", ["../victim/api", "team/../x", "Team/api", "a//b", "a/", "x" * 256, "", 5])
def test_bad_repository_names(name):
    with pytest.raises(PorterError):
        check_repository(name)


@pytest.mark.parametrize("tag", ["latest#evil", "v9?x=y", "../../x", ".hidden", "-x", "x" * 129, "é"])
def test_bad_tags(tag):
    with pytest.raises(PorterError):
        check_tag(tag)


@pytest.mark.parametrize("desc", [[1, "x"], {"digest": "sha512:" + "a" * 128, "size": 1},
                                  {"digest": "sha256:../../x", "size": 1}, {"digest": D, "size": 10**30},
                                  {"digest": D, "size": True}, {"digest": D, "size": "12"},
                                  {"digest": D, "size": 1, "platform": "linux"},
                                  {"digest": D, "size": 1, "annotations": {"a": 1}}])
def test_malformed_descriptors(desc):
    with pytest.raises(PorterError):
        Descriptor.from_json(desc)


def test_manifest_parse_checks_every_descriptor_once():
    raw = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"digest": D, "size": 2}, "layers": [{"digest": D, "size": 3}]}).encode()
    m = Manifest.parse(raw, "", "sha256:" + hashlib.sha256(raw).hexdigest(), "x")
    assert [d.size for d in m.blobs] == [2, 3]
    with pytest.raises(PorterError):
        Manifest.parse(b"[" * 100_000, "", D, "x")


def _streamed(body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.Response(200, headers=headers, stream=httpx.ByteStream(body))


def test_read_body_is_bounded_and_decodes_gzip_bounded():
    assert read_body(_streamed(b"x" * 10, {}), 10, "w") == b"x" * 10
    with pytest.raises(TransportError):
        read_body(_streamed(b"x" * 11, {}), 10, "w")
    assert read_body(_streamed(b"x" * 11, {}), 10, "w", truncate=True) == b"x" * 10
    bomb = gzip.compress(b"\0" * (10 << 20))
    with pytest.raises(TransportError):
        read_body(_streamed(bomb, {"Content-Encoding": "gzip"}), 1 << 20, "w")
    with pytest.raises(TransportError):
        read_body(_streamed(b"\x1f\x8bnot gzip", {"Content-Encoding": "gzip"}), 100, "w")


def test_origins_and_url_checks():
    assert origin("https://r.example.com/v2/") == ("https", "r.example.com", 443)
    assert origin("http://127.0.0.1:5000/x") == ("http", "127.0.0.1", 5000)
    for bad in ("file:///etc/passwd", "gopher://127.0.0.1/", "http://r.example.com/x"):
        with pytest.raises(TransportError):
            check_url(bad, insecure=False, what="w")
    check_url("http://r.example.com/x", insecure=True, what="w")
    check_url("http://127.0.0.2:1/x", insecure=False, what="w")


def test_safepath_refuses_links_and_special_files(tmp_path):
    root = tmp_path / "root"
    (root / "d").mkdir(parents=True)
    (root / "d" / "f").write_bytes(b"ok")
    os.symlink(tmp_path, root / "out")
    os.mkfifo(root / "d" / "fifo")
    assert safepath.read_regular(root, root / "d" / "f", 10) == b"ok"
    for bad in (root / "out" / "root" / "d" / "f", root / "d" / "fifo"):
        with pytest.raises(StorageError):
            safepath.read_regular(root, bad, 10)
    with pytest.raises(StorageError):
        safepath.read_regular(root, root / "d" / "f", 1)
    assert safepath.remove_tree(root, root / "out") is not None and tmp_path.exists()
    assert safepath.scan_dirs(root, root) == (["d"], ["out"])


def _tar(members: list[tarfile.TarInfo | tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                t.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                t.addfile(info, io.BytesIO(m[1]))
    return buf.getvalue()


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def test_links_inside_an_archive_resolve_and_links_out_are_refused(tmp_path):
    good = tmp_path / "good.tar.gz"
    good.write_bytes(gzip.compress(_tar([("a/layer.tar", b"data"), _link("b/layer.tar", "../a/layer.tar"),
                                         _link("c/layer.tar", "a/layer.tar", tarfile.LNKTYPE)])))
    m = Members(str(good))
    assert b"".join(m.chunks("b/layer.tar")) == b"data" == b"".join(m.chunks("c/layer.tar"))
    m.close()
    for link in (_link("x", "/etc/passwd"), _link("x", "../../etc/passwd"), _link("x", "../y", tarfile.LNKTYPE)):
        bad = tmp_path / "bad.tar"
        bad.write_bytes(_tar([link]))
        with pytest.raises(ArchiveError, match="leaves the archive"):
            Members(str(bad))


def test_layer_converter_is_deterministic_and_checks_diff_ids(tmp_path):
    layer = _tar([("f", b"content" * 1000)])
    diff = "sha256:" + hashlib.sha256(layer).hexdigest()
    a = convert([layer[:100], layer[100:]], tmp_path / "a", diff, "w")
    b = convert([layer], tmp_path / "b", diff, "w")
    assert a.digest == b.digest and a.media_type == GZIP and zlib.decompress((tmp_path / "a").read_bytes(), 31) == layer
    kept = convert([gzip.compress(layer)], tmp_path / "c", diff, "w")
    assert kept.path is None  # already compressed: served as it is
    with pytest.raises(ArchiveError, match="the image config says"):
        convert([layer], tmp_path / "d", D, "w")


def test_split_volumes_round_trip_and_name_damage(tmp_path):
    n = [0]

    def mkstemp(suffix: str):
        n[0] += 1
        path = str(tmp_path / f".tmp{n[0]}{suffix}")
        return os.open(path, os.O_CREAT | os.O_WRONLY), path

    data = os.urandom((3 << 20) + 5)
    w = VolumeWriter(str(tmp_path / "x.tar"), 1 << 20, mkstemp)
    w.write(data)
    vols = w.finish()
    assert len(vols) == 4 and (tmp_path / "SHA256SUMS").read_text().count("x.tar.") == 4
    assert find_set(vols[2]) == [Path(v) for v in vols]
    with Chained(find_set(vols[0])) as f:
        f.seek(1 << 20)
        assert f.read(10) == data[1 << 20:(1 << 20) + 10]
    Path(vols[1]).write_bytes(b"x")
    with pytest.raises(ArchiveError, match="corrupt"):
        find_set(vols[0])
    os.unlink(vols[3])
    with pytest.raises(ArchiveError, match="missing"):
        find_set(vols[0])


def test_delta_base_from_a_digest_list(tmp_path):
    have = tmp_path / "have.txt"
    have.write_text(f"# porter ls --blobs\n{D}\n")
    base = load_base(str(have))
    assert base.digests == {D} and base.identity.startswith("sha256:")
    have.write_text("sha256:nothex\n")
    with pytest.raises(ArchiveError):
        load_base(str(have))


def test_fallback_index_merge_never_drops():
    old_raw = json.dumps({"schemaVersion": 2, "manifests": [{"digest": D, "size": 1}]}).encode()
    old = Manifest.parse(old_raw, "application/vnd.oci.image.index.v1+json", "sha256:" + "b" * 64, "x")
    e = {"digest": "sha256:" + "e" * 64, "size": 2}
    merged = json.loads(merged_index(old, [e, {"digest": D, "size": 1}]))
    assert merged["manifests"] == [{"digest": D, "size": 1}, e]
    assert merged_index(old, [{"digest": D, "size": 1}]) is None
    assert fallback_tag(D) == "sha256-" + "a" * 64
    assert is_attachment_tag(fallback_tag(D)) and is_attachment_tag(fallback_tag(D) + ".sig")
    assert not is_attachment_tag("sha256-short") and not is_attachment_tag("v1.0")


@pytest.mark.parametrize("line,why", [('insecure = "false"', "true or false"), ("jobs = 65", "from 1 to 64"),
                                      ("timeout = 0", "from 1 to 3600"), ("retries = -1", "from 0 to 20"),
                                      ('chunk_size = "1x"', "size")])
def test_job_file_settings_typed(tmp_path, line, why):
    from porter.jobfile import JobFileError, load_job_file

    job = tmp_path / "job.toml"
    job.write_text(f'[settings]\n{line}\n[[mirror]]\nsource = "r:5000/a:1"\ndestination = "s:5000/a"\n')
    with pytest.raises(JobFileError, match=why):
        load_job_file(str(job))


def test_sqlite_journal_converts_refuses_and_takes_concurrent_writers(tmp_path):
    import stat as stat_
    from concurrent.futures import ThreadPoolExecutor

    from porter.journal import Journal

    path = tmp_path / "j.db"
    path.write_text(json.dumps({"version": 1, "job": "k", "images": {"a": D}, "uploads": {
        "u": {"location": "http://127.0.0.1/x", "offset": 7}}}))
    j = Journal(path, "k")
    assert j.images == {"a": D} and j.upload("u") == {"location": "http://127.0.0.1/x", "offset": 7}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: j.image_done(f"img{n}", D), range(500)))
    j.upload_done("u")
    j.close()
    assert stat_.S_IMODE(path.stat().st_mode) == 0o600
    again = Journal(path, "k")
    assert len(again.images) == 501 and again.upload("u") is None
    again.close()
    warned: list[str] = []
    other = Journal(path, "another job", warned.append)
    assert other.images == {} and "another job" in warned[0]
    other.remove()
    assert list(tmp_path.iterdir()) == []
    path.write_text("root:x:0:0\n")
    with pytest.raises(PorterError, match="not a porter journal"):
        Journal(path, "k")
    assert path.read_text() == "root:x:0:0\n"
