"""Ctrl-C and SIGTERM, never lost.

A signal handler raises in the main thread wherever it happens to be; when that is inside a
finalizer or a weakref callback (the garbage collector runs them at any moment), Python prints
"Exception ignored" and carries on — porter would then finish the job and exit 0 after the user
asked it to stop. So the handlers also note the interrupt here, and the places where porter
waits or commits ask ``check()``, which raises it again.
"""
from __future__ import annotations

_pending: BaseException | None = None


def note(exc: BaseException) -> BaseException:
    """Remember an interrupt (and return it, to be raised)."""
    global _pending
    _pending = exc
    return exc


def check() -> None:
    """Raise the interrupt that arrived, if one did."""
    if _pending is not None:
        raise _pending
