"""Regenerate testdata/registry: a raw storage tree written by a real Distribution registry.

Holds demo/busybox:latest (a runnable static busybox), demo/multi:1 (a Docker manifest list,
linux/amd64 runnable + linux/arm64) and demo/tools/hello:1 (a nested repository name, OCI).
Run from the repository root: .venv/bin/python scripts/make-testdata.py
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from images import Seeder, busybox_layer, tar_layer  # noqa: E402
from services import Registry, free_port  # noqa: E402


def main() -> None:
    target = ROOT / "testdata" / "registry"
    work = ROOT / "testdata" / ".build"
    shutil.rmtree(work, ignore_errors=True)
    reg = Registry(work, free_port()).start()
    try:
        s = Seeder(reg.url)
        base = busybox_layer()
        s.image("demo/busybox", "latest", [base], cmd=["/bin/echo", "hello from porter's embedded demo"])
        amd = s.image("demo/multi", None, [base, tar_layer({"etc/arch.txt": b"linux/amd64\n"})],
                      cmd=["/bin/cat", "/etc/arch.txt"])
        arm = s.image("demo/multi", None, [tar_layer({"etc/arch.txt": b"linux/arm64\n"})], arch="arm64",
                      variant="v8", cmd=["/bin/cat", "/etc/arch.txt"])
        s.index("demo/multi", "1", [(amd, {"os": "linux", "architecture": "amd64"}),
                                    (arm, {"os": "linux", "architecture": "arm64", "variant": "v8"})])
        s.image("demo/tools/hello", "1", [base, tar_layer({"etc/hello.txt": b"hello\n"})], fmt="oci",
                cmd=["/bin/cat", "/etc/hello.txt"])
    finally:
        reg.stop()
    shutil.rmtree(target, ignore_errors=True)
    shutil.move(str(work / "storage"), str(target))
    shutil.rmtree(work)
    for uploads in target.rglob("_uploads"):
        shutil.rmtree(uploads)
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
