"""The one bounded worker pool: every concurrent step of every command runs through here.

Threads with the sync httpx client (one concurrency model). The first failure — or Ctrl-C —
stops what has not started and is raised once the running work has noticed; with
``keep_going`` porter's own errors are collected per item instead.
"""
from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Callable, Iterable, Iterator, TypeVar

from . import interrupts
from .errors import Cancelled, PorterError

T = TypeVar("T")
R = TypeVar("R")


def run_all(fn: Callable[[T], None], items: list[T], jobs: int, cancel: threading.Event | None = None,
            keep_going: bool = False) -> dict[int, PorterError]:
    """Run ``fn`` over ``items`` on at most ``jobs`` threads. The first failure (or Ctrl-C) sets
    ``cancel``, stops what has not started, and is raised once the running ones have noticed —
    unless ``keep_going``: then porter's own errors are collected by item index and returned."""
    cancel = cancel or threading.Event()
    failures: dict[int, PorterError] = {}
    if not items:
        return failures

    def guarded(i: int, item: T) -> None:
        if cancel.is_set():
            raise Cancelled("cancelled")
        try:
            fn(item)
        except PorterError as e:
            if not keep_going or isinstance(e, Cancelled):
                raise
            failures[i] = e

    pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(items))), thread_name_prefix="porter")
    futures = [pool.submit(guarded, i, item) for i, item in enumerate(items)]
    try:
        while True:  # short waits, so an interrupt that Python swallowed is noticed here
            done, running = wait(futures, timeout=0.25, return_when=FIRST_EXCEPTION)
            interrupts.check()
            if not running or any(f.exception() is not None for f in done if not f.cancelled()):
                break
        for f in futures:
            if f.done() and not f.cancelled() and f.exception() is not None \
                    and not isinstance(f.exception(), Cancelled):
                raise f.exception()  # type: ignore[misc]
        for f in futures:  # only cancellations failed: the job was interrupted
            if f.done() and not f.cancelled() and f.exception() is not None:
                raise f.exception()  # type: ignore[misc]
    except BaseException:
        cancel.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return failures


def pmap(fn: Callable[[T], R], items: Iterable[T], jobs: int) -> list[R]:
    """``[fn(x) for x in items]`` on at most ``jobs`` threads, in order; the first error is raised."""
    todo = list(items)
    out: list[R | None] = [None] * len(todo)

    def one(ix: tuple[int, T]) -> None:
        out[ix[0]] = fn(ix[1])

    run_all(one, list(enumerate(todo)), jobs)
    return out  # type: ignore[return-value]


def ahead(fn: Callable[[T], None], items: Iterable[T]) -> Iterator[T]:
    """Each item once ``fn(item)`` has run on it — ``fn`` of the next item running in the
    background meanwhile (one step ahead: at most two items' work is held at once). A mirror
    resolves its next batch of images while the engine copies this one."""
    def start(x: T) -> tuple[threading.Thread, list[BaseException], T]:
        failed: list[BaseException] = []

        def run() -> None:
            try:
                fn(x)
            except BaseException as e:  # handed to the consumer, raised there
                failed.append(e)

        t = threading.Thread(target=run, name="porter-ahead", daemon=True)
        t.start()
        return t, failed, x

    it = iter(items)
    end = object()
    first = next(it, end)
    current = start(first) if first is not end else None  # type: ignore[arg-type]
    while current is not None:
        t, failed, x = current
        while t.is_alive():
            t.join(0.25)
            interrupts.check()
        if failed:
            raise failed[0]
        following = next(it, end)
        current = start(following) if following is not end else None  # type: ignore[arg-type]
        yield x
