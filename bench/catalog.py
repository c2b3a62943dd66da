"""Catalog scale: porter mirroring whole registries of 2,000 and 20,000 images.

The source catalog is written straight into a Distribution storage tree (REPOS repositories × 2
tags, each image a small unique layer on one shared 1 MiB base), which a real registry then
serves; porter mirrors it into a fresh registry. Per run: seconds per image, porter's peak RSS
(wait4), bytes porter wrote to disk (/proc/PID/io, polled), and the requests the destination
saw (counted by a loopback proxy in front of it would cost time, so instead: the registry's
access log, method and path kind). Optional: the same catalog (first 250 repositories) through
``skopeo sync``.

    python bench/catalog.py --images 2000 20000
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from services import Registry, free_port  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _put_blob(v2: Path, data: bytes) -> str:
    hexd = hashlib.sha256(data).hexdigest()
    d = v2 / "blobs" / "sha256" / hexd[:2] / hexd
    if not d.exists():
        d.mkdir(parents=True)
        (d / "data").write_bytes(data)
    return "sha256:" + hexd


def _link(path: Path, digest: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "link").write_text(digest)


def make_catalog(storage: Path, repos: int, tags: int = 2) -> int:
    """A storage tree of ``repos`` × ``tags`` images on a shared 1 MiB base; returns the image count."""
    v2 = storage / "docker" / "registry" / "v2"
    base = os.urandom(1 << 20)
    base_d = _put_blob(v2, base)
    for r in range(repos):
        repo = v2 / "repositories" / f"team{r % 50}" / f"app{r}"
        for layer in (base_d,):
            _link(repo / "_layers" / "sha256" / layer[7:], layer)
        for t in range(tags):
            cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {}, "n": [r, t]}).encode()
            uniq = os.urandom(2048)
            cfg_d, uniq_d = _put_blob(v2, cfg), _put_blob(v2, uniq)
            man = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                              "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_d,
                                         "size": len(cfg)},
                              "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                          "digest": base_d, "size": len(base)},
                                         {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                          "digest": uniq_d, "size": len(uniq)}]}).encode()
            man_d = _put_blob(v2, man)
            for d in (cfg_d, uniq_d):
                _link(repo / "_layers" / "sha256" / d[7:], d)
            _link(repo / "_manifests" / "revisions" / "sha256" / man_d[7:], man_d)
            tag = repo / "_manifests" / "tags" / f"v{t}"
            _link(tag / "current", man_d)
            _link(tag / "index" / "sha256" / man_d[7:], man_d)
    return repos * tags


CPU: list[float] = []  # CPU seconds of the last measured command


def measured(cmd: list[str], env: dict | None = None) -> tuple[float, int, int, int]:
    """Run ``cmd``: (seconds, exit code, peak RSS bytes, bytes written to disk); its CPU seconds in CPU."""
    import tempfile

    started = time.monotonic()
    errors = tempfile.TemporaryFile()  # not a pipe: a chatty command (skopeo logs every image) must not block
    # Peak RSS is the child's VmHWM, polled: wait4's ru_maxrss starts a forked child at the size of
    # the process that spawned it (make bench's is large), while VmHWM belongs to the exec'd program.
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=errors, env=env)
    written = peak = 0
    while True:
        try:
            for line in open(f"/proc/{p.pid}/io"):
                if line.startswith("write_bytes:"):
                    written = max(written, int(line.split()[1]))
            for line in open(f"/proc/{p.pid}/status"):
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) * 1024)
        except OSError:
            pass
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        time.sleep(0.1)
    took = time.monotonic() - started
    CPU[:] = [usage.ru_utime + usage.ru_stime]
    errors.seek(0)
    err = errors.read().decode(errors="replace")
    if status:
        print(err[-2000:], file=sys.stderr)
    return took, os.waitstatus_to_exitcode(status), peak or usage.ru_maxrss * 1024, written


def cpu_of(pid: int) -> float:
    """CPU seconds a process has used so far (user + system)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def access_counts(log: Path) -> Counter:
    """Requests the registry logged, by method and kind (manifest, blob, upload)."""
    out: Counter = Counter()
    for line in log.read_text(errors="replace").splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        method, uri = doc.get("http.request.method"), doc.get("http.request.uri", "")
        if not method:
            continue
        kind = "manifest" if "/manifests/" in uri else "upload" if "/blobs/uploads/" in uri else \
            "blob" if "/blobs/" in uri else "other"
        out[f"{method} {kind}"] += 1
    return out


class LoggedRegistry(Registry):
    """A registry that logs every request (JSON), so a run's requests can be counted."""

    def config(self) -> dict:
        cfg = super().config()
        cfg["log"] = {"level": "info", "formatter": "json", "accesslog": {"disabled": True}}
        return cfg


