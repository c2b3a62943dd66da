"""make bench: porter vs the peer (skopeo) vs the floor (curl), same registry, same run, as ratios.

Builds a ~300 MB, 5-layer image (data that gzip shrinks to about 40%, as it does real layers) in a local
Distribution registry, then times, each ``--repeat`` times (median reported):
  floor   curl downloading the same blobs sequentially into one file
  porter  porter export → .tar
  skopeo  skopeo copy docker://… docker-archive:…
"""
from __future__ import annotations

import argparse
import filecmp
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
sys.path.insert(0, str(ROOT / "bench"))

from images import Seeder  # noqa: E402
from services import Registry, free_port  # noqa: E402

OUT = ROOT / "bench-out"
HTTPX_ROW = "porter export, httpx's own transport"
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


def seed_big_image(reg: Registry) -> tuple[str, list[tuple[str, int, Path]]]:
    """Push the bench image (OCI media types, so skopeo can read porter's archive too)."""
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
    cfg_path = cache / "config.json"
    cfg_path.write_bytes(cfg)
    man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_d, "size": len(cfg)},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n}
                      for d, n, _ in infos]}
    s.manifest("bench/big", "1", json.dumps(man).encode(), man["mediaType"])
    return f"{reg.host}/bench/big:1", [(cfg_d, len(cfg), cfg_path)] + [
        (d, n, p) for (p, _), (d, n, _) in zip(layers, infos)]


def timed(cmd: list[str] | str, out: Path | None = None, before=None, env: dict | None = None) -> float:
    if out is not None and out.exists():
        out.unlink()
    if before:
        before()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, shell=isinstance(cmd, str),
                   env=env)
    return time.perf_counter() - t0


def peak_rss_mb(cmd: list[str], env: dict | None = None) -> float:
    """Peak RSS of one run of ``cmd``, in MB, measured by a small fresh parent: a child forked
    from this (large) process would start its high-water mark at this process's size."""
    probe = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) if p.returncode == 0 "
             "else sys.exit(p.returncode)")
    out = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, env=env)
    if out.returncode:
        raise RuntimeError(f"{cmd} failed: {out.stderr.decode(errors='replace')[-500:]}")
    return int(out.stdout) * 1024 / 1e6


def floor_stream(src: Registry, dest: Registry, blobs: list[tuple[str, int, Path]]) -> str:
    """A shell command: every blob at once, each a curl GET from the source piped into a curl PUT
    at the destination (upload sessions opened first): the best a registry-to-registry copy can do."""
    import httpx

    cmds = []
    for d, n, _ in blobs:
        r = httpx.post(f"{dest.url}/v2/floor/blobs/uploads/")
        loc = str(httpx.URL(dest.url).join(r.headers["Location"]))
        cmds.append(f"curl -sf {src.url}/v2/bench/big/blobs/{d} | curl -sf -T - -H 'Content-Length: {n}' "
                    f"-H 'Content-Type: application/octet-stream' '{loc}&digest={d}' &")
    return " ".join(cmds) + " wait"


def median_of(n: int, fn) -> float:
    return statistics.median(fn() for _ in range(n))


def table(title: str, total: int, rows: dict[str, float], base: str, sizes: dict[str, int] | None = None) -> None:
    print(f"== {title}")
    print(f"{'':44} {'seconds':>8} {'MB/s':>7}" + (f" {'size MB':>8}" if sizes else "") + "  vs porter")
    for k, v in rows.items():
        size = f" {sizes[k] / 1e6:8.1f}" if sizes else ""
        print(f"{k:44} {v:8.3f} {total / v / 1e6:7.0f}{size}  {v / rows[base]:5.2f}x")
    print()


class Fresh:
    """An empty destination registry per timed run (so nothing is already there)."""

    def __init__(self, work: Path):
        self.work, self.n, self.reg = work, 0, None

    def new(self) -> Registry:
        self.stop()
        self.n += 1
        self.reg = Registry(self.work / f"dest{self.n}", free_port()).start()
        return self.reg

    def stop(self) -> None:
        if self.reg:
            self.reg.stop()
            shutil.rmtree(self.reg.root, ignore_errors=True)
            self.reg = None


