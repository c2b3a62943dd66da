"""Air-gap updates (issue 14): delta archives, split volumes, offline verification — against real
registries on both sides of the gap, and docker running what crossed it."""
from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

import httpx
import pytest

from conftest import porter, skopeo_digest
from images import Seeder, busybox_layer, tar_layer
from services import Registry, free_port


@pytest.fixture(scope="module")
def sides(tools, tmp_path_factory):
    """A source registry with a repository on a shared base, and an empty far-side registry."""
    d = tmp_path_factory.mktemp("gap")
    src, far = Registry(d / "src", free_port()).start(), Registry(d / "far", free_port()).start()
    s = Seeder(src.url)
    src.base = busybox_layer()
    src.pushed = {t: s.image("team/app", t, [src.base, tar_layer({"etc/v.txt": f"{t}\n".encode()})],
                             cmd=["/bin/cat", "/etc/v.txt"]) for t in ("1.0", "1.1")}
    yield src, far
    src.stop()
    far.stop()


def run_ok(*args: str) -> dict:
    p = porter(*args, "--json")
    assert p.returncode == 0, p.stderr.decode()
    return json.loads(p.stdout)


def tags(reg, repo: str) -> list[str]:
    r = httpx.get(f"{reg.url}/v2/{repo}/tags/list")
    return sorted(r.json().get("tags") or []) if r.status_code == 200 else []


def test_full_then_delta_across_the_gap(sides, dockerd, tmp_path):
    src, far = sides
    full = tmp_path / "full.tar"
    run_ok("export", f"{src.host}/team/app", "-o", str(full))
    run_ok("import", str(full), far.host)
    # New tags at the source: one adds a layer on the same base.
    s = Seeder(src.url)
    src.pushed["2.0"] = s.image("team/app", "2.0", [src.base, tar_layer({"etc/v.txt": b"2.0\n"}),
                                                    tar_layer({"etc/new.txt": os.urandom(4096)})],
                                cmd=["/bin/cat", "/etc/v.txt"])
    delta = tmp_path / "update.tar"
    out = run_ok("export", f"{src.host}/team/app", "-o", str(delta), "--since", str(full))
    assert out["delta"]["omitted"] >= 1 and delta.stat().st_size < full.stat().st_size
    with tarfile.open(delta) as t:
        names = t.getnames()
    assert "manifest.json" not in names  # not loadable on its own
    assert f"blobs/sha256/{src.pushed['1.0'].blobs[1][7:]}" not in names  # the base layer stayed home
    # docker-daemon: is refused; the far side imports it.
    p = porter("import", str(delta), "docker-daemon:")
    assert p.returncode == 1 and b"delta" in p.stderr
    summary = run_ok("import", str(delta), far.host)
    assert summary["failed"] == 0
    for t, pushed in src.pushed.items():
        assert skopeo_digest(f"{far.host}/team/app:{t}") == pushed.digest
    client = dockerd.client()
    client.images.pull(f"{far.host}/team/app:2.0")
    assert client.containers.run(f"{far.host}/team/app:2.0", network_mode="none", remove=True) == b"2.0\n"


def test_delta_against_a_digest_list(sides, tmp_path):
    src, _ = sides
    have = tmp_path / "have.txt"
    p = porter("ls", "--blobs", src.host, "-o", str(have))
    assert p.returncode == 0, p.stderr
    listed = [x for x in have.read_text().splitlines() if x.startswith("sha256:")]
    assert src.pushed["1.0"].blobs[1] in listed
    out = run_ok("export", f"{src.host}/team/app:1.1", "-o", str(tmp_path / "d.tar"), "--since", str(have))
    assert out["delta"]["omitted"] == 2  # both layers are there already
    assert porter("verify", str(tmp_path / "d.tar"), "--base", str(have)).returncode == 0


def test_missing_base_is_named_and_nothing_is_tagged(sides, fresh_registry, tmp_path):
    src, _ = sides
    full = tmp_path / "full.tar"
    run_ok("export", f"{src.host}/team/app:1.0", "-o", str(full))
    delta = tmp_path / "d.tar"
    run_ok("export", f"{src.host}/team/app:1.0", f"{src.host}/team/app:1.1", "-o", str(delta), "--since", str(full))
    empty = fresh_registry()
    p = porter("import", str(delta), empty.host)
    err = p.stderr.decode()
    assert p.returncode == 1 and "lacks" in err and "import the base" in err and "nothing was tagged" in err
    assert tags(empty, "team/app") == []


