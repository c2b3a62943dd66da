"""porter's exceptions, one tree so the CLI can turn any of them into a one-line message.

    PorterError                    anything porter reports to the user (exit 1)
    ├── ReferenceError_            a malformed image reference (usage, exit 2)
    ├── UsageError                 a malformed argument (exit 2, with the usage line)
    ├── RegistryError              the registry answered with an error status
    │   ├── AuthError              401/403 after trying the credentials we have
    │   └── NotFoundError          unknown repository, tag, manifest or blob
    ├── TransportError             could not reach the registry (after retries)
    ├── DigestMismatch             bytes did not hash to the digest they were asked for
    ├── UnsupportedError           something porter deliberately does not handle (schema 1, ...)
    ├── StorageError               a raw storage directory is broken or is not registry storage
    └── ArchiveError               an archive is unreadable, corrupt or hostile; output problems
"""
from __future__ import annotations


class PorterError(Exception):
    """Base of every error porter reports as one line; ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class ReferenceError_(PorterError):
    """A malformed image reference. Named with a trailing underscore to not shadow the builtin."""

    exit_code = 2


class UsageError(PorterError):
    """A malformed command-line argument (exit 2, with the command's usage line)."""

    exit_code = 2


class RegistryError(PorterError):
    """An HTTP error answer from a registry, with its parsed error codes.

    ``temporary`` marks answers worth retrying (5xx, 429)."""

    def __init__(self, message: str, status: int = 0, codes: tuple[str, ...] = ()):
        super().__init__(message)
        self.status = status
        self.codes = codes

    @property
    def temporary(self) -> bool:
        return self.status == 429 or self.status >= 500


class AuthError(RegistryError):
    pass


class NotFoundError(RegistryError):
    pass


class TransportError(PorterError):
    pass


class Cancelled(PorterError):
    """Another transfer failed or the user interrupted; this one stops at its next write."""


class DigestMismatch(PorterError):
    pass


class UnsupportedError(PorterError):
    pass


class StorageError(PorterError):
    pass


class ArchiveError(PorterError):
    pass