def run(images: int, work: Path, porter: list[str], skopeo: bool, jobs: int = 8) -> dict:
    repos = images // 2
    src_root = work / f"src{images}"
    shutil.rmtree(src_root, ignore_errors=True)
    t0 = time.monotonic()
    make_catalog(src_root / "storage", repos)
    gen = time.monotonic() - t0
    src = Registry(src_root, free_port()).start()
    dest = LoggedRegistry(work / f"dst{images}", free_port()).start()
    state = work / f"state{images}.db"
    try:
        env = dict(os.environ, XDG_CACHE_HOME=str(work / "cache"))
        cpu0 = cpu_of(src.proc.pid), cpu_of(dest.proc.pid)
        took, code, rss, written = measured(porter + ["mirror", src.host, dest.host, "-q", "-j", str(jobs), "--state", str(state)], env)
        cpu1 = cpu_of(src.proc.pid), cpu_of(dest.proc.pid)
        before = access_counts(dest.log)
        rerun, code2, _, _ = measured(porter + ["mirror", src.host, dest.host, "-q", "-j", str(jobs), "--state", str(state)], env)
        rerun_requests = access_counts(dest.log) - before
        out = {"images": images, "generate_s": round(gen, 1), "seconds": round(took, 1), "exit": code,
               "ms_per_image": round(1000 * took / images, 2), "porter_cpu_s": round(CPU[0], 1),
               "source_cpu_s": round(cpu1[0] - cpu0[0], 1), "dest_cpu_s": round(cpu1[1] - cpu0[1], 1), "peak_rss_mb": round(rss / 1e6, 1),
               "disk_written_kib_per_image": round(written / 1024 / images, 1),
               "requests": dict(before), "rerun_seconds": round(rerun, 1), "rerun_exit": code2,
               "rerun_requests": dict(rerun_requests)}
        if skopeo:
            out["skopeo"] = sync_compare(src, work, porter, min(repos, 250))
        return out
    finally:
        src.stop()
        dest.stop()
        shutil.rmtree(src_root, ignore_errors=True)
        shutil.rmtree(dest.root, ignore_errors=True)


def sync_compare(src: Registry, work: Path, porter: list[str], repos: int) -> dict:
    """``repos`` repositories (2 tags each) by porter and by skopeo sync, each into a fresh registry."""
    names = [f"team{r % 50}/app{r}" for r in range(repos)]
    yaml = work / "sync.yml"
    yaml.write_text(f"{src.host}:\n  tls-verify: false\n  images:\n" + "".join(f"    {n}: []\n" for n in names))
    include = "^(" + "|".join(n.replace("/", "/") for n in names) + ")$"
    times = {}
    for who in ("porter", "skopeo"):
        dest = Registry(work / f"sync-{who}", free_port()).start()
        try:
            cmd = porter + ["mirror", src.host, dest.host, "-q", "--include", include] if who == "porter" else \
                ["skopeo", "sync", "--src", "yaml", "--dest", "docker", "--dest-tls-verify=false", str(yaml), dest.host]
            env = dict(os.environ, XDG_CACHE_HOME=str(work / f"cache-{who}"))
            times[who], code, _, _ = measured(cmd, env)
            assert code == 0, f"{who} failed"
        finally:
            dest.stop()
            shutil.rmtree(dest.root, ignore_errors=True)
    return {"images": 2 * repos, "porter_s": round(times["porter"], 2), "skopeo_s": round(times["skopeo"], 2),
            "skopeo_over_porter": round(times["skopeo"] / times["porter"], 2)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--skopeo", action="store_true", help="also compare 500 images with skopeo sync")
    ap.add_argument("-j", "--jobs", type=int, default=8, help="porter's --jobs")
    ap.add_argument("--module", action="store_true", help="run python -m porter from this tree, not the installed command")
    args = ap.parse_args()
    work = ROOT / "bench-out" / "catalog"
    work.mkdir(parents=True, exist_ok=True)
    installed = Path(sys.executable).parent / "porter"
    porter = [str(installed)] if installed.exists() and not args.module else [sys.executable, "-m", "porter"]
    results = []
    for n in args.images:
        results.append(run(n, work, porter, args.skopeo and n == args.images[0], args.jobs))
        print(json.dumps(results[-1]), flush=True)
    print(summary(results))


def summary(results: list[dict]) -> str:
    lines = ["== catalog scale (mirror a whole registry into a fresh one)",
             f"{'images':>8} {'s':>7} {'ms/img':>7} {'RSS MB':>7} {'disk KiB/img':>13} {'manifest HEAD/img':>18} "
             f"{'blob HEAD':>9} {'rerun s':>8} {'rerun req/img':>13}"]
    for r in results:
        req, rr = r["requests"], r["rerun_requests"]
        lines.append(f"{r['images']:>8} {r['seconds']:>7} {r['ms_per_image']:>7} {r['peak_rss_mb']:>7} "
                     f"{r['disk_written_kib_per_image']:>13} {req.get('HEAD manifest', 0) / r['images']:>18.2f} "
                     f"{req.get('HEAD blob', 0):>9} {r['rerun_seconds']:>8} {sum(rr.values()) / r['images']:>13.2f}")
    if len(results) > 1:
        a, b = results[0], results[-1]
        lines.append(f"per-image time at {b['images']} / at {a['images']}: {b['ms_per_image'] / a['ms_per_image']:.2f}x "
                     f"(target <= 1.2); peak RSS at {b['images']}: {b['peak_rss_mb']} MB (target <= 150); disk per "
                     f"image {b['disk_written_kib_per_image'] / max(a['disk_written_kib_per_image'], 0.1):.2f}x")
    for r in results:
        if "skopeo" in r:
            s = r["skopeo"]
            lines.append(f"{s['images']} images over {s['images'] // 2} repositories: skopeo sync {s['skopeo_s']}s, "
                         f"porter {s['porter_s']}s: skopeo / porter {s['skopeo_over_porter']}x (target >= 3)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
