"""What ``gesture-serve`` does because of how Triton 2.51 (the ``nvidia-pytriton`` 0.7 binary,
the NGC 24.10 release) behaves. Each part names the behaviour it answers; a Triton that no
longer behaves so makes it, and this file, unnecessary.

1. **A dead stub is never restarted.** A Python-backend stub process that dies leaves its
   model "ready", answering every request with INTERNAL "Stub process ... is not healthy"
   (measured). :class:`StubWatchdog` notices and ``gesture-serve`` restarts the server.
2. **Orphaned stubs live on.** A tritonserver killed (SIGKILL, or the restart above) while a
   request was inside a stub leaves that stub alive for good, holding ~190 MiB and its shared
   memory region (measured: one per SIGKILL under load). :func:`reap_orphaned_stubs` kills
   them before a server starts and after it stops.
3. **Ensembles are not drained on SIGTERM.** The composing models' schedulers stop at once, so
   a request between two steps fails with UNAVAILABLE "Server is stopping" (measured).
   :func:`drain` waits until no step has run for a moment before the server is stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from gesture_recognition.serving import processes

WATCHDOG_INTERVAL_S = 0.5
# A server with a dead stub cannot unload that model and would sit out its whole exit
# timeout; the requests it still holds are failing anyway, so a restart waits only this long.
RESTART_GRACE_S = 3.0
DRAIN_QUIET_S = 1.0


# ------------------------------------------------------------------ 1. dead stubs


class StubWatchdog:
    """The stubs a server had when it got ready; :meth:`dead` names the models whose stub has
    died since."""

    def __init__(self, server_pid: int | None):
        self.stubs = processes.stub_processes(server_pid) if server_pid else {}

    def dead(self) -> list[str]:
        return sorted(m for pid, m in self.stubs.items() if not processes.alive(pid))


# ------------------------------------------------------------------ 2. orphaned stubs


def orphaned_stubs(repository: Path) -> list[int]:
    """Stub processes serving models of ``repository`` whose parent is not a tritonserver."""
    prefix = str(repository.resolve()).encode() + b"/"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        args = processes.argv(pid)
        if not processes.is_stub(args) or not args[1].startswith(prefix):
            continue
        if not processes.alive(pid):
            continue
        parent = processes.parent(pid)
        parent_args = processes.argv(parent) if parent else []
        if not (parent_args and parent_args[0].endswith(b"tritonserver")):
            found.append(pid)
    return sorted(found)


def reap_orphaned_stubs(repository: Path) -> list[int]:
    """SIGKILL the leftovers of :func:`orphaned_stubs`; their pids."""
    killed = []
    for pid in orphaned_stubs(repository):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


# ------------------------------------------------------------------ 3. drain before exit


def activity(metrics_url: str) -> tuple[float, float] | None:
    """(model executions so far, requests waiting) over every model, from Triton's metrics;
    None when they do not answer."""
    try:
        with urllib.request.urlopen(metrics_url, timeout=2) as reply:
            text = reply.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError):
        return None
    totals = {"nv_inference_exec_count": 0.0, "nv_inference_pending_request_count": 0.0}
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name in totals:
            with contextlib.suppress(ValueError, IndexError):
                totals[name] += float(rest.rsplit(" ", 1)[1])
    return totals["nv_inference_exec_count"], totals["nv_inference_pending_request_count"]


def drain(
    metrics_url: str,
    running: Callable[[], bool],
    timeout_s: float,
    quiet_s: float = DRAIN_QUIET_S,
) -> bool:
    """Wait until no request is in flight: nothing pending and no model step executed for
    ``quiet_s``. True when quiet within ``timeout_s``.

    An ensemble request in flight runs some step within ``quiet_s`` (a step takes tens of
    milliseconds), so a quiet server has none left. Under steady load it never gets quiet and
    the wait ends at the timeout.
    """
    deadline = time.monotonic() + timeout_s
    last: tuple[float, float] | None = None
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and running():
        now = activity(metrics_url)
        if now is None:
            return False
        if now != last or now[1] > 0:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            return True
        time.sleep(0.05)
    return False
