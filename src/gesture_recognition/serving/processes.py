"""A tritonserver's processes as Linux's ``/proc`` shows them: its Python-backend stubs and
their resident memory (the stub watchdog and the soak read them)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

STUB_BINARY = "triton_python_backend_stub"


def children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def alive(pid: int) -> bool:
    """False for a process that is gone or a zombie (dead, not yet reaped by its parent)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the parenthesised command name, which may itself contain spaces.
    return stat.rpartition(")")[2].split()[0] not in ("Z", "X")


def argv(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def parent(pid: int) -> int | None:
    try:
        # The command name (field 2) may hold spaces and parentheses: split after its end.
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def is_stub(args: list[bytes]) -> bool:
    return len(args) > 1 and args[0].endswith(STUB_BINARY.encode())


def stub_processes(server_pid: int) -> dict[int, str]:
    """Live ``triton_python_backend_stub`` children of a tritonserver: pid -> model name.

    The stub's first argument is ``<repository>/<model>/<version>/model.py``.
    """
    stubs = {}
    for pid in children(server_pid):
        args = argv(pid)
        if is_stub(args) and alive(pid):
            stubs[pid] = Path(args[1].decode(errors="replace")).parent.parent.name
    return stubs


def process_tree_rss(pid: int) -> dict[int, int]:
    """Resident memory in bytes of a process and its children (the server and its stubs)."""
    rss = {}
    for p in [pid, *children(pid)]:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pages = int(Path(f"/proc/{p}/statm").read_text().split()[1])
            rss[p] = pages * os.sysconf("SC_PAGE_SIZE")
    return rss
