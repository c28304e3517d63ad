"""Drill 7: awkward folder trees. Each case must end in a clear startup error (exit 2) or clear
per-file errors (exit 1), and no file may ever be written outside the output root.

The command runs in process (click's runner) except where permissions must apply to a separate
process. Cases: output inside the input tree, output = input, input inside output, name collision
(``a.tga`` + ``a.png`` with ``--format png``), symlink loops and links out of the tree, a link in
the output tree that points elsewhere, an unreadable subfolder and file, a file deleted or replaced
while the run is going on.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from .drill_kill import make_tree
from .procs import CliRun, invoke_upscale, run_upscale

Case = Callable[[Path, Path], dict[str, Any]]


def _files_outside(work: Path, allowed: list[Path]) -> set[str]:
    found = set()
    for folder, _, files in os.walk(work):
        for name in files:
            path = Path(folder) / name
            if not any(path.is_relative_to(a) for a in allowed):
                found.add(str(path))
    return found


def _row(cli: CliRun, expect_code: int, needle: str, **checks: bool) -> dict[str, Any]:
    text = cli.stdout + cli.stderr
    ok = cli.returncode == expect_code and needle in text and not cli.aborted
    ok = ok and all(checks.values())
    lines = [ln for ln in text.splitlines() if needle in ln]
    return {
        "ok": ok,
        "exit_code": cli.returncode,
        "message": lines[0][:200] if lines else text.strip()[-200:],
        **checks,
    }


def output_inside_input(work: Path, model: Path) -> dict[str, Any]:
    tree = work / "in"
    make_tree(tree, 6, 3)
    out = tree / "upscaled"
    first = invoke_upscale(tree, "-o", out, "--model", model, "-q")
    again = invoke_upscale(tree, "-o", out, "--model", model, "-q", "--dry-run")
    nested = [p for p in out.rglob("*") if "upscaled" in p.relative_to(out).parts]
    row = _row(
        again, 0, "6 files planned", first_run_ok=first.returncode == 0, no_nesting=not nested
    )
    return row


def output_is_input(work: Path, model: Path) -> dict[str, Any]:
    tree = work / "in"
    make_tree(tree, 3, 4)
    cli = invoke_upscale(tree, "-o", tree, "--model", model)
    return _row(cli, 2, "cannot be an input folder")


def input_inside_output(work: Path, model: Path) -> dict[str, Any]:
    out = work / "out"
    make_tree(out / "in", 3, 5)
    cli = invoke_upscale(out / "in", "-o", out, "--model", model)
    return _row(cli, 2, "inside the output folder")


def name_collision(work: Path, model: Path) -> dict[str, Any]:
    tree = work / "in"
    make_tree(tree, 1, 6)
    source = next(tree.glob("*.png"))
    shutil.copy(source, tree / "a.png")
    with Image.open(source) as im:
        im.convert("RGB").save(tree / "a.tga")
    cli = invoke_upscale(tree, "-o", work / "out", "--model", model, "--format", "png")
    return _row(cli, 2, "would both be written", nothing_written=not (work / "out").exists())


def symlinks(work: Path, model: Path) -> dict[str, Any]:
    tree, outside = work / "in", work / "elsewhere"
    make_tree(tree, 4, 7)
    make_tree(outside, 2, 8)
    (tree / "loop1.png").symlink_to("loop2.png")
    (tree / "loop2.png").symlink_to("loop1.png")
    (tree / "sub" / "up").symlink_to("..")  # a folder loop
    (tree / "outside.png").symlink_to(next(outside.glob("*.png")))
    (tree / "outside_dir").symlink_to(outside)
    (tree / "inside.png").symlink_to(next(tree.glob("*.png")).name)
    cli = invoke_upscale(tree, "-o", work / "out", "--model", model, "-q")
    failed = [ln for ln in cli.stderr.splitlines() if ln.startswith("failed: ")]
    return _row(
        cli,
        1,
        "Too many levels of symbolic links",
        loops_fail_once_each=len(failed) == 2,
        links_out_not_followed="symlink points outside" in cli.stderr,
        folder_links_not_followed=cli.stderr.count("folder symlink not followed") == 2,
        link_inside_done=(work / "out" / "inside.png").is_file(),
    )


def link_in_output_tree(work: Path, model: Path) -> dict[str, Any]:
    tree, out, outside = work / "in", work / "out", work / "elsewhere"
    make_tree(tree, 4, 9)
    (tree / "sub" / "deep").mkdir()
    shutil.copy(next(tree.glob("*.png")), tree / "sub" / "deep" / "x.png")
    out.mkdir()
    outside.mkdir()
    (out / "sub").symlink_to(outside)  # a trap left in the output folder
    cli = invoke_upscale(tree, "-o", out, "--model", model, "-q")
    return _row(
        cli,
        1,
        "outside the output root",
        nothing_written_through_link=not any(outside.iterdir()),
    )


def unprivileged_prefix(locked: Path) -> tuple[str, ...] | None:
    """How to run the command so that permissions apply: as is for a normal user; for root,
    under ``setpriv`` without the capabilities that bypass them; None where neither works."""
    if os.geteuid() != 0:
        return ()
    prefix = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--")
    if shutil.which("setpriv") is None:
        return None
    probe = subprocess.run([*prefix, "ls", str(locked)], capture_output=True)
    return prefix if probe.returncode != 0 else None


def unreadable(work: Path, model: Path) -> dict[str, Any]:
    tree = work / "in"
    make_tree(tree, 6, 10)
    locked_dir, locked_file = tree / "sub", next(tree.glob("*.png"))
    locked_dir.chmod(0)
    locked_file.chmod(0)
    try:
        prefix = unprivileged_prefix(locked_dir)
        if prefix is None:
            return {"ok": None, "skipped": "root without a way to drop CAP_DAC_OVERRIDE"}
        cli = run_upscale(tree, "-o", work / "out", "--model", model, "-q", prefix=prefix)
    finally:
        locked_dir.chmod(0o755)
        locked_file.chmod(0o644)
    return _row(
        cli,
        1,
        "Permission denied",
        folder_reported="cannot list folder" in cli.stderr,
        file_reported=f"{locked_file.name}: cannot read" in cli.stderr,
        others_done=len(list((work / "out").glob("*.*"))) >= 2,
    )


def changed_mid_run(work: Path, model: Path) -> dict[str, Any]:
    """In process: the first finished file triggers deleting one input and resizing another."""
    from upscaler.engine.load import load_model
    from upscaler.plan import RunOptions, make_plan
    from upscaler.runner import Runner
    from upscaler.worklist import build_worklist

    tree = work / "in"
    make_tree(tree, 8, 11)  # sizes all differ: one group each, decoded one group ahead
    jobs = build_worklist([tree], work / "out").jobs
    deleted, replaced = jobs[-1].source, jobs[-2].source
    with Image.open(replaced) as im:  # the same format, another size
        bigger, buffer = im.resize((im.width + 5, im.height + 3)), io.BytesIO()
        bigger.save(buffer, format=im.format)
    fired: list[bool] = []

    def on_result(result: Any) -> None:
        if result.status == "done" and not fired:
            fired.append(True)
            deleted.unlink()
            replaced.write_bytes(buffer.getvalue())

    upscaler = load_model(model)
    plan = make_plan(jobs, upscaler, RunOptions(work / "out"))
    results = {Path(r.source): r for r in Runner(upscaler, plan, on_result).run()}
    gone, changed = results[deleted], results[replaced]
    ok = gone.status == "failed" and "No such file" in gone.reason
    ok = ok and changed.status == "failed" and "changed while" in changed.reason
    return {
        "ok": ok and sum(r.status == "done" for r in results.values()) == len(jobs) - 2,
        "deleted": gone.reason,
        "replaced": changed.reason,
    }


CASES: dict[str, Case] = {
    "output inside input": output_inside_input,
    "output = input": output_is_input,
    "input inside output": input_inside_output,
    "name collision a.tga + a.png": name_collision,
    "symlink loops and links out": symlinks,
    "link in output tree": link_in_output_tree,
    "unreadable folder and file": unreadable,
    "file deleted/replaced mid-run": changed_mid_run,
}


def run(work: Path, model: Path) -> dict[str, Any]:
    rows = {}
    for index, (name, case) in enumerate(CASES.items()):
        place = work / f"case{index}"
        place.mkdir(parents=True)
        row = case(place, model)
        escaped = _files_outside(place, [place / "in", place / "out", place / "elsewhere"])
        row["written_outside_output_root"] = len(escaped)
        if escaped:
            row["ok"] = False
        rows[name] = row
    return {
        "cases": rows,
        "cases_ok": sum(r["ok"] is True for r in rows.values()),
        "cases_skipped": sum(r["ok"] is None for r in rows.values()),
        "cases_total": len(rows),
    }
