"""The places a command reads from and writes to, opened once per host and closed at the end."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import PorterError, UsageError
from .reference import DAEMON, Reference

if TYPE_CHECKING:
    from .places.protocol import Source
    from .places.registry import Registry
    from .places.registry_dest import RegistryDestination
    from .transport import Options


class Sources:
    """Where images are read from: one Storage for ``--storage DIR``, else one Registry per host.

    Storage images are named by repository path alone (``team/api:1.4``), or as if served by
    ``--as-registry HOST``, so that ``docker load`` tags them the way the registry would."""

    def __init__(self, opts: Options, storage: str | None = None, as_registry: str | None = None):
        self.opts = opts
        self.names_host = as_registry or ""
        self._storage: Any = None
        self._daemon: Any = None
        self._by_host: dict[str, Any] = {}
        if storage:
            from .places.storage import Storage

            self._storage = Storage(storage)
        elif as_registry:
            raise UsageError("--as-registry only applies with --storage")

    def parse(self, text: str, allow_registry: bool = False) -> Reference:
        from .reference import parse

        if self._storage is not None and text in ("", "/"):
            return Reference(self.names_host)  # the whole storage directory

        if text.startswith(DAEMON):
            if self._storage is not None:
                raise PorterError("--storage and a docker-daemon: source do not go together")
            from .places.daemon import DaemonSource

            ref = parse(text[len(DAEMON):]).with_default_tag()
            self._daemon = DaemonSource(text[len(DAEMON):])
            return ref
        ref = parse(text, host=self.names_host) if self._storage else parse(text)
        if ref.is_registry and not allow_registry:
            raise PorterError(f"{ref} names a whole registry; name an image (host/repository[:tag])")
        return ref

    def __call__(self, ref: Reference) -> Source:
        if self._daemon is not None:
            return self._daemon
        if self._storage is not None:
            return self._storage
        if ref.host not in self._by_host:
            from .places.registry import Registry

            self._by_host[ref.host] = Registry(ref, self.opts)
        return self._by_host[ref.host]

    def close(self) -> None:
        for r in self._by_host.values():
            r.close()
        if self._daemon is not None:
            self._daemon.close()


class Destinations:
    """One registry destination per host, sharing the job's journal."""

    def __init__(self, opts: Options, chunk_size: int, journal: Any = None):
        self.opts, self.chunk_size, self.journal = opts, chunk_size, journal
        self._by_host: dict[str, Any] = {}

    def __call__(self, ref: Reference) -> RegistryDestination:
        from .places.registry import Registry
        from .places.registry_dest import RegistryDestination

        if ref.host not in self._by_host:
            self._by_host[ref.host] = RegistryDestination(Registry(ref, self.opts), self.chunk_size, self.journal)
        return self._by_host[ref.host]

    def close(self) -> None:
        for d in self._by_host.values():
            d.close()


def registry_for(target: str, opts: Options) -> tuple[Reference, Registry]:
    from .places.registry import Registry
    from .reference import parse

    ref = parse(target)
    if ref.is_registry:
        raise PorterError(f"{target}: name a repository (host/repository)")
    return ref, Registry(ref, opts)
