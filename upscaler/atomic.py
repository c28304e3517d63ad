"""The files a run reads and writes beside its images: atomic replacement, regular files only.

Writes go to a temporary file beside the target, are fsynced and renamed into place: a reader (or a
rerun after a crash) sees either the old file or the complete new one, never a half-written file at
the final path. Leftover temporaries carry ``TEMP_MARKER`` in their name so a later run can
recognise and remove them.

Reads of side files (rules, resume state, caches, registries) go through ``open_regular``: only a
regular file is read, opened without blocking and checked on the open descriptor, so a FIFO, a
socket or a device in its place is refused instead of hanging the run or reading without end.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

TEMP_MARKER = ".upscale-tmp-"
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"
_TEMP_RE = re.compile(re.escape(TEMP_MARKER) + r"(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[0-9a-f]+$")
STALE_AFTER_S = 6 * 3600  # a temporary this old from another machine is abandoned
_STARTED = time.time() - 1  # temporaries with our pid from before this are a dead namesake's


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """Raised when a write fails because the disk (or quota) is full."""


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


NAME_MAX = 255  # bytes per file name on every filesystem we write to (ext4, NTFS, APFS, tmpfs)


def temp_path_for(path: Path) -> Path:
    """A fresh temporary name beside ``path``: ``.<name><marker>-<host>-<pid>-<random>``.

    The name is cut (at a character boundary) so the whole fits ``NAME_MAX`` bytes whatever the
    target's length: a 250-byte texture name must not fail for its temporary's sake.
    """
    suffix = f"{TEMP_MARKER}{_HOST}-{os.getpid()}-{secrets.token_hex(4)}"
    room = NAME_MAX - 1 - len(os.fsencode(suffix))
    whole = os.fsencode(path.name)
    cut = min(room, len(whole))
    while 0 < cut < len(whole) and whole[cut] & 0xC0 == 0x80:  # inside a UTF-8 character
        cut -= 1
    return path.with_name(f".{os.fsdecode(whole[:cut])}{suffix}")


def is_temp_file(path: Path) -> bool:
    return TEMP_MARKER in path.name


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # some filesystems (and Windows) cannot open directories; the rename still holds
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: Path, *, fsync: bool = True) -> Iterator[BinaryIO]:
    """Open a temporary file for writing; on success it replaces ``path`` atomically.

    On any exception the temporary file is removed and ``path`` is left untouched. ENOSPC and
    EDQUOT are re-raised as ``DiskFullError``.
    """
    path = Path(path)
    tmp = temp_path_for(path)
    try:
        with open(tmp, "xb") as handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
        if fsync:
            _fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and is_disk_full(exc) and not isinstance(exc, DiskFullError):
            raise DiskFullError(exc.errno, f"disk full while writing {path}") from exc
        raise


def write_bytes_atomic(path: Path, data: bytes, *, fsync: bool = True) -> None:
    with atomic_write(path, fsync=fsync) as handle:
        handle.write(data)


def folder_problem(folder: Path) -> str | None:
    """Why ``mkdir(parents=True)`` cannot make ``folder``: the nearest part of it that exists
    is not a folder (or cannot be looked at). ``None`` when it is a folder or can become one."""
    for part in (folder, *folder.parents):
        try:
            info = os.stat(part)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except (OSError, ValueError) as exc:
            return f"{part} cannot be used ({getattr(exc, 'strerror', None) or exc})"
        return None if stat.S_ISDIR(info.st_mode) else f"{part} is not a folder"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists but is not ours
    return True


def is_abandoned(entry: os.DirEntry[str]) -> bool:
    """True for a temporary whose writer is gone: a dead process here, or a very old file."""
    match = _TEMP_RE.search(entry.name)
    if match is None:
        return False
    if match["host"] == _HOST:
        pid = int(match["pid"])
        if pid == os.getpid():  # ours, unless a killed run had our process id before us
            return _mtime(entry) < _STARTED
        return not _pid_alive(pid)
    # Another machine (shards on a shared drive): we cannot see its processes, so go by age.
    return time.time() - _mtime(entry) > STALE_AFTER_S


def _mtime(entry: os.DirEntry[str]) -> float:
    try:
        return entry.stat(follow_symlinks=False).st_mtime
    except OSError:
        return time.time()  # vanished or unreadable: treat as brand new, leave it alone


def remove_stale_temps(directory: Path) -> int:
    """Delete temporaries left by killed runs in ``directory`` (not recursive). Returns the count.

    Temporaries of live writers (another shard running on this host) are left alone.
    """
    removed = 0
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and is_abandoned(entry):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


# -- regular files only ---------------------------------------------------------------------------

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISLNK, "a symbolic link"),
)


def file_kind(mode: int) -> str:
    """``a FIFO``, ``a socket``... for a ``st_mode`` that is not a regular file's."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


