"""System shared memory for request inputs, for callers on the same host as the server.

A photo then travels through ``/dev/shm`` instead of the socket: the client writes it into a
region the server has registered and the request carries only the region's name and size.
Outputs stay on the wire: they are a few hundred bytes, and their size (N hands) is not known
before the answer.

The regions are plain POSIX shared memory made with the standard library: the same objects
``tritonclient.utils.shared_memory`` makes, without its ``pkg_resources`` import (gone from
current setuptools) and its C helper library.

One region per in-flight request; a region grows (re-created and re-registered) when a larger
photo comes. Registration is the client's job (sync or asyncio calls); this module only creates,
writes and destroys the regions locally.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
from dataclasses import dataclass, field
from multiprocessing import shared_memory

import numpy as np
from tritonclient.utils import serialize_byte_tensor

# A 640x480 RGB photo is 0.9 MiB; start above it so typical webcam frames never grow a region.
MIN_REGION_BYTES = 1 << 20
_counter = itertools.count()


def region_size(needed: int) -> int:
    """Room for ``needed`` bytes: the next power of two, at least MIN_REGION_BYTES."""
    size = MIN_REGION_BYTES
    while size < needed:
        size <<= 1
    return size


def encode_input(array: np.ndarray) -> bytes | memoryview:
    """The bytes a region must hold for ``array``: BYTES tensors in Triton's serialized form
    (4-byte little-endian length before each element), others as their raw buffer."""
    if array.dtype == np.object_:
        return bytes(serialize_byte_tensor(array).item())
    return np.ascontiguousarray(array).data.cast("B")


@dataclass
class Region:
    """One system shared memory region; ``registered`` tracks the server side."""

    name: str  # the name the server knows the region by
    key: str  # the POSIX shm key, "/<name>"
    byte_size: int
    memory: shared_memory.SharedMemory = field(repr=False)
    registered: bool = False

    @classmethod
    def create(cls, byte_size: int, prefix: str = "gesture_client") -> Region:
        # pid + counter keep names unique in this process, the random part across hosts' reuse
        # of pids (a stale region of a crashed client must not be picked up).
        name = f"{prefix}_{os.getpid()}_{next(_counter)}_{secrets.token_hex(4)}"
        memory = shared_memory.SharedMemory(name=name, create=True, size=byte_size)
        return cls(name=name, key=f"/{name}", byte_size=byte_size, memory=memory)

    def write(self, data: bytes | memoryview) -> int:
        """Copy ``data`` to the start of the region; returns its size in bytes."""
        size = len(data) if isinstance(data, bytes) else data.nbytes
        if size > self.byte_size:
            raise ValueError(f"{size} bytes do not fit the {self.byte_size}-byte region")
        assert self.memory.buf is not None
        self.memory.buf[:size] = data
        return size

    def destroy(self) -> None:
        self.memory.close()
        # Already gone when someone cleaned /dev/shm.
        with contextlib.suppress(FileNotFoundError):
            self.memory.unlink()


class RegionPool:
    """Free regions for the in-flight requests; callers bound how many are taken at once."""

    def __init__(self, prefix: str = "gesture_client"):
        self.prefix = prefix
        self._free: list[Region] = []
        self._all: list[Region] = []

    def take(self, needed: int) -> tuple[Region, Region | None]:
        """A region with room for ``needed`` bytes, and the too-small one it replaced if any.

        The replaced region must be unregistered on the server before it is destroyed.
        """
        region = self._free.pop() if self._free else None
        if region is not None and region.byte_size >= needed:
            return region, None
        fresh = Region.create(region_size(needed), self.prefix)
        self._all.append(fresh)
        if region is not None:
            self._all.remove(region)
        return fresh, region

    def give(self, region: Region) -> None:
        self._free.append(region)

    def forget_registrations(self) -> None:
        """After the server restarted it knows no regions: register each again on next use."""
        for region in self._all:
            region.registered = False

    def regions(self) -> list[Region]:
        return list(self._all)

    def destroy_all(self) -> None:
        for region in self._all:
            region.destroy()
        self._all.clear()
        self._free.clear()
