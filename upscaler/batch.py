"""What the ``upscale`` command does once its command line is parsed and checked: list the plan
(``--dry-run``) or run the batch, and report: progress, one line per failed file, the summary,
the report file, how to resume after Ctrl-C. Returns the exit code.

Exit codes: 0 all done (or skipped), 1 some files failed, 2 usage error (nothing written; click
raises those), 3 fatal (model refused, output unwritable, disk full), 130 interrupted.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from upscaler.console import Console, Progress

if TYPE_CHECKING:
    from upscaler.engine.pipeline import Upscaler
    from upscaler.plan import RunPlan
    from upscaler.review import ReviewPaths
    from upscaler.runner import FileResult

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_FATAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


def dry_run(console: Console, plan: RunPlan) -> None:
    """List ``plan``: each file to do or skip, with its sizes and map type, or why it fails."""
    from upscaler.texture.maps import kind_from_name

    for path, reason in plan.problems:
        console.line(f"fail  {path}: {reason}", err=False)
    for item in plan.files:
        if item.reason or item.size is None or item.output_size is None:
            console.line(f"fail  {item.job.source}: {item.reason}", err=False)
            continue
        (h, w), (out_h, out_w), options = item.size, item.output_size, item.options
        verb = "skip " if item.done else "do   "
        kind = options.map if options.map != "auto" else kind_from_name(item.job.source) or "color"
        console.line(
            f"{verb} {item.job.source} -> {item.job.target} ({w}x{h} -> {out_w}x{out_h}) {kind}",
            err=False,
        )
    console.line(f"{len(plan.files)} files planned (dry run: nothing written)", err=False)


def run_batch(
    console: Console, upscaler: Upscaler, plan: RunPlan, quiet: bool, memory: int | None = None
) -> int:
    """Carry out ``plan`` with ``upscaler``, write its report and review page, print the
    summary; the exit code. ``memory``: the user's ``--max-memory``, which the review page's
    pictures keep to as well (None: no limit)."""
    from upscaler.runner import FatalError, Runner, write_report

    files = plan.side
    problem = files.make_folders()
    if problem is not None:
        console.line(f"error: {problem}")
        return EXIT_FATAL

    started = time.perf_counter()
    progress = Progress(console, plan.total, quiet)

    def on_result(result: FileResult) -> None:
        if result.status == "failed":
            console.line(f"failed: {result.source}: {result.reason}")
        progress.update(failed=result.status == "failed", target=result.target)
        if result.status == "failed":
            progress.refresh()

    runner = Runner(upscaler, plan, on_result, on_plan=progress.plan)
    fatal, interrupted = None, False
    try:
        runner.run()
    except FatalError as exc:
        fatal = str(exc)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
    results = runner.results
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    seconds = time.perf_counter() - started
    engines = [upscaler, *([upscaler.for_blocks] if upscaler.for_blocks else [])]
    wild = sum(engine.wild_pixels for engine in engines)
    summary = {
        **counts,
        "wild_pixels": wild,
        "total": plan.total,
        "seconds": round(seconds, 3),
        "model": upscaler.info.name,
        "scale": upscaler.scale,
        "device": str(upscaler.device),
        "fatal": fatal,
        "interrupted": interrupted,
        "state": str(plan.state.path),
        **(files.where or {}),
    }
    if files.report is not None:
        try:
            write_report(files.report, results, summary)
        except OSError as exc:
            fatal = fatal or f"cannot write the report {files.report}: {exc.strerror or exc}"
    if files.review is not None and not interrupted:  # not after fatal: the disk is full
        workers = plan.options.workers
        review = _review(console, files.review, results, summary, workers, quiet, memory)
        fatal = fatal or review
    head = "interrupted: " if interrupted else ""
    console.line(
        f"{head}{counts['done']} upscaled, {counts['skipped']} skipped, {counts['failed']} failed "
        f"of {plan.total} in {seconds:.1f} s"
    )
    if wild:
        console.line(
            f"note: the model blew up on {wild} output pixels (ground it never learned, such as "
            "full-contrast one-pixel patterns); they and their surroundings were filled from a "
            "bicubic upscale"
        )
    failed = [r for r in results if r.status == "failed"]
    for r in failed[:50]:
        console.line(f"  {r.source}: {r.reason}")
    if len(failed) > 50:
        console.line(f"  ... and {len(failed) - 50} more (see --report)")
    if plan.state.error:
        console.line(
            f"warning: resume state not saved ({plan.state.error}); --skip-existing will "
            "redo these files"
        )
    if interrupted:
        console.line(
            "to resume, run the same command with --skip-existing: finished outputs are kept "
            f"(recorded in {plan.state.path})"
        )
        return EXIT_INTERRUPTED
    if fatal:
        console.line(f"error: {fatal}")
        return EXIT_FATAL
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _review(
    console: Console,
    paths: ReviewPaths,
    results: list[FileResult],
    summary: dict[str, object],
    workers: int,
    quiet: bool,
    memory: int | None,
) -> str | None:
    """Write the review page; a reason when it cannot be written."""
    from upscaler.review import write_review

    bar = None
    if not quiet and results and sys.stderr is not None and sys.stderr.isatty():
        bar = click.progressbar(length=len(results), label="review page", file=sys.stderr)
        bar.__enter__()
    try:
        count = write_review(
            paths,
            [asdict(r) for r in results],
            summary,
            workers=workers,
            memory=memory,
            on_picture=(lambda: bar.update(1)) if bar is not None else None,
        )
    except OSError as exc:
        return f"cannot write the review page {paths.page}: {exc.strerror or exc}"
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    console.line(f"review page: {paths.page} ({count} textures)")
    return None
