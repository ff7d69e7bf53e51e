"""The rest of a child's output after a test has read some of its lines.

``Popen.communicate()`` reads the raw pipes, so whatever ``readline()`` or line iteration
already pulled into the Python buffer of ``process.stdout`` is silently dropped: a test that
reads a few lines and then communicates loses a line now and then, when the child wrote a
burst (seen: a stream test missing frame 5 on a loaded host).
"""

from __future__ import annotations

import subprocess
import threading
from typing import IO


def finish(process: subprocess.Popen[str], timeout: float) -> tuple[str, str]:
    """Wait for ``process`` (``TimeoutExpired`` past ``timeout``) and return the rest of its
    stdout and its stderr, read through the same buffered pipe objects the test used."""
    got: dict[str, str] = {}

    def drain(name: str, pipe: IO[str] | None) -> None:
        got[name] = pipe.read() if pipe is not None else ""

    readers = [
        threading.Thread(target=drain, args=(name, pipe), daemon=True)
        for name, pipe in (("out", process.stdout), ("err", process.stderr))
    ]
    for reader in readers:
        reader.start()
    process.wait(timeout=timeout)
    for reader in readers:
        reader.join(timeout=10)
    return got.get("out", ""), got.get("err", "")
