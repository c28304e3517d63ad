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
    ``PROGRESS_EVERY_S`` seconds otherwise; silent with ``quiet``."""

    def __init__(self, console: Console, total: int, quiet: bool = False) -> None:
        self.console, self.total, self.quiet = console, total, quiet
        self.tty = console.isatty()
        self.started = self.last = time.monotonic()
        self.count = self.failed = 0

    def update(self, failed: bool = False) -> None:
        self.count += 1
        self.failed += failed
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
        if 0 < self.count < self.total:
            text += f", about {elapsed / self.count * (self.total - self.count):.0f} s left"
        return text

    def refresh(self) -> None:
        """Redraw after another line was printed over the terminal's progress line."""
        if self.tty and not self.quiet and self.total:
            self.console.status(self.describe(time.monotonic()))

    def close(self) -> None:
        self.console.clear_status()
