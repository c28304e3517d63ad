"""Running the real ``upscale`` command as a subprocess, and measuring what it leaves behind."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from upscaler.atomic import is_temp_file

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class CliRun:
    returncode: int  # negative: killed by that signal
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float  # of the command's own process

    @property
    def aborted(self) -> bool:
        """Crashed rather than finished with one of its exit codes (0, 1, 2, 3)."""
        return self.returncode not in (0, 1, 2, 3) or "Traceback (most recent call last)" in (
            self.stderr
        )


def environment() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    # A fixed thread count keeps runs comparable (and bit-identical) on shared machines.
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "2"}


def upscale_command(
    *args: object, prefix: tuple[str, ...] = (), module: str = "upscaler"
) -> list[str]:
    return [*prefix, sys.executable, "-m", module, *(str(a) for a in args)]


def run_upscale(
    *args: object,
    timeout: float = 600,
    kill_after: float | None = None,
    prefix: tuple[str, ...] = (),
    module: str = "upscaler",
    env: dict[str, str] | None = None,
) -> CliRun:
    """Run ``upscale ARGS``; with ``kill_after`` seconds, SIGKILL it then (if still running).

    ``prefix`` runs it under another command (e.g. ``setpriv``); ``module`` replaces
    ``upscaler`` (a wrapper that injects a fault, then runs the same CLI). The child is reaped
    with ``wait4`` so its own peak RSS is known (not the largest of all
    children so far, which is what ``RUSAGE_CHILDREN`` gives).
    """
    started = time.perf_counter()
    limit = timeout if kill_after is None else min(timeout, kill_after)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            upscale_command(*args, prefix=prefix, module=module),
            stdout=out,
            stderr=err,
            env={**environment(), **(env or {})},
        )
        killed, peak = False, 0.0
        while True:
            peak = max(peak, _child_peak_mb(proc.pid))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if not killed and time.perf_counter() - started > limit:
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
            time.sleep(0.005)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    seconds = time.perf_counter() - started
    return CliRun(proc.returncode, stdout, stderr, seconds, peak or usage.ru_maxrss / 1024)


def _child_peak_mb(pid: int) -> float:
    """The child's VmHWM, polled while it runs: ``ru_maxrss`` would also count the pages it
    shared with this (possibly large) process between fork and exec."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def invoke_upscale(*args: object) -> CliRun:
    """The same command in this process (click's test runner): for drills that only need its
    exit code and messages, without a second of interpreter start-up each time."""
    from click.testing import CliRunner

    from upscaler.cli import main

    started = time.perf_counter()
    result = CliRunner().invoke(main, [str(a) for a in args])
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "\nTraceback (most recent call last):\n" + repr(result.exception)
    return CliRun(result.exit_code, result.stdout, stderr, time.perf_counter() - started, 0.0)


def file_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every file under ``root`` (links recorded by their target, never followed)."""
    hashes = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                hashes[key] = "link:" + os.readlink(path)
            elif path.is_file():
                hashes[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if is_temp_file(p)] if root.exists() else []


def failure_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if re.match(r"failed: ", line)]


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak RSS since the last ``reset_peak_rss`` (VmHWM), in MiB."""
    peak = _status_mb("VmHWM")
    if peak is None:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return peak


def rss_mb() -> float:
    return _status_mb("VmRSS") or 0.0


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs``); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False