def test_split_volumes_any_order_and_damage_named(sides, fresh_registry, tmp_path):
    src, _ = sides
    s = Seeder(src.url)
    big = {t: s.image("team/big", t, [src.base, tar_layer({"r": os.urandom(1500 << 10)})]) for t in ("1", "2")}
    out = tmp_path / "vol" / "all.tar.zst"
    out.parent.mkdir()
    summary = run_ok("export", f"{src.host}/team/big", "-o", str(out), "--split-size", "1M")
    vols = summary["volumes"]
    assert len(vols) >= 2 and all(Path(v).stat().st_size <= 1 << 20 for v in vols)
    assert (out.parent / "SHA256SUMS").exists()
    assert shutil.which("sha256sum") is None or os.system(f"cd {out.parent} && sha256sum -c --quiet SHA256SUMS") == 0
    dest = fresh_registry()
    run_ok("import", *reversed(vols), dest.host)  # the set, in any order
    assert tags(dest, "team/big") == sorted(big)
    dest2 = fresh_registry()
    run_ok("import", vols[0], dest2.host)  # or its first volume
    # A corrupted volume, then a missing one, are named.
    bad = Path(vols[1])
    data = bytearray(bad.read_bytes())
    data[100] ^= 0xFF
    bad.write_bytes(bytes(data))
    for cmd in (["import", vols[0], fresh_registry().host], ["verify", vols[0]]):
        p = porter(*cmd)
        assert p.returncode == 1 and f"volume {bad} is corrupt".encode() in p.stderr, p.stderr
    bad.unlink()
    p = porter("import", vols[0], fresh_registry().host)
    assert p.returncode == 1 and f"volume {bad} ".encode() in p.stderr and b"missing" in p.stderr


def test_verify_catches_a_flipped_byte_and_a_missing_blob(sides, tmp_path):
    src, _ = sides
    good = tmp_path / "good.tar"
    run_ok("export", f"{src.host}/team/app:1.0", "-o", str(good))
    assert porter("verify", str(good)).returncode == 0
    layer = src.pushed["1.0"].blobs[2]

    def rebuild(dst: Path, change) -> Path:
        import io

        with tarfile.open(good) as t, tarfile.open(dst, "w") as o:
            for m in t.getmembers():
                data = t.extractfile(m).read() if m.isfile() else None
                if m.name.endswith(layer[7:]):
                    data = change(data)
                    if data is None:
                        continue
                o.addfile(m, io.BytesIO(data) if data is not None else None)
        return dst

    flipped = rebuild(tmp_path / "flipped.tar", lambda d: bytes([d[0] ^ 1]) + d[1:])
    p = porter("verify", str(flipped))
    assert p.returncode == 1 and layer.encode() in p.stderr and b"corrupt" in p.stderr
    gone = rebuild(tmp_path / "gone.tar", lambda d: None)
    p = porter("verify", str(gone))
    assert p.returncode == 1 and b"missing" in p.stderr and layer.encode() in p.stderr


def test_export_job_file_takes_since_and_split_size(sides, tmp_path):
    src, _ = sides
    full = tmp_path / "full.tar"
    run_ok("export", f"{src.host}/team/app:1.0", "-o", str(full))
    job = tmp_path / "job.toml"
    job.write_text(f'[settings]\noutput = "{tmp_path}/upd.tar"\nsince = "{full}"\nsplit_size = "1MiB"\n'
                   f'[[export]]\nsource = "{src.host}/team/app"\ntags = "^1\\\\."\n')
    out = run_ok("export", "--config", str(job))
    assert out["delta"]["omitted"] >= 1 and out["volumes"] and out["volumes"][0].endswith("upd.tar.000")
    assert sorted(i["reference"].rsplit(":", 1)[1] for i in out["images"]) == ["1.0", "1.1"]
    assert porter("verify", out["volumes"][0], "--base", str(full)).returncode == 0
    job.write_text(f'[settings]\noutput = "x.tar"\nsplit_size = true\n[[export]]\nsource = "{src.host}/team/app"\n')
    p = porter("export", "--config", str(job))
    assert p.returncode == 2 and f"{job}:3:".encode() in p.stderr and b"split_size" in p.stderr
