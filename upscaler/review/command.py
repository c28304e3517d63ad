"""``upscale-review``: the review page of an earlier run, from its ``--report``, without upscaling.

A command of its own rather than ``upscale review``: ``upscale`` takes folders as arguments, and
``upscale review -o out/`` already means "upscale the folder named review".
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from upscaler.review import ReviewError, check_paths, load_reports, write_review


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("reports", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "-o",
    "--page",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The page to write (its pictures go in PAGE_files beside it).",
)
@click.option(
    "--outputs",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="The run's output folder, if it has moved since the run (default: as in the report).",
)
@click.option(
    "--workers", type=click.IntRange(1, 64), default=2, help="Threads making the pictures."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.version_option(package_name="texture-upscaler")
def main(
    reports: tuple[Path, ...], page: Path, outputs: Path | None, workers: int, quiet: bool
) -> None:
    """Build the review page of the run(s) that wrote REPORTS (``upscale --report``; the
    reports of several shards make one page). Outputs are read, never written."""
    try:
        files, summary = load_reports(reports, outputs)
        output = Path(summary["output"]) if summary.get("output") else None
        inputs = [Path(p) for p in summary.get("inputs") or []]
        paths = check_paths(page, output, inputs, [("the report", r) for r in reports])
    except ReviewError as exc:
        raise click.UsageError(str(exc)) from None
    bar = None
    if not quiet and files:
        bar = click.progressbar(length=len(files), label="review page", file=sys.stderr)
        bar.__enter__()
    try:
        count = write_review(
            paths,
            files,
            summary,
            workers=workers,
            on_picture=(lambda: bar.update(1)) if bar is not None else None,
        )
    except OSError as exc:
        click.echo(f"error: cannot write the review page {paths.page}: {exc}", err=True)
        sys.exit(3)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    click.echo(f"review page: {paths.page} ({count} textures)", err=True)
