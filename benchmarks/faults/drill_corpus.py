"""Drill 3: a batch over the malformed-image corpus, through the real ``upscale`` command.

Expected: no batch abort, exit code 1, every bad file reported exactly once with its reason, every
valid file done, no output for a bad file, inputs untouched, no temporaries left, and each file
bounded in time and memory.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from pathlib import Path
from typing import Any

from upscaler.formats.image import ImageReadError, read_image

from .corpus import Entry, build_corpus
from .procs import file_hashes, peak_rss_mb, reset_peak_rss, rss_mb, run_upscale, temp_files


def evaluate(
    entries: list[Entry], corpus: Path, out: Path, report: dict[str, Any]
) -> dict[str, Any]:
    """Check every corpus entry against the run's per-file report."""
    results: dict[str, list[dict[str, Any]]] = {}
    for record in report["files"]:
        results.setdefault(str(Path(record["source"]).resolve()), []).append(record)
    wrong: list[str] = []
    counts = dict.fromkeys(("bad", "bad_once", "valid", "valid_done", "either", "folders"), 0)
    outputs_for_bad = 0
    for entry in entries:
        source = (corpus / entry.path).resolve()
        records = results.get(str(source), [])
        statuses = [r["status"] for r in records]
        target = out / entry.path
        if entry.expect == "failed":
            counts["bad"] += 1
            reason = records[0]["reason"] if statuses == ["failed"] else ""
            if statuses == ["failed"] and reason and "\n" not in reason:
                counts["bad_once"] += 1
                if not re.search(entry.reason, reason):
                    wrong.append(f"{entry.path}: reason {reason!r} does not say {entry.reason!r}")
            else:
                wrong.append(f"{entry.path}: expected one failure, got {statuses}")
            if target.is_file():
                outputs_for_bad += 1
                wrong.append(f"{entry.path}: output written for a bad file")
        elif entry.expect == "done":
            counts["valid"] += 1
            if statuses == ["done"] and target.is_file() and _decodes(target, records[0]):
                counts["valid_done"] += 1
            else:
                wrong.append(f"{entry.path}: expected done with a valid output, got {statuses}")
        elif entry.expect == "either":
            counts["either"] += 1
            ok = statuses == ["failed"] and not target.exists()
            ok = ok or (statuses == ["done"] and _decodes(target, records[0]))
            if not ok:
                wrong.append(f"{entry.path}: expected done or one failure, got {statuses}")
        else:  # a folder named like an image: walked, never a failure, never a file output
            counts["folders"] += 1
            if statuses or target.is_file():
                wrong.append(f"{entry.path}: a folder was treated as a file ({statuses})")
    seconds = [r["seconds"] for r in report["files"] if r["status"] == "done"]
    return {
        **counts,
        "outputs_for_bad": outputs_for_bad,
        "max_model_seconds_per_file": round(max(seconds, default=0.0), 3),
        "problems": wrong,
    }


def _decodes(path: Path, record: dict[str, Any]) -> bool:
    try:
        return read_image(path).size == tuple(record["output_size"])
    except ImageReadError:
        return False


def measure_decoding(corpus: Path, entries: list[Entry]) -> dict[str, float | None]:
    """Time and memory of opening each file alone (the work a hostile file can cause)."""
    baseline_ok = reset_peak_rss()
    worst_s, worst_mb = 0.0, 0.0
    for entry in entries:
        before = rss_mb()
        reset_peak_rss()
        start = time.perf_counter()
        with contextlib.suppress(ImageReadError):
            read_image(corpus / entry.path)
        worst_s = max(worst_s, time.perf_counter() - start)
        worst_mb = max(worst_mb, peak_rss_mb() - before)
    return {
        "max_decode_seconds": round(worst_s, 4),
        "max_decode_rss_mb": round(worst_mb, 1) if baseline_ok else None,
    }


def run(work: Path, model: Path, count: int, seed: int = 0) -> dict[str, Any]:
    corpus, out, report_path = work / "corpus", work / "out", work / "report.json"
    entries = build_corpus(corpus, count, seed)
    before = file_hashes(corpus)
    cli = run_upscale(corpus, "-o", out, "--model", model, "-q", "--report", report_path)
    modified = sum(1 for k, v in file_hashes(corpus).items() if before.get(k) != v)
    report = json.loads(report_path.read_text()) if report_path.is_file() else {"files": []}
    figures = evaluate(entries, corpus, out, report)
    reported = [r["source"] for r in report["files"] if r["status"] == "failed"]
    return {
        "files_tried": len(entries),
        "kinds": _kinds(entries),
        "batch_aborts": int(cli.aborted or not report_path.is_file()),
        "exit_code": cli.returncode,
        "duplicate_failure_reports": len(reported) - len(set(reported)),
        **figures,
        "inputs_modified": modified,
        "temp_files_left": len(temp_files(out)),
        "batch_seconds": round(cli.seconds, 1),
        "batch_peak_rss_mb": round(cli.peak_rss_mb, 1),
        **measure_decoding(corpus, entries),
    }


def _kinds(entries: list[Entry]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for e in entries:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    return kinds
