"""What the ``upscale`` command does once its command line is parsed and checked: list the plan
(``--dry-run``) or run the batch, and report: progress, one line per failed file, the summary,
the report file, how to resume after Ctrl-C. Returns the exit code.

Exit codes: 0 all done (or skipped), 1 some files failed, 2 usage error (nothing written; click
raises those), 3 fatal (model refused, output unwritable, disk full), 130 interrupted.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from upscaler.console import Console, Progress

if TYPE_CHECKING:
    from upscaler.engine.pipeline import Upscaler
    from upscaler.process import TextureOptions
    from upscaler.review import ReviewPaths
    from upscaler.rules import Rules
    from upscaler.runner import FileResult, RunOptions
    from upscaler.state import RunState
    from upscaler.worklist import Job, WorkList

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_FATAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


@dataclass(frozen=True)
class RunFiles:
    """What a run writes besides its outputs: the report, the review page, and where the run
    happened (the working folder, output and inputs) for their readers."""

    report: Path | None = None
    review: ReviewPaths | None = None
    where: dict[str, object] | None = None

    def make_folders(self) -> str | None:
        """Make the report's and the page's missing folders (their paths were checked when
        the command line was); a reason when one cannot be made."""
        pages = [self.review.page] if self.review is not None else []
        for path in [*([self.report] if self.report is not None else []), *pages]:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                return f"cannot make the folder {path.parent}: {exc.strerror or exc}"
        return None


def dry_run(
    console: Console,
    jobs: list[Job],
    upscaler: Upscaler,
    texture: TextureOptions,
    rules: Rules,
    skip_existing: bool,
    state: RunState,
    worklist: WorkList,
) -> None:
    from upscaler.formats.image import ImageReadError, output_limit, probe
    from upscaler.process import output_size
    from upscaler.runner import made_by, producer
    from upscaler.texture.maps import kind_from_name

    made = producer(upscaler)
    for path, reason in worklist.problems:
        console.line(f"fail  {path}: {reason}", err=False)
    for job in jobs:
        try:
            size = probe(job.source)
        except ImageReadError as exc:
            console.line(f"fail  {job.source}: {exc.reason}", err=False)
            continue
        options = rules.options_for(job.name, texture)
        out = output_size(size, upscaler.scale, options)
        too_big = output_limit(job.format, out)
        if too_big is not None:
            console.line(f"fail  {job.source}: {too_big}", err=False)
            continue
        done = False
        if skip_existing:
            try:
                done = state.complete(job.target, made_by(job, options, made))
            except OSError:
                done = False
        verb = "skip " if done else "do   "
        kind = options.map if options.map != "auto" else kind_from_name(job.source) or "color"
        console.line(
            f"{verb} {job.source} -> {job.target} ({size[1]}x{size[0]} -> {out[1]}x{out[0]}) "
            f"{kind}",
            err=False,
        )
    console.line(f"{len(jobs)} files planned (dry run: nothing written)", err=False)


def run_batch(
    console: Console,
    jobs: list[Job],
    upscaler: Upscaler,
    texture: TextureOptions,
    rules: Rules,
    options: RunOptions,
    quiet: bool,
    files: RunFiles,
    worklist: WorkList,
) -> int:
    from upscaler.runner import FatalError, FileResult, Runner, write_report

    problem = files.make_folders()
    if problem is not None:
        console.line(f"error: {problem}")
        return EXIT_FATAL

    problems = worklist.problems
    total = len(jobs) + len(problems)  # unreadable folders and odd files count as tried, failed
    started = time.perf_counter()
    progress = Progress(console, total, quiet)

    def on_result(result: FileResult) -> None:
        if result.status == "failed":
            console.line(f"failed: {result.source}: {result.reason}")
        progress.update(failed=result.status == "failed", target=result.target)
        if result.status == "failed":
            progress.refresh()

    runner = Runner(upscaler, texture, options, on_result, rules, on_plan=progress.plan)
    for path, reason in problems:
        runner._emit(FileResult(str(path), "", "failed", reason))
    fatal, interrupted = None, False
    try:
        runner.run(jobs)
    except FatalError as exc:
        fatal = str(exc)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.close()
    results = runner.results
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    seconds = time.perf_counter() - started
    summary = {
        **counts,
        "total": total,
        "seconds": round(seconds, 3),
        "model": upscaler.info.name,
        "scale": upscaler.scale,
        "device": str(upscaler.device),
        "fatal": fatal,
        "interrupted": interrupted,
        "state": str(runner.state.path),
        **(files.where or {}),
    }
    if files.report is not None:
        try:
            write_report(files.report, results, summary)
        except OSError as exc:
            fatal = fatal or f"cannot write the report {files.report}: {exc.strerror or exc}"
    if files.review is not None and not interrupted:  # not after fatal: the disk is full
        fatal = fatal or _review(console, files.review, results, summary, options.workers, quiet)
    head = "interrupted: " if interrupted else ""
    console.line(
        f"{head}{counts['done']} upscaled, {counts['skipped']} skipped, {counts['failed']} failed "
        f"of {total} in {seconds:.1f} s"
    )
    failed = [r for r in results if r.status == "failed"]
    for r in failed[:50]:
        console.line(f"  {r.source}: {r.reason}")
    if len(failed) > 50:
        console.line(f"  ... and {len(failed) - 50} more (see --report)")
    if runner.state.error:
        console.line(
            f"warning: resume state not saved ({runner.state.error}); --skip-existing will "
            "redo these files"
        )
    if interrupted:
        console.line(
            "to resume, run the same command with --skip-existing: finished outputs are kept "
            f"(recorded in {runner.state.path})"
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
            on_picture=(lambda: bar.update(1)) if bar is not None else None,
        )
    except OSError as exc:
        return f"cannot write the review page {paths.page}: {exc.strerror or exc}"
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    console.line(f"review page: {paths.page} ({count} textures)")
    return None
