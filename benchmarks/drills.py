"""Reliability drills for issue 7, in one command: hostile files, killed batches, full disks,
awkward trees, out-of-memory, a 16k texture, training runs killed mid-save or fed NaN losses.
Prints the figures and writes them as JSON.

    python benchmarks/drills.py            # full size: 1,200-file corpus, 50 kills, 16384^2,
                                           # 50 kills of a training run mid-save
    python benchmarks/drills.py --quick    # CI size (a few minutes on 2 cores)
    python benchmarks/drills.py --only kill,disk --json figures.json

Exit code 0 when every drill met its expectation, 1 otherwise. Run from the repository root (or
anywhere: the root is put on ``sys.path``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# First, always: this folder (on sys.path when run as a script) holds a training.py that would
# hide the ``training`` package.
sys.path.insert(0, str(ROOT))

from benchmarks.faults import (  # noqa: E402
    drill_big,
    drill_corpus,
    drill_disk,
    drill_kill,
    drill_models,
    drill_oom,
    drill_training,
    drill_tree,
)
from benchmarks.faults.models import tiny_compact  # noqa: E402


@dataclass(frozen=True)
class Sizes:
    corpus: int
    kills: int
    kill_files: int
    disk_files: int
    oom_injections: int
    oom_images: int
    big_side: int
    training_kills: int
    training_truncate_every: int  # truncate the newest checkpoint after every n-th kill
    training_nan_steps: int
    training_max_bad: int  # K: non-finite steps in a row that stop a run
    big_tile: int = 512
    big_limit_gib: float = 16


QUICK = Sizes(
    corpus=150,
    kills=5,
    kill_files=24,
    disk_files=12,
    oom_injections=12,
    oom_images=4,
    big_side=2048,
    training_kills=4,
    training_truncate_every=2,
    training_nan_steps=12,
    training_max_bad=3,
)
FULL = Sizes(
    corpus=1200,
    kills=50,
    kill_files=96,
    disk_files=24,
    oom_injections=40,
    oom_images=20,
    big_side=16384,
    training_kills=50,
    training_truncate_every=5,
    training_nan_steps=60,
    training_max_bad=10,  # the default run.max_bad_steps
)


def training_drills(work: Path, sizes: Sizes) -> dict[str, Any]:
    """Items 9 and 10: SIGKILLs during checkpoint saves, truncated checkpoints, NaN/Inf losses."""
    return drill_training.run(
        work,
        kills=sizes.training_kills,
        nan_steps=sizes.training_nan_steps,
        max_bad=sizes.training_max_bad,
        truncate_every=sizes.training_truncate_every,
    )


def _x(work: Path, scale: int = 2) -> Path:
    return tiny_compact(work / f"x{scale}.safetensors", scale)


def _big(work: Path, sizes: Sizes, full: bool) -> dict[str, Any]:
    tile = ("--tile", str(sizes.big_tile))
    return {
        "fidelity": drill_big.fidelity(work, _x(work)),
        "big": drill_big.big_texture(work, _x(work, 1), sizes.big_side, tile, sizes.big_limit_gib),
    }


Drill = Callable[[Path, Sizes, bool], dict[str, Any]]
DRILLS: dict[str, Drill] = {
    "models": lambda work, sizes, full: drill_models.run(work, cli_for_all=full),
    "corpus": lambda work, sizes, full: drill_corpus.run(work, _x(work), sizes.corpus),
    "big": _big,
    "kill": lambda work, sizes, full: drill_kill.run(work, _x(work), sizes.kills, sizes.kill_files),
    "disk": lambda work, sizes, full: drill_disk.run(work, _x(work), sizes.disk_files),
    "tree": lambda work, sizes, full: drill_tree.run(work, _x(work)),
    "oom": lambda work, sizes, full: drill_oom.run(
        _x(work), sizes.oom_injections, sizes.oom_images
    ),
    "training": lambda work, sizes, full: training_drills(work, sizes),
}


def _models_ok(f: dict[str, Any]) -> bool:
    n = f["model_files"]
    return (
        f["refused"] == f["one_line_reasons"] == f["reasons_matching_fault"] == n
        and f["canary_created"] == 0
        and f["cli_exit_3_model_refused"] == f["cli_runs"]
        and f["unsafe_load_sites"] == 0
        and f["max_rss_growth_mb_while_refusing"] < 100
    )


def _corpus_ok(f: dict[str, Any]) -> bool:
    return (
        not f["problems"]
        and f["batch_aborts"] == 0
        and f["exit_code"] == 1
        and f["bad_once"] == f["bad"]
        and f["valid_done"] == f["valid"]
        and f["outputs_for_bad"] == f["inputs_modified"] == f["temp_files_left"] == 0
        and f["duplicate_failure_reports"] == 0
    )


def _big_ok(f: dict[str, Any]) -> bool:
    fid, big = f["fidelity"], f["big"]
    kept = [fid[k] for k in ("16bit_kept", "16bit_input_exact", "alpha_kept")]
    kept += [fid["tga_bottom_left_same_pixels_as_png"], fid["tga_orientation_and_rle_kept"]]
    exact = fid["16bit_max_diff"] == 0 and fid["palette_max_diff_vs_rgb"] <= 1
    return fid["exit_code"] == 0 and all(kept) and exact and big["exit_code"] == 0


def _kill_ok(f: dict[str, Any]) -> bool:
    return (
        f["partial_outputs_at_final_paths"] == f["inputs_modified_total"] == 0
        and f["kills_survived"] == f["kills_landed"]
        and f["final_exit_code"] == 0
        and f["outputs_byte_identical"] == f["outputs_expected"]
        and f["temps_left_after_rerun"] == f["outputs_extra"] == 0
    )


def _disk_ok(f: dict[str, Any]) -> bool:
    return (
        f["exit_code"] == 3
        and f["says_disk_full"]
        and not f["aborted"]
        and f["earlier_outputs_intact"] == f["outputs_written_before_full"]
        and f["rerun_exit_code"] == 0
        and f["temps_left_after_rerun"] == f["inputs_modified"] == 0
        and f["outputs_byte_identical_after_rerun"] == f["outputs_expected"]
    )


def _oom_ok(f: dict[str, Any]) -> bool:
    return (
        f["injections"] > 0
        and f["files_failed"] == 0
        and f["max_lsb_diff_vs_clean"] <= 1
        and f["max_lsb_diff_vs_clean_half_tile"] <= 1
        and f["user_tile_overridden"] == 0
        and f["user_tile_clear_errors"] == f["user_tile_failures"]
        and f["next_file_back_at_normal_tile"]
    )


def _training_ok(f: dict[str, Any]) -> bool:
    k, n = f["kill"], f["nan"]
    kills = (
        k["kills_landed_in_save"] == k["kills"]
        and k["kills_survived"] == k["previous_checkpoint_loads"] == k["kills_landed_in_save"]
        and k["kills_not_survived"] == k["unloadable_latest_checkpoints"] == 0
        and k["fallback_needed_after_kill"] == k["runs_failed"] == 0
        and k["fallbacks_with_warning"] == k["truncations"] > 0
        and k["final_exit_code"] == 0
        and k["final_step"] == k["max_steps"]
        and k["resumed_vs_uninterrupted_max_abs_weight_diff"] == 0
        and k["resumed_vs_uninterrupted_full_state_identical"]
        and k["checkpoints_after_kills_max_abs_diff_vs_reference"] == 0
        and k["unloadable_checkpoints_after_final_run"] == k["temps_left_after_final_run"] == 0
    )
    injected = n["nan_steps_injected"]
    scattered = (
        injected > 0
        and n["nan_steps_skipped"] == injected
        and n["nan_steps_counted_in_metrics"] == n["nan_steps_counted_in_checkpoint"] == injected
        and n["steps_as_expected"]
        and n["all_weights_finite_every_step"]
        and n["scattered_run_exit_code"] == 0
        and not n["scattered_run_traceback"]
    )
    healthy = n["streak_first_step"] - 1
    streak = (
        n["streak_exit_code"] == 3
        and n["streak_says_why"]
        and not n["streak_traceback"]
        and n["streak_stopped_at_step"] == healthy + n["max_bad_steps"]
        and n["streak_last_checkpoint_is_last_healthy_step"]
        and n["streak_last_checkpoint_loads_without_fallback"]
        and n["streak_last_checkpoint_max_abs_diff_vs_reference"] == 0
        and n["streak_temps_left"] == 0
        and n["rerun_exit_code"] == 0
        and n["rerun_resumed_from_step"] == healthy
        and n["rerun_vs_uninterrupted_max_abs_weight_diff"] == 0
    )
    return kills and scattered and streak


CHECKS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "models": _models_ok,
    "corpus": _corpus_ok,
    "big": _big_ok,
    "kill": _kill_ok,
    "disk": _disk_ok,
    "tree": lambda f: f["cases_ok"] + f["cases_skipped"] == f["cases_total"],
    "oom": _oom_ok,
    "training": _training_ok,
}


def passed(name: str, figures: dict[str, Any]) -> bool | None:
    """Whether drill ``name``'s figures meet issue 7's expectations (None: not run)."""
    return CHECKS[name](figures) if name in CHECKS else None


def headline(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The figures issue 7 asks for, gathered from the drills that ran."""
    r = {k: v["figures"] for k, v in results.items()}
    out: dict[str, Any] = {}
    if "corpus" in r:
        c = r["corpus"]
        out |= {
            "corpus files tried": c["files_tried"],
            "batch aborts": c["batch_aborts"],
            "bad files reported exactly once": f"{c['bad_once']} / {c['bad']}",
            "valid files done": f"{c['valid_done']} / {c['valid']}",
            "max decode time per file (s)": c["max_decode_seconds"],
            "max decode RSS per file (MB)": c["max_decode_rss_mb"],
            "max model time per file (s)": c["max_model_seconds_per_file"],
            "corpus batch peak RSS (MB)": c["batch_peak_rss_mb"],
        }
    modified = sum(
        r[k].get(key, 0)
        for k, key in (
            ("corpus", "inputs_modified"),
            ("kill", "inputs_modified_total"),
            ("disk", "inputs_modified"),
        )
        if k in r
    )
    out["inputs modified (all drills)"] = modified
    if "kill" in r:
        k = r["kill"]
        out |= {
            "kills survived": f"{k['kills_survived']} / {k['kills_landed']} landed"
            f" ({k['kills']} tried)",
            "kills mid-batch / temporaries caught mid-write": f"{k['kills_mid_batch']}"
            f" / {k['temps_seen_after_kills']}",
            "partial outputs at final paths": k["partial_outputs_at_final_paths"],
            "byte-identical outputs after reruns": f"{k['outputs_byte_identical']}"
            f" / {k['outputs_expected']}",
        }
    if "models" in r:
        m = r["models"]
        out["hostile model files refused"] = f"{m['refused']} / {m['model_files']}"
        out["canary executions"] = m["canary_created"]
    if "oom" in r:
        o = r["oom"]
        out["OOM injections (max LSB diff vs clean)"] = (
            f"{o['injections']} ({o['max_lsb_diff_vs_clean']})"
        )
    if "disk" in r:
        d = r["disk"]
        out["disk full"] = (
            f"exit {d['exit_code']} via {d['method']}, rerun exit {d['rerun_exit_code']}"
        )
    if "big" in r:
        b = r["big"]["big"]
        out[f"{b['side']}^2 texture"] = (
            f"exit {b['exit_code']}, peak RSS {b['peak_rss_mb']} MB = {b['baseline_rss_mb']} MB"
            f" baseline + {b['rss_above_baseline_per_input_byte']}x the decoded input,"
            f" {b['seconds']} s"
        )
    if "training" in r:
        out |= _training_headline(r["training"])
    return out


