"""Run the ``upscale`` command on a simulated disk with little free space.

    UPSCALE_DRILL_FREE_BYTES=200000 python -m benchmarks.faults.enospc IN -o OUT ...

Every file the tool writes (outputs, temporaries, manifest, report) draws from one budget of free
bytes; a write past it fails with ENOSPC, as on a full disk. For machines where a small tmpfs cannot
be mounted (not root, no CAP_SYS_ADMIN); where it can, the drill uses a real tmpfs instead.
"""

from __future__ import annotations

import builtins
import errno
import os
from typing import Any

FREE_BYTES_VARIABLE = "UPSCALE_DRILL_FREE_BYTES"


class _Disk:
    def __init__(self, free: int) -> None:
        self.free = free

    def take(self, size: int) -> None:
        if size > self.free:
            self.free = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.free -= size


class _LimitedFile:
    """A file object whose writes draw from ``_Disk``; everything else is the real file's."""

    def __init__(self, handle: Any, disk: _Disk) -> None:
        self._handle, self._disk = handle, disk

    def write(self, data: Any) -> int:
        self._disk.take(len(data))
        return int(self._handle.write(data))

    def __enter__(self) -> _LimitedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def install(free: int) -> None:
    """Route the writes of ``upscaler.atomic`` and ``upscaler.runner`` through a small disk."""
    import upscaler.atomic
    import upscaler.runner

    disk = _Disk(free)
    real_open = builtins.open

    def limited_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        handle = real_open(file, mode, *args, **kwargs)
        return _LimitedFile(handle, disk) if set(mode) & set("wax+") else handle

    # A module global named ``open`` shadows the builtin for that module only.
    upscaler.atomic.open = limited_open  # type: ignore[attr-defined]
    upscaler.runner.open = limited_open  # type: ignore[attr-defined]


def main() -> None:
    install(int(os.environ[FREE_BYTES_VARIABLE]))
    from upscaler.cli import main as upscale

    upscale()


if __name__ == "__main__":
    main()
