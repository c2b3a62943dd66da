#!/usr/bin/env bash
# Install what porter's tests need on Debian, when missing: the real services they run against.
# As root on Debian it installs packages; elsewhere it says what is missing and leaves it to the
# tests (which skip, or fail under CI=true).
set -euo pipefail

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v dockerd >/dev/null || need+=(docker.io)
command -v skopeo >/dev/null || need+=(skopeo)
# archives other tools write, and clients that read porter's (issue 12's interoperability tests)
command -v containerd >/dev/null || need+=(containerd)
command -v podman >/dev/null || need+=(podman)
command -v umoci >/dev/null || need+=(umoci)
command -v buildah >/dev/null || need+=(buildah)
command -v zstd >/dev/null || need+=(zstd)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
# test images run a static busybox (the dynamic one would need a libc in the image)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
python3 -c "import ensurepip, venv" 2>/dev/null || need+=(python3-venv)

if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "missing (install as root on Debian: apt-get install ${need[*]})" >&2
fi