class NotRegularFileError(OSError):
    """The path names something other than a regular file (``kind`` says what); not opened."""

    def __init__(self, path: Path | str, kind: str) -> None:
        super().__init__(errno.EINVAL, f"is {kind}, not a regular file")
        self.filename, self.kind = str(path), kind


class FileTooLargeError(OSError):
    """A side file is larger than its reader accepts; not read."""

    def __init__(self, path: Path | str, limit: int) -> None:
        super().__init__(errno.EFBIG, f"is larger than {limit:,} bytes")
        self.filename = str(path)


_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # POSIX; Windows has no FIFOs to block on
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _open_checked(path: Path | str, flags: int, mode: int, follow_symlinks: bool) -> int:
    """An ``os.open`` descriptor of ``path`` if it is a regular file; ``NotRegularFileError`` if
    it is not (checked before opening, so a FIFO is never opened, and again on the descriptor)."""
    try:
        info = os.stat(path, follow_symlinks=follow_symlinks)
    except FileNotFoundError:
        if not flags & os.O_CREAT:
            raise
    else:
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFileError(path, file_kind(info.st_mode))
    flags |= _NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags | (0 if follow_symlinks else _NOFOLLOW), mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not follow_symlinks:  # swapped for a link since the stat
            raise NotRegularFileError(path, "a symbolic link") from None
        raise
    try:
        kind = os.fstat(fd).st_mode
        if not stat.S_ISREG(kind):
            raise NotRegularFileError(path, file_kind(kind))
        if _NONBLOCK:
            os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_regular(path: Path | str, *, follow_symlinks: bool = True) -> BinaryIO:
    """Open ``path`` for reading if, and only if, it is a regular file (a symbolic link to one
    too, unless ``follow_symlinks`` is false); else ``NotRegularFileError``, or the ``OSError``
    of the open. A FIFO (whose plain open blocks until a writer comes), a socket or a device is
    never read, not even when it replaces a regular file between a check and this call."""
    return os.fdopen(_open_checked(path, os.O_RDONLY, 0, follow_symlinks), "rb")


def read_regular(path: Path | str, limit: int, *, follow_symlinks: bool = True) -> bytes:
    """The bytes of the regular file ``path`` (see ``open_regular``), at most ``limit`` of them:
    a longer file raises ``FileTooLargeError`` without being read to its end."""
    with open_regular(path, follow_symlinks=follow_symlinks) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileTooLargeError(path, limit)
    return data


def append_regular(path: Path | str, data: bytes) -> None:
    """Append ``data`` to ``path`` in one ``O_APPEND`` write, creating the file if it is missing.
    Refused (``NotRegularFileError``) if ``path`` is a symbolic link, a FIFO or anything else but a
    regular file: a side file is never written through a link to somewhere else."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
    fd = _open_checked(path, flags, 0o666, follow_symlinks=False)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def file_sha256(path: Path | str) -> str:
    """The SHA-256 of a regular file (a FIFO or device in its place raises, never blocks)."""
    digest = hashlib.sha256()
    with open_regular(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
