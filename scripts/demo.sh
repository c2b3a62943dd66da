#!/usr/bin/env bash
# make demo: export images straight from the registry storage tree in testdata/ (no server),
# then load and run them if a docker daemon is reachable.
set -euo pipefail
cd "$(dirname "$0")/.."
PORTER=.venv/bin/porter
OUT=demo.tar

echo "+ porter ls --storage testdata/registry"
$PORTER ls --storage testdata/registry
echo
echo "+ porter ls --storage testdata/registry demo/multi"
$PORTER ls --storage testdata/registry demo/multi
echo
echo "+ porter export --storage testdata/registry demo/busybox:latest demo/multi:1 -o $OUT --force"
$PORTER export --storage testdata/registry demo/busybox:latest demo/multi:1 -o "$OUT" --force
echo
echo "$OUT holds both images (layers as stored, digests kept). Next, on any machine with docker:"
echo "    docker load -i $OUT && docker run --rm demo/busybox:latest"
if .venv/bin/python -c 'import docker,sys; docker.from_env(timeout=3).ping()' 2>/dev/null; then
  echo
  echo "+ a docker daemon is reachable: loading and running it"
  .venv/bin/python - "$OUT" <<'PY'
import sys, docker
client = docker.from_env(version="auto")
with open(sys.argv[1], "rb") as f:
    for image in client.images.load(f.read()):
        print("loaded", ", ".join(image.tags))
print(client.containers.run("demo/busybox:latest", network_mode="none", remove=True).decode(), end="")
PY
else
  echo "(no docker daemon reachable here, so not loading it)"
fi
