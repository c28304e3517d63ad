"""What the ``upscale`` command prints: one line per message, progress, and never an exception.

Every line goes through ``shown``: control characters (a newline or an escape sequence in a file
name), line separators, bidi overrides and undecodable bytes are escaped, so one message is one
line on any terminal or log. Writing never raises: a closed stream (``2>&-``) or a broken pipe
switches that stream off and the batch goes on. On a terminal the progress line is redrawn in
place; without one (CI, ``| tee``, a log file) a progress line is printed every few seconds.
"""

from __future__ import annotations

import sys
import time
import unicodedata
from collections.abc import Mapping
from typing import TextIO

PROGRESS_EVERY_S = 5.0  # without a terminal: seconds between progress lines
REDRAW_EVERY_S = 0.1  # on a terminal


def shown(text: object) -> str:
    """``text`` as one printable line: C0/C1 controls, line and paragraph separators, format
    characters (bidi overrides) and lone surrogates (undecodable bytes in file names) escaped."""
    out = []
    for ch in str(text):
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            code = ord(ch)
            if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
                out.append(f"\\x{code - 0xDC00:02x}")
            else:
                out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, for reasons that come from outside our own errors."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:300] if first else type(exc).__name__


class Console:
    """Writes lines to stdout or stderr (looked up when written, so test runners can capture
    them) and never raises."""

    def __init__(self) -> None:
        self.dead: set[str] = set()  # streams that failed once: not tried again
        self.status_shown = False

    @staticmethod
    def _stream(err: bool) -> TextIO | None:
        return sys.stderr if err else sys.stdout

    def isatty(self, err: bool = True) -> bool:
        stream = self._stream(err)
        try:
            return stream is not None and stream.isatty()
        except (OSError, ValueError, AttributeError):
            return False

    def _write(self, text: str, err: bool) -> None:
        name = "err" if err else "out"
        stream = self._stream(err)
        if stream is None or name in self.dead:
            return
        try:
            try:
                stream.write(text)
            except UnicodeEncodeError:  # a terminal that cannot show some characters
                encoding = getattr(stream, "encoding", None) or "ascii"
                stream.write(text.encode(encoding, "backslashreplace").decode(encoding))
            stream.flush()
        except (OSError, ValueError, AttributeError):  # closed, broken pipe, detached
            self.dead.add(name)

    def line(self, text: object, *, err: bool = True) -> None:
        """Print ``text`` as one line (escaped), clearing a progress line first."""
        if err:
            self.clear_status()
        self._write(shown(text) + "\n", err)

    def status(self, text: str) -> None:
        """Redraw the terminal's progress line (stderr)."""
        self._write("\r\033[K" + shown(text), True)
        self.status_shown = True

    def clear_status(self) -> None:
        if self.status_shown:
            self.status_shown = False
            self._write("\r\033[K", True)


class Progress:
    """Files done out of ``total``: redrawn in place on a terminal, a line every
    ``PROGRESS_EVERY_S`` seconds otherwise; silent with ``quiet``.

    The time left weighs each file by its work (``plan``: input pixels x scale²), not by its
    count: a batch of a few 1024² textures among many small ones is mostly the large ones."""

    def __init__(self, console: Console, total: int, quiet: bool = False) -> None:
        self.console, self.total, self.quiet = console, total, quiet
        self.tty = console.isatty()
        self.started = self.last = time.monotonic()
        self.count = self.failed = 0
        self.work: dict[str, int] | None = None  # by target: the files still to upscale
        self.work_done = self.work_left = 0
        self.work_started = self.started

    def plan(self, work: Mapping[str, int]) -> None:
        """The work of each file still to upscale, by target; the clock for the time left
        starts here (reading headers and skipping finished files are not work)."""
        self.work = dict(work)
        self.work_done, self.work_left = 0, sum(self.work.values())
        self.work_started = time.monotonic()

    def update(self, failed: bool = False, target: str = "") -> None:
        self.count += 1
        self.failed += failed
        if self.work is not None:
            work = self.work.pop(target, 0)
            self.work_done, self.work_left = self.work_done + work, self.work_left - work
        now = time.monotonic()
        if self.quiet or not self.total:
            return
        every = REDRAW_EVERY_S if self.tty else PROGRESS_EVERY_S
        if now - self.last < every and self.count < self.total:
            return
        self.last = now
        text = self.describe(now)
        if self.tty:
            self.console.status(text)
        else:
            self.console.line(text)

    def describe(self, now: float) -> str:
        elapsed = now - self.started
        text = f"upscaling: {self.count}/{self.total} files"
        if self.failed:
            text += f", {self.failed} failed"
        text += f", {elapsed:.0f} s"
        left = self.seconds_left(now)
        if left is not None and self.count < self.total:
            text += f", about {left:.0f} s left"
        return text

    def seconds_left(self, now: float) -> float | None:
        """The work left at the rate the work done so far took; by files before ``plan``."""
        if self.work is None:
            done, left, since = self.count, self.total - self.count, self.started
        else:
            done, left, since = self.work_done, self.work_left, self.work_started
        return (now - since) / done * left if done > 0 and left > 0 else None

    def refresh(self) -> None:
        """Redraw after another line was printed over the terminal's progress line."""
        if self.tty and not self.quiet and self.total:
            self.console.status(self.describe(time.monotonic()))

    def close(self) -> None:
        self.console.clear_status()
