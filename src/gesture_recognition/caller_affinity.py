"""Keep the thread that calls a multi-threaded ONNX Runtime run off its workers' cores.

Left to pick its own intra-op thread count, ORT starts one thread per core and pins its
workers to cores 1..N-1, leaving core 0 to the thread that calls ``run`` - which it never
pins. A caller that runs without pause (the in-process pipeline) stays on whatever core the
scheduler gave it. A Triton Python-backend stub's thread sleeps between requests and is
woken by the server, and Linux may wake it on a pinned worker's core: the run then starts
with two of its threads on one core while the other idles. Pinning the caller for the run to
the cores no worker holds gives the layout ORT intended. Measured on the 2-core host (two
servers, old and new code, requests alternating between them and the in-process pipeline,
three runs of 400-800 photos): served p50 -0.36, -0.39 and -0.52 ms, the stubs' ORT runs
0.1-0.25 ms faster; in-process no change (notes/STATUS.md).

Linux only (``/proc/self/task``, ``sched_setaffinity``); elsewhere nothing is pinned.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import TypeVar

T = TypeVar("T")

_TASKS = "/proc/self/task"


def _can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and os.path.isdir(_TASKS)


def _thread_ids() -> set[int]:
    return {int(name) for name in os.listdir(_TASKS)}


def caller_cpus_after(factory: Callable[[], T]) -> tuple[T, frozenset[int]]:
    """Run ``factory`` (which may start pinned worker threads) -> its result and the CPUs of
    this process that none of the threads it started is pinned to.

    Empty when it pinned no thread (an explicit ORT thread count pins nothing), when its
    workers hold every CPU, or when this platform cannot tell.
    """
    if not _can_pin():
        return factory(), frozenset()
    allowed = frozenset(os.sched_getaffinity(0))
    before = _thread_ids()
    result = factory()
    taken: set[int] = set()
    for tid in _thread_ids() - before:
        with contextlib.suppress(OSError):  # the thread may have ended meanwhile
            cpus = os.sched_getaffinity(tid)
            if cpus != allowed:
                taken |= cpus
    if not taken:
        return result, frozenset()
    return result, allowed - taken


@contextlib.contextmanager
def pinned(cpus: frozenset[int]) -> Iterator[None]:
    """Run the block with the calling thread on ``cpus`` (nothing when empty); its affinity
    is restored afterwards, also when the block fails.

    Placement is only a speed hint: where the CPUs can no longer be set (a container's
    cpuset changed since the session started), the block runs where it is.
    """
    if not cpus or not _can_pin():
        yield
        return
    try:
        saved = os.sched_getaffinity(0)
        os.sched_setaffinity(0, cpus)
    except OSError:
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, saved)