def floor_push(dest: Registry, blobs: list[tuple[str, int, Path]]) -> str:
    """A shell command: parallel monolithic curl PUTs of the blob files (upload sessions opened first)."""
    import httpx

    cmds = []
    for d, n, path in blobs:
        r = httpx.post(f"{dest.url}/v2/floor/blobs/uploads/")
        loc = str(httpx.URL(dest.url).join(r.headers["Location"]))
        cmds.append(f"curl -sf -T {path} -H 'Content-Type: application/octet-stream' '{loc}&digest={d}' &")
    return " ".join(cmds) + " wait"


def make_gc_storage(root: Path, repos: int = 50, tags: int = 20) -> int:
    """A storage tree like a CI registry's: repos x tags images of config + 2 layers, a shared
    base per repo, half the tags deleted (revision kept, tag gone). Returns the blob count."""
    import hashlib

    v2 = root / "docker" / "registry" / "v2"

    def blob(data: bytes) -> str:
        d = hashlib.sha256(data).hexdigest()
        p = v2 / "blobs" / "sha256" / d[:2] / d
        p.mkdir(parents=True, exist_ok=True)
        (p / "data").write_bytes(data)
        return "sha256:" + d

    def link(p: Path, d: str) -> None:
        p.mkdir(parents=True, exist_ok=True)
        (p / "link").write_text(d)

    count = 0
    for r in range(repos):
        repo = v2 / "repositories" / f"ci/app{r}"
        base = os.urandom(2048)
        for t in range(tags):
            cfg = json.dumps({"architecture": "amd64", "os": "linux", "n": [r, t]}).encode()
            layers = [base, os.urandom(1024)]
            ds = [blob(cfg)] + [blob(x) for x in layers]
            man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                              "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": ds[0],
                                         "size": len(cfg)},
                              "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d,
                                          "size": len(x)} for d, x in zip(ds[1:], layers)]}).encode()
            md = blob(man)
            count += 3
            link(repo / "_manifests" / "revisions" / "sha256" / md[7:], md)
            for d in ds:  # the registry links every blob pushed to the repository, config included
                link(repo / "_layers" / "sha256" / d[7:], d)
            if t % 2 == 0:
                link(repo / "_manifests" / "tags" / f"t{t}" / "current", md)
                link(repo / "_manifests" / "tags" / f"t{t}" / "index" / "sha256" / md[7:], md)
    return count + repos


