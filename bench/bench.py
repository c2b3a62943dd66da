"""make bench: porter vs the peer (skopeo) vs the floor (curl), same registry, same run, as ratios.

Builds a ~300 MB, 5-layer image (data that gzip shrinks to about 40%, as it does real layers) in a local
Distribution registry, then times, each ``--repeat`` times (median reported):
  floor   curl downloading the same blobs sequentially into one file
  porter  porter export → .tar
  skopeo  skopeo copy docker://… docker-archive:…
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from images import Seeder  # noqa: E402
from services import Registry, free_port  # noqa: E402

OUT = ROOT / "bench-out"
LAYER_MB = [230, 190, 150, 110, 70]  # uncompressed; about 300 MB gzipped


# Random bytes from an 8-symbol alphabet: 3 bits of entropy per byte, so gzip keeps about 40%,
# close to what it keeps of real image layers (binaries, libraries, text).
ALPHABET = bytes.maketrans(bytes(range(256)), bytes(b % 8 + 0x41 for b in range(256)))


class RandomReader(io.RawIOBase):
    def __init__(self, size: int):
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.left)
        b[:n] = os.urandom(n).translate(ALPHABET)
        self.left -= n
        return n


def make_layer(path: Path, mb: int) -> tuple[str, int, str]:
    """A gzip'd tar holding one random file; returns (digest, size, diff_id)."""
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
            with tarfile.open(fileobj=gz, mode="w|") as t:
                ti = tarfile.TarInfo(f"data/{path.stem}.bin")
                ti.size = mb * 1024 * 1024
                t.addfile(ti, io.BufferedReader(RandomReader(ti.size), 1 << 20))
        tmp.rename(path)
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    diff = hashlib.sha256()
    with gzip.open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            diff.update(chunk)
    return "sha256:" + h.hexdigest(), size, "sha256:" + diff.hexdigest()


def seed_big_image(reg: Registry) -> tuple[str, list[tuple[str, int]]]:
    cache = OUT / "layers"
    cache.mkdir(parents=True, exist_ok=True)
    layers = [(cache / f"layer{i}.tar.gz", mb) for i, mb in enumerate(LAYER_MB)]
    infos = [make_layer(p, mb) for p, mb in layers]
    s = Seeder(reg.url)
    for (p, _), (d, size, _) in zip(layers, infos):
        s.blob_file("bench/big", str(p), d, size)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": [x[2] for x in infos]}}).encode()
    cfg_d = s.blob("bench/big", cfg)
    man = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
           "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cfg_d, "size": len(cfg)},
           "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": d, "size": n}
                      for d, n, _ in infos]}
    s.manifest("bench/big", "1", json.dumps(man).encode(), man["mediaType"])
    return f"{reg.host}/bench/big:1", [(cfg_d, len(cfg))] + [(d, n) for d, n, _ in infos]


def timed(cmd: list[str], out: Path | None = None, **kw) -> float:
    if out is not None and out.exists():
        out.unlink()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)
    return time.perf_counter() - t0


def median_of(n: int, fn) -> float:
    return statistics.median(fn() for _ in range(n))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    work = OUT / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    reg = Registry(work / "registry", free_port()).start()
    try:
        ref, blobs = seed_big_image(reg)
        total = sum(n for _, n in blobs)
        print(f"image {ref}: {len(blobs) - 1} layers, {total / 1e6:.0f} MB; median of {args.repeat} runs\n")
        urls = [f"{reg.url}/v2/bench/big/blobs/{d}" for d, _ in blobs]
        floor_out = work / "curl.bin"
        porter_out = work / "porter.tar"
        skopeo_out = work / "skopeo.tar"
        storage_out = work / "storage.tar"
        cp_out = work / "cp.bin"
        blob_files = [str(reg.storage / "docker/registry/v2/blobs/sha256" / d[7:9] / d[7:] / "data") for d, _ in blobs]
        porter = [sys.executable, "-m", "porter", "export", ref, "-q", "-o", str(porter_out)]
        rows = {
            "floor: curl, sequential, one file": median_of(args.repeat, lambda: timed(
                ["sh", "-c", f"curl -sf {' '.join(urls)} > {floor_out}"], floor_out)),
            "porter export": median_of(args.repeat, lambda: timed(porter, porter_out)),
            "porter export --storage (no server)": median_of(args.repeat, lambda: timed(
                [sys.executable, "-m", "porter", "export", "--storage", str(reg.storage), "--as-registry", reg.host,
                 "bench/big:1", "-q", "-o", str(storage_out)], storage_out)),
            "cp of the blob files (disk copy floor)": median_of(args.repeat, lambda: timed(
                ["sh", "-c", "cat " + " ".join(blob_files) + f" > {cp_out}"], cp_out)),
            "skopeo copy docker-archive:": median_of(args.repeat, lambda: timed(
                ["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}",
                 f"docker-archive:{skopeo_out}:{ref}"], skopeo_out)),
        }
        sizes = {"floor: curl, sequential, one file": floor_out.stat().st_size,
                 "porter export": porter_out.stat().st_size,
                 "porter export --storage (no server)": storage_out.stat().st_size,
                 "cp of the blob files (disk copy floor)": cp_out.stat().st_size,
                 "skopeo copy docker-archive:": skopeo_out.stat().st_size}
        same = storage_out.read_bytes() == porter_out.read_bytes()
        base = rows["porter export"]
        print(f"{'':38} {'seconds':>8} {'MB/s':>7} {'size MB':>8}  vs porter")
        for k, v in rows.items():
            print(f"{k:38} {v:8.3f} {total / v / 1e6:7.0f} {sizes[k] / 1e6:8.1f}  {v / base:5.2f}x")
        print()
        print(f"porter / floor time:  {base / rows['floor: curl, sequential, one file']:.2f}x (target <= 1.2)")
        print(f"skopeo / porter time: {rows['skopeo copy docker-archive:'] / base:.2f}x (target >= 6)")
        print(f"porter / skopeo size: {sizes['porter export'] / sizes['skopeo copy docker-archive:']:.2f}x (target <= 0.45)")
        st = rows["porter export --storage (no server)"]
        print(f"storage / HTTP export time: {st / base:.2f}x (target <= 1); storage / disk-copy floor: "
              f"{st / rows['cp of the blob files (disk copy floor)']:.2f}x; archives identical: {same}")
    finally:
        reg.stop()


if __name__ == "__main__":
    main()
