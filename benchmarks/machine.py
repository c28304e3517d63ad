"""The CPU a benchmark ran on, for every results file: its model name and ISA level.

    python benchmarks/machine.py      # prints this machine's record

The ISA level is the highest of AMX, AVX512-BF16, AVX-512, AVX2 that /proc/cpuinfo's flags show
(Linux; elsewhere "unknown"): it decides what ``--precision auto`` can run fast on a CPU (bf16 is
native from AVX512-BF16 on) and so which figures a reader can expect on their own CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

# (level, the flags that show it), highest first
LEVELS = (
    ("AMX", ("amx_bf16", "amx_tile")),
    ("AVX512-BF16", ("avx512_bf16",)),
    ("AVX-512", ("avx512f",)),
    ("AVX2", ("avx2",)),
)


def isa_level(flags: set[str]) -> str:
    """The highest of ``LEVELS`` that ``flags`` show, "below AVX2" if none."""
    for level, shown_by in LEVELS:
        if any(flag in flags for flag in shown_by):
            return level
    return "below AVX2"


def cpu_record(cpuinfo: str | None = None) -> dict[str, object]:
    """``{"model", "isa", "flags", "cores"}`` of this machine's CPU (``cpuinfo``: the text of
    /proc/cpuinfo, read when not given). ``flags``: those of ``LEVELS`` it has."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    known = sorted({f for _, shown_by in LEVELS for f in shown_by} & flags)
    return {
        "model": fields.get("model name") or platform.processor() or platform.machine(),
        "isa": isa_level(flags) if "flags" in fields else "unknown",
        "flags": known,
        "cores": os.cpu_count(),
    }


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    print(json.dumps(cpu_record(), indent=2))


if __name__ == "__main__":
    main()
