"""Image references: ``[host[:port]/]path[:tag][@sha256:hex]``, with Docker's defaults.

The first path component is a host when it contains ``.`` or ``:`` or is ``localhost``;
otherwise the image is on Docker Hub (one-component paths get ``library/``). A bare host
(``127.0.0.1:5000``) names a whole registry.
"""
from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, replace

from .errors import ReferenceError_

DOCKER_HUB = "docker.io"
DAEMON = "docker-daemon:"  # names an image in the local docker engine: docker-daemon:NAME[:TAG]
DOCKER_HUB_API = "registry-1.docker.io"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_HOST = re.compile(
    r"(?:(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?))*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]{1,5})?\Z"
)
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}\Z")


@dataclass(frozen=True)
class Reference:
    """A parsed reference. ``repository`` is empty for a bare registry; ``tag`` is None when not given."""

    host: str
    repository: str = ""
    tag: str | None = None
    digest: str | None = None

    @property
    def is_registry(self) -> bool:
        return not self.repository

    @property
    def api_host(self) -> str:
        """The host:port the Distribution API is served on (Docker Hub's differs from its name)."""
        return DOCKER_HUB_API if self.host in (DOCKER_HUB, "index.docker.io") else self.host

    @property
    def is_loopback(self) -> bool:
        return is_loopback_host(self.host)

    @property
    def manifest_ref(self) -> str:
        """What to put after ``/manifests/``: the digest if pinned, else the tag (default latest)."""
        return self.digest or self.tag or "latest"

    def with_default_tag(self) -> "Reference":
        return self if (self.tag or self.digest) else replace(self, tag="latest")

    @property
    def name(self) -> str:
        """``host/repository`` in Docker's familiar form (``alpine`` for Docker Hub's library/alpine)."""
        if self.host == DOCKER_HUB:
            return self.repository.removeprefix("library/")
        return f"{self.host}/{self.repository}" if self.host else self.repository

    def tagged_name(self) -> str | None:
        """``name:tag``, as ``docker load`` wants in RepoTags; None for a digest-only reference."""
        return f"{self.name}:{self.tag}" if self.tag else None

    def __str__(self) -> str:
        if self.is_registry:
            return self.host
        s = self.name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


def check_repository(name: object, what: str = "repository name") -> str:
    """``name`` if it is a valid repository path (what the command line accepts), else a
    ReferenceError_ saying why. Names from catalogs, tags lists, storage directories and archives
    pass through here before they reach a URL, a file name or a RepoTags entry."""
    if not isinstance(name, str) or not name:
        raise ReferenceError_(f"invalid {what} {printable(name)}: empty or not a string")
    if len(name) > 255:
        raise ReferenceError_(f"invalid {what} {printable(name)}: longer than 255 characters")
    for comp in name.split("/"):
        if not _COMPONENT.match(comp):
            raise ReferenceError_(f"invalid {what} {printable(name)}: bad path component {printable(comp)}")
    return name


def check_tag(tag: object, what: str = "tag") -> str:
    """``tag`` if it matches ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``, else a ReferenceError_."""
    if not isinstance(tag, str) or not _TAG.match(tag):
        raise ReferenceError_(f"invalid {what} {printable(tag)}: a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}}")
    return tag


def printable(value: object, limit: int = 80) -> str:
    """``repr`` of an untrusted value, shortened: safe to put in a one-line message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + "…" + text[-4:]


@functools.lru_cache(maxsize=256)
def is_loopback_host(host: str) -> bool:
    """True for localhost / 127.0.0.0/8 / ::1, with or without a port."""
    h = host
    if h.startswith("["):
        h = h[1 : h.index("]")]
    elif h.count(":") == 1:
        h = h.split(":")[0]
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def _looks_like_host(component: str) -> bool:
    """Docker's rule for the first of several components."""
    return "." in component or ":" in component or component == "localhost" or component.startswith("[")


def _is_bare_host(component: str) -> bool:
    """A lone component names a registry when it is a host[:port]; ``alpine:3.19`` is an image."""
    name, sep, port = component.rpartition(":") if not component.endswith("]") else (component, "", "")
    if sep and not port.isdigit():
        return False
    name = name if sep else component
    return "." in name or name == "localhost" or name.startswith("[")


def parse(text: str, host: str | None = None) -> Reference:
    """Parse an image or registry reference; raises ReferenceError_ with the reason.

    With ``host`` given (a storage directory's images, or names under a chosen registry), the text
    is a repository path taken literally: no host detection, no ``library/`` prefix."""
    original = text
    if not text or text != text.strip():
        raise ReferenceError_(f"invalid reference {original!r}: empty or surrounded by spaces")
    text = text.removeprefix("docker://")
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST.match(digest):
            raise ReferenceError_(f"invalid reference {original!r}: digest must be sha256:<64 lowercase hex>")
    parts = text.split("/")
    if host is not None:
        path = parts
    elif (_looks_like_host(parts[0]) and len(parts) > 1) or (len(parts) == 1 and digest is None and _is_bare_host(parts[0])):
        host, path = parts[0], parts[1:]
        if not _HOST.match(host):
            raise ReferenceError_(f"invalid reference {original!r}: bad registry host {host!r}")
        if host == "index.docker.io":
            host = DOCKER_HUB
    else:
        host, path = DOCKER_HUB, parts
    if not path:
        if digest:
            raise ReferenceError_(f"invalid reference {original!r}: a digest needs a repository")
        return Reference(host=host)
    tag = None
    last = path[-1]
    if ":" in last:
        last, tag = last.rsplit(":", 1)
        if not _TAG.match(tag):
            raise ReferenceError_(f"invalid reference {original!r}: bad tag {tag!r}")
        path = path[:-1] + [last]
    for comp in path:
        if not _COMPONENT.match(comp):
            why = "uppercase is not allowed" if comp.lower() != comp else "bad repository component"
            raise ReferenceError_(f"invalid reference {original!r}: {why} {comp!r}")
    if host == DOCKER_HUB and len(path) == 1:
        path = ["library"] + path
    repository = "/".join(path)
    if len(repository) > 255:
        raise ReferenceError_(f"invalid reference {original!r}: repository name longer than 255 characters")
    return Reference(host=host, repository=repository, tag=tag, digest=digest)