def memory_section(reg: Registry, fresh: Fresh, porter: list[str], work: Path) -> list[str]:
    """Peak RSS moving one image with a 1 GiB layer (random bytes: nothing to compress)."""
    layer = OUT / "layers" / "gib.bin"
    if not layer.exists():
        with open(layer, "wb") as f:
            for _ in range(1024):
                f.write(os.urandom(1 << 20))
    h = hashlib.sha256()
    with open(layer, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    d, n = "sha256:" + h.hexdigest(), layer.stat().st_size
    s = Seeder(reg.url)
    s.blob_file("bench/gib", str(layer), d, n)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {}}).encode()
    man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": s.blob("bench/gib", cfg),
                      "size": len(cfg)},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": n}]}
    s.manifest("bench/gib", "1", json.dumps(man).encode(), man["mediaType"])
    ref = f"{reg.host}/bench/gib:1"
    tar, zst = work / "gib.tar", work / "gib.tar.zst"
    rss = {"export .tar": peak_rss_mb(porter + ["export", ref, "-q", "-f", "-o", str(tar)]),
           "export .tar.zst": peak_rss_mb(porter + ["export", ref, "-q", "-f", "-o", str(zst)])}
    rss["import"] = peak_rss_mb(porter + ["import", str(tar), fresh.new().host, "-q"])
    rss["mirror"] = peak_rss_mb(porter + ["mirror", ref, f"{fresh.new().host}/bench/gib", "-q"])
    tar.unlink()
    zst.unlink()
    print("== memory: one image with a 1 GiB layer, peak RSS (target <= 150 MB)")
    for k, v in rss.items():
        print(f"{k:44} {v:8.1f} MB")
    print()
    return ["memory  peak RSS, 1 GiB layer:          " + ", ".join(f"{k} {v:.0f} MB" for k, v in rss.items())]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    OUT.mkdir(exist_ok=True)
    os.environ["XDG_CACHE_HOME"] = str(OUT / "cache")  # porter's job journals: not the user's cache
    work = OUT / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    reg = Registry(work / "registry", free_port()).start()
    fresh = Fresh(work)
    # The installed command, as a user runs it (make installs it; its modules are byte-compiled).
    installed = Path(sys.executable).parent / "porter"
    porter = [str(installed)] if installed.exists() else [sys.executable, "-m", "porter"]
    try:
        ref, blobs = seed_big_image(reg)
        total = sum(n for _, n, _ in blobs)
        print(f"image {ref}: {len(blobs) - 1} layers, {total / 1e6:.0f} MB gzipped; median of {args.repeat} runs\n")

        # --- export: registry -> archive -------------------------------------------------------
        urls = [f"{reg.url}/v2/bench/big/blobs/{d}" for d, _, _ in blobs]
        out = {k: work / f"{k}.out" for k in ("curl", "porter", "httpx", "storage", "cp", "skopeo")}
        rows = {
            "floor: curl, sequential, one file": median_of(args.repeat, lambda: timed(
                f"curl -sf {' '.join(urls)} > {out['curl']}", out["curl"])),
            "porter export": median_of(args.repeat, lambda: timed(
                porter + ["export", ref, "-q", "-o", str(out["porter"])], out["porter"])),
            HTTPX_ROW: median_of(args.repeat, lambda: timed(
                porter + ["export", ref, "-q", "-o", str(out["httpx"])], out["httpx"],
                env=dict(os.environ, PORTER_TRANSPORT="httpx"))),
            "porter export --storage (no server)": median_of(args.repeat, lambda: timed(
                porter + ["export", "--storage", str(reg.storage), "--as-registry", reg.host, "bench/big:1", "-q",
                          "-o", str(out["storage"])], out["storage"])),
            "floor: cat of the blob files": median_of(args.repeat, lambda: timed(
                f"cat {' '.join(str(p) for _, _, p in blobs)} > {out['cp']}", out["cp"])),
            "skopeo copy docker-archive:": median_of(args.repeat, lambda: timed(
                ["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}",
                 f"docker-archive:{out['skopeo']}:{ref}"], out["skopeo"])),
        }
        sizes = dict(zip(rows, (out[k].stat().st_size for k in ("curl", "porter", "httpx", "storage", "cp", "skopeo"))))
        table("export: registry -> archive", total, rows, "porter export", sizes)
        base = rows["porter export"]
        st = rows["porter export --storage (no server)"]
        summary = [
            f"export  porter / curl floor time:        {base / rows['floor: curl, sequential, one file']:.2f}x (target <= 1.2)",
            f"export  skopeo / porter time:            {rows['skopeo copy docker-archive:'] / base:.2f}x (target >= 6)",
            f"export  porter / skopeo archive size:    {sizes['porter export'] / sizes['skopeo copy docker-archive:']:.2f}x (target <= 0.45)",
            f"export  httpx transport / wire.py time:  {rows[HTTPX_ROW] / base:.2f}x "
            f"(keep wire.py only if > 1)",
            f"storage export / HTTP export time:       {st / base:.2f}x (target <= 1); vs cat floor "
            f"{st / rows['floor: cat of the blob files']:.2f}x; archives identical: "
            f"{filecmp.cmp(out['storage'], out['porter'], shallow=False)}",
        ]

        # --- push: registry -> registry, archive -> registry ------------------------------------
        def to_fresh(cmd_for) -> float:
            dest = fresh.new()
            return timed(cmd_for(dest))

        rows = {
            "floor: parallel curl PUTs of the blob files": median_of(args.repeat, lambda: to_fresh(
                lambda d: floor_push(d, blobs))),
            "floor: curl GET | curl PUT, every blob at once": median_of(args.repeat, lambda: to_fresh(
                lambda d: floor_stream(reg, d, blobs))),
            "porter mirror": median_of(args.repeat, lambda: to_fresh(
                lambda d: porter + ["mirror", ref, f"{d.host}/bench/big", "-q"])),
            "skopeo copy docker:// docker://": median_of(args.repeat, lambda: to_fresh(
                lambda d: ["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false",
                           f"docker://{ref}", f"docker://{d.host}/bench/big:1"])),
            "porter import (archive)": median_of(args.repeat, lambda: to_fresh(
                lambda d: porter + ["import", str(out["porter"]), d.host, "-q"])),
            "skopeo copy oci-archive: docker://": median_of(args.repeat, lambda: to_fresh(
                lambda d: ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci-archive:{out['porter']}:1",
                           f"docker://{d.host}/bench/big:1"])),
        }
        dest = fresh.new()
        first = timed(porter + ["mirror", ref, f"{dest.host}/bench/big", "-q"])
        rerun = median_of(args.repeat, lambda: timed(porter + ["mirror", ref, f"{dest.host}/bench/big", "-q"]))
        rows["porter mirror, rerun (all there)"] = rerun
        table("push: into a fresh registry each run", total, rows, "porter mirror")
        floor = rows["floor: parallel curl PUTs of the blob files"]
        summary += [
            f"mirror  skopeo / porter time:            {rows['skopeo copy docker:// docker://'] / rows['porter mirror']:.2f}x (target > 1)",
            f"mirror  porter / ingest floor time:      {rows['porter mirror'] / floor:.2f}x",
            f"mirror  porter / streaming floor time:   "
            f"{rows['porter mirror'] / rows['floor: curl GET | curl PUT, every blob at once']:.2f}x (target <= 1.1)",
            f"import  skopeo / porter time:            {rows['skopeo copy oci-archive: docker://'] / rows['porter import (archive)']:.2f}x (target > 1)",
            f"import  porter / ingest floor time:      {rows['porter import (archive)'] / floor:.2f}x (target <= 1.2)",
            f"mirror  rerun / first run:               {rerun / first:.2f}x (target <= 0.25)",
        ]
        # --- bulk: a 24-tag repository with a shared base -------------------------------------------
        s = Seeder(reg.url)
        base_layer = blobs[-1]  # the smallest big layer (~30 MB) as the shared base
        for t in range(24):
            unique = os.urandom(512 * 1024)
            cfg_t = json.dumps({"architecture": "amd64", "os": "linux", "n": t}).encode()
            ds = [s.blob("bench/many", cfg_t), base_layer[0], s.blob("bench/many", unique)]
            if t == 0:
                s.blob_file("bench/many", str(base_layer[2]), base_layer[0], base_layer[1])
            man = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": ds[0],
                              "size": len(cfg_t)},
                   "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ds[1],
                               "size": base_layer[1]},
                              {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ds[2],
                               "size": len(unique)}]}
            s.manifest("bench/many", f"v1.0.{t}", json.dumps(man).encode(), man["mediaType"])
        repo = f"{reg.host}/bench/many"
        rows = {
            "porter mirror (repository, 24 tags)": median_of(args.repeat, lambda: to_fresh(
                lambda d: porter + ["mirror", repo, f"{d.host}/bench/many", "-q"])),
            "skopeo sync": median_of(args.repeat, lambda: to_fresh(
                lambda d: ["skopeo", "sync", "--src", "docker", "--dest", "docker", "--src-tls-verify=false",
                           "--dest-tls-verify=false", repo, f"{d.host}/bench"])),
        }
        dest = fresh.new()
        timed(porter + ["mirror", repo, f"{dest.host}/bench/many", "-q"])
        rows["porter mirror, rerun (all there)"] = median_of(args.repeat, lambda: timed(
            porter + ["mirror", repo, f"{dest.host}/bench/many", "-q"]))
        rows["skopeo sync, rerun (all there)"] = median_of(args.repeat, lambda: timed(
            ["skopeo", "sync", "--src", "docker", "--dest", "docker", "--src-tls-verify=false",
             "--dest-tls-verify=false", repo, f"{dest.host}/bench"]))
        many_total = base_layer[1] + 24 * 512 * 1024
        table("bulk: 24 tags sharing a base, fresh registry each run", many_total, rows,
              "porter mirror (repository, 24 tags)")
        summary += [
            f"bulk    skopeo sync / porter time:       {rows['skopeo sync'] / rows['porter mirror (repository, 24 tags)']:.2f}x (target >= 3)",
            f"bulk    rerun: skopeo / porter time:     {rows['skopeo sync, rerun (all there)'] / rows['porter mirror, rerun (all there)']:.2f}x",
        ]
        # --- air gap: a delta for a new tag, and offline verification -------------------------------
        full, delta = work / "full.tar", work / "delta.tar"
        timed(porter + ["export", repo, "-q", "-o", str(full)])
        unique = os.urandom(512 * 1024)
        cfg_t = json.dumps({"architecture": "amd64", "os": "linux", "n": 24}).encode()
        man["config"] = {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": s.blob("bench/many", cfg_t),
                         "size": len(cfg_t)}
        man["layers"] = man["layers"][:1] + [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                              "digest": s.blob("bench/many", unique), "size": len(unique)}]
        s.manifest("bench/many", "v1.0.24", json.dumps(man).encode(), man["mediaType"])
        timed(porter + ["export", repo, "-q", "-o", str(delta), "--since", str(full)])
        big = out["porter"]  # the 359 MB archive of the export section: startup does not dominate
        verify = median_of(args.repeat, lambda: timed(porter + ["verify", str(big), "-q"]))
        read = median_of(args.repeat, lambda: timed(f"cat {big} > /dev/null"))
        mb = big.stat().st_size / 1e6
        print(f"== air gap: {repo} (25 tags, one new): full archive {full.stat().st_size / 1e6:.1f} MB, delta "
              f"{delta.stat().st_size / 1e6:.2f} MB; verify of the {mb:.0f} MB archive {verify:.3f}s "
              f"({mb / verify:.0f} MB/s), "
              f"cat {read:.3f}s ({mb / read:.0f} MB/s)\n")
        summary += [
            f"delta   delta / full archive size:       {delta.stat().st_size / full.stat().st_size:.3f}x",
            f"verify  porter verify / cat time:        {verify / read:.2f}x ({mb / verify:.0f} MB/s; sha256 ~2 GB/s here)",
        ]
        fresh.stop()

        # --- memory: a 1 GiB layer through export (.tar, .tar.zst), import and mirror --------------
        summary += memory_section(reg, fresh, porter, work)

        # --- catalog scale ----------------------------------------------------------------------
        if os.environ.get("BENCH_CATALOG", "2000 20000") != "0":
            import catalog

            sizes_ = [int(x) for x in os.environ.get("BENCH_CATALOG", "2000 20000").split()]
            results = [catalog.run(n, work, porter, skopeo=(n == sizes_[0])) for n in sizes_]
            text = catalog.summary(results)
            print(text + "\n")
            summary += [line for line in text.splitlines()[2:]]

        # --- gc: a few thousand blobs -------------------------------------------------------------
        gc_root = work / "gc"
        nblobs = make_gc_storage(gc_root / "storage")
        cfg = gc_root / "config.yml"
        cfg.write_text(json.dumps({"version": 0.1, "log": {"level": "error"},
                                   "storage": {"filesystem": {"rootdirectory": str(gc_root / "storage")}}}))
        rows = {}
        for flag in ("", "--delete-untagged"):
            extra = [flag] if flag else []
            rows[f"porter gc --dry-run {flag}"] = median_of(args.repeat, lambda: timed(
                porter + ["gc", str(gc_root / "storage"), "--dry-run", "-q"] + extra))
            rows[f"registry garbage-collect --dry-run {flag}"] = median_of(args.repeat, lambda: timed(
                ["docker-registry", "garbage-collect", "--dry-run"] + extra + [str(cfg)]))
        print(f"== gc: {nblobs} blobs in 50 repositories")
        print(f"{'':44} {'seconds':>8}")
        for k, v in rows.items():
            print(f"{k:44} {v:8.3f}")
        print()
        for flag in ("", "--delete-untagged"):
            summary.append(f"gc {flag or 'plain'}: registry / porter time:    "
                           f"{rows[f'registry garbage-collect --dry-run {flag}'] / rows[f'porter gc --dry-run {flag}']:.2f}x (target >= 1)")

        print("== ratios")
        print("\n".join(summary))
    finally:
        fresh.stop()
        reg.stop()


if __name__ == "__main__":
    main()
