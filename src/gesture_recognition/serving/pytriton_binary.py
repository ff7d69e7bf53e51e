"""The ``tritonserver`` binary the ``nvidia-pytriton`` wheel carries (Triton 2.51, Python
backend only, which is why the ``cpu`` repository flavour exists): where its pieces are."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path


class ServerError(RuntimeError):
    """The server could not be started or died; the message carries the end of its log."""


@dataclass(frozen=True)
class TritonDistribution:
    """Where the pieces of the wheel's Triton are."""

    server: Path
    libs: Path
    python_backend: Path  # libtriton_python.so + triton_python_backend_utils.py
    stub: Path  # triton_python_backend_stub for this interpreter's version

    @classmethod
    def find(cls) -> TritonDistribution:
        spec = importlib.util.find_spec("pytriton")
        if spec is None or not spec.submodule_search_locations:
            raise ServerError(
                "the Triton binary comes with the nvidia-pytriton wheel, which is not installed "
                "(pip install -e '.[serve]')"
            )
        root = Path(next(iter(spec.submodule_search_locations)))
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        dist = cls(
            server=root / "tritonserver" / "bin" / "tritonserver",
            libs=root.parent / "nvidia_pytriton.libs",
            python_backend=root / "tritonserver" / "backends" / "python",
            stub=root
            / "tritonserver"
            / "python_backend_stubs"
            / version
            / "triton_python_backend_stub",
        )
        for path in (dist.server, dist.libs, dist.python_backend, dist.stub):
            if not path.exists():
                raise ServerError(f"the nvidia-pytriton installation lacks {path}")
        return dist

    def backend_dir(self, build_dir: Path) -> Path:
        """A backend directory whose ``python/`` holds the backend and this Python's stub.

        The wheel keeps the stubs for every Python version apart from the backend; Triton
        looks for the stub beside ``libtriton_python.so``.
        """
        backends = build_dir / "triton_backends"
        python = backends / "python"
        python.mkdir(parents=True, exist_ok=True)
        targets = {
            "libtriton_python.so": self.python_backend / "libtriton_python.so",
            "triton_python_backend_utils.py": (
                self.python_backend / "triton_python_backend_utils.py"
            ),
            "triton_python_backend_stub": self.stub,
        }
        for name, target in targets.items():
            link = python / name
            if link.is_symlink() and Path(os.readlink(link)) == target:
                continue
            # Replaced atomically: another server may be starting from the same folder.
            tmp = python / f".{name}.{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(target)
            os.replace(tmp, link)
        return backends