def _training_headline(f: dict[str, Any]) -> dict[str, Any]:
    k, n = f["kill"], f["nan"]
    return {
        "training kills during a save: survived / landed": f"{k['kills_survived']}"
        f" / {k['kills_landed_in_save']} ({k['kills_tried']} tried, {k['killed_mid_write']}"
        f" mid-write, {k['killed_after_rename']} after the rename)",
        "unloadable latest checkpoints after kills": k["unloadable_latest_checkpoints"],
        "truncated newest checkpoint: fallbacks with warning": f"{k['fallbacks_with_warning']}"
        f" / {k['truncations']}",
        "resumed vs uninterrupted max abs weight diff": k[
            "resumed_vs_uninterrupted_max_abs_weight_diff"
        ],
        "NaN/Inf loss steps injected / skipped / counted": f"{n['nan_steps_injected']}"
        f" / {n['nan_steps_skipped']} / {n['nan_steps_counted_in_checkpoint']}",
        f"{n['max_bad_steps']} non-finite steps in a row": f"exit {n['streak_exit_code']} at step"
        f" {n['streak_stopped_at_step']}, last good checkpoint step"
        f" {n['streak_last_checkpoint_step']} loads (max abs diff vs reference"
        f" {n['streak_last_checkpoint_max_abs_diff_vs_reference']}), rerun exit"
        f" {n['rerun_exit_code']}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI size")
    parser.add_argument("--only", default="", help=f"comma-separated: {','.join(DRILLS)}")
    parser.add_argument("--work", type=Path, default=None, help="folder for files (default: temp)")
    parser.add_argument("--json", type=Path, default=None, help="write all figures here")
    parser.add_argument("--big-side", type=int, default=None, help="side of the big texture")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.big_side:
        sizes = replace(sizes, big_side=args.big_side)
    names = [n for n in args.only.split(",") if n] or list(DRILLS)
    unknown = set(names) - set(DRILLS)
    if unknown:
        parser.error(f"unknown drills {sorted(unknown)}; known: {', '.join(DRILLS)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="upscale-drills-"))
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        place = work / name
        place.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        print(f"== {name} ...", flush=True)
        figures = DRILLS[name](place, sizes, not args.quick)
        ok = passed(name, figures)
        results[name] = {
            "passed": ok,
            "seconds": round(time.perf_counter() - started, 1),
            "figures": figures,
        }
        print(
            f"   {'PASS' if ok else 'not run' if ok is None else 'FAIL'}"
            f" in {results[name]['seconds']} s",
            flush=True,
        )
    summary = headline(results)
    print("\nfigures:")
    for key, value in summary.items():
        print(f"  {key:<42} {value}")
    report = {
        "size": "quick" if args.quick else "full",
        "sizes": asdict(sizes),
        "headline": summary,
        "drills": results,
    }
    path = args.json or work / "drills.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"\nall figures: {path}")
    return 0 if all(r["passed"] is not False for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
