"""Streaming and formats: memory stays flat in image size; zstd layers are kept as served."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import zstandard

from conftest import porter
from images import Seeder, sha, tar_layer


def peak_rss_kb(*args: str) -> int:
    """Peak RSS of one porter run, measured by a fresh parent so no other child counts."""
    code = ("import resource, subprocess, sys; "
            "p = subprocess.run(sys.argv[1:], capture_output=True); "
            "sys.exit(p.returncode) if p.returncode else print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, sys.executable, "-m", "porter", *args],
                         capture_output=True, check=True)
    return int(out.stdout)


def test_memory_flat_in_image_size(registry, tmp_path):
    s = Seeder(registry.url)
    big = os.urandom(96 * 1024 * 1024)  # incompressible: the layer is ~96 MB on the wire
    s.image_from_blobs("mem/big", "1", b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}',
                       [big])
    s.image_from_blobs("mem/small", "1", b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}',
                       [b"tiny layer"])
    small_kb = peak_rss_kb("export", f"{registry.host}/mem/small:1", "-q", "-o", str(tmp_path / "s.tar"))
    big_kb = peak_rss_kb("export", f"{registry.host}/mem/big:1", "-q", "-o", str(tmp_path / "b.tar"))
    assert (tmp_path / "b.tar").stat().st_size > 96 * 1024 * 1024
    assert big_kb - small_kb < 24 * 1024, f"peak RSS grew {(big_kb - small_kb) // 1024} MB for a 96 MB image"


def test_zstd_layers_kept_as_served(registry, tmp_path):
    s = Seeder(registry.url)
    layer_tar = tar_layer({"etc/z.txt": b"zstd layer\n"})
    zlayer = zstandard.ZstdCompressor().compress(layer_tar)
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": [sha(layer_tar)]}}).encode()
    cfg_d, layer_d = s.blob("z/app", cfg), s.blob("z/app", zlayer)
    man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_d, "size": len(cfg)},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": layer_d,
                       "size": len(zlayer)}]}
    raw = json.dumps(man).encode()
    s.manifest("z/app", "1", raw, man["mediaType"])
    out = tmp_path / "z.tar"
    porter("export", f"{registry.host}/z/app:1", "-o", str(out), check=True)
    with tarfile.open(out) as t:
        assert t.extractfile(f"blobs/sha256/{layer_d[7:]}").read() == zlayer
        assert t.extractfile(f"blobs/sha256/{sha(raw)[7:]}").read() == raw


def test_memory_flat_when_pushing(registry, fresh_registry, tmp_path):
    s = Seeder(registry.url)
    cfg = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    s.image_from_blobs("mem/push-big", "1", cfg, [os.urandom(96 * 1024 * 1024)])
    s.image_from_blobs("mem/push-small", "1", cfg, [b"tiny layer"])
    dest = fresh_registry()
    small_kb = peak_rss_kb("mirror", f"{registry.host}/mem/push-small:1", f"{dest.host}/s", "-q")
    big_kb = peak_rss_kb("mirror", f"{registry.host}/mem/push-big:1", f"{dest.host}/b", "-q", "--chunk-size", "32MiB")
    assert big_kb - small_kb < 24 * 1024, f"peak RSS grew {(big_kb - small_kb) // 1024} MB for a 96 MB image"
