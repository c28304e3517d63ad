"""The run plan: what a run will do to each file, decided once, before the first file is decoded.

``make_plan`` takes the work list's jobs (sources and targets) and decides for each file: its
options (the command line's, refined by the rules file), its input size (from the header: an
unreadable file fails here, fast), its output size and whether its format can hold it, its recipe
(what the output is made from, see ``state``) and, with ``skip_existing``, whether the output is
already complete. The dry run prints the plan, the runner carries it out and the report counts it;
none of them decides any of this again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from upscaler.console import one_line
from upscaler.formats.image import ImageReadError, output_limit, probe
from upscaler.process import TextureOptions, output_size
from upscaler.rules import Rules
from upscaler.state import RunState, file_sha256, recipe
from upscaler.worklist import Job

if TYPE_CHECKING:
    from upscaler.engine.pipeline import Upscaler
    from upscaler.review import ReviewPaths


@dataclass(frozen=True)
class RunOptions:
    """How the batch runs; none of these changes an output's pixels."""

    output_root: Path
    skip_existing: bool = False
    png_level: int | None = None  # None: fast run-length PNG (formats.image._png)
    max_batch: int = 16
    workers: int = 2


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


@dataclass(frozen=True)
class PlannedFile:
    """One job and what the run will do with it: fail (``reason``), skip (``done``) or do."""

    job: Job
    options: TextureOptions  # the run's, refined by the rules file for this file
    size: tuple[int, int] | None = None  # input (height, width) from the header; None: unread
    output_size: tuple[int, int] | None = None
    recipe: str = ""  # what the output is made from (see ``state``); "" in a dry run
    done: bool = False  # the output exists and is complete: skipped
    reason: str = ""  # why the file fails before it is decoded; "" when it does not


@dataclass(frozen=True)
class RunPlan:
    """A whole run: its files, how it runs, its resume state and its side files."""

    files: tuple[PlannedFile, ...]  # in work-list order
    options: RunOptions
    state: RunState  # the output folder's resume state, loaded once for the whole run
    problems: tuple[tuple[Path, str], ...] = ()  # found while listing the inputs: these fail
    side: RunFiles = field(default_factory=RunFiles)

    @property
    def total(self) -> int:
        """Every file the run tries: unreadable folders and odd files count as failed."""
        return len(self.files) + len(self.problems)

    def work(self, scale: int) -> dict[str, int]:
        """The work each file still to upscale takes, by target: input pixels x scale², which
        is what the model's time grows with (a 1024² texture is 64 times a 128² one)."""
        return {
            str(f.job.target): f.size[0] * f.size[1] * scale**2
            for f in self.files
            if f.size is not None and not f.reason and not f.done
        }


def producer(upscaler: Upscaler) -> dict[str, object]:
    """What, besides each file's options and format, decides an output's pixels: the model file's
    SHA-256 (its name when it was built in memory), scale and precision, and the same of the
    weights it hands block-compressed textures to, if any."""
    made = {"model": _model_id(upscaler), "scale": upscaler.scale, "dtype": str(upscaler.dtype)}
    blocks = upscaler.for_blocks
    if blocks is not None:
        made["blocks"] = {"model": _model_id(blocks), "dtype": str(blocks.dtype)}
    return made


def _model_id(upscaler: Upscaler) -> str:
    source = Path(upscaler.info.source) if upscaler.info.source else None
    try:
        return file_sha256(source) if source is not None else f"name:{upscaler.info.name}"
    except OSError:
        return f"name:{upscaler.info.name}"


def made_by(job: Job, options: TextureOptions, producer: Mapping[str, object]) -> str:
    """The recipe of ``job``'s output (see ``state``); raises OSError if its source is gone."""
    return recipe(job.source, {**producer, "options": asdict(options), "format": job.format})


def make_plan(
    jobs: list[Job],
    upscaler: Upscaler,
    options: RunOptions,
    *,
    texture: TextureOptions | None = None,
    rules: Rules | None = None,
    state: RunState | None = None,
    problems: Iterable[tuple[Path, str]] = (),
    side: RunFiles = RunFiles(),
    recipes: bool = True,
) -> RunPlan:
    """Plan ``jobs``: headers probed in ``options.workers`` threads, options from ``texture``
    (default: ``TextureOptions()``) refined by ``rules``, completeness from ``state`` (default:
    the output folder's, loaded here; ``StateError`` if it cannot be there). ``problems``: what
    listing the inputs found unreadable. ``recipes=False`` (a dry run without ``skip_existing``)
    hashes no input."""
    texture, rules = texture or TextureOptions(), rules or Rules()
    if state is None:
        state = RunState(options.output_root.resolve())
    made = producer(upscaler) if recipes or options.skip_existing else None
    pool = ThreadPoolExecutor(options.workers, "probe")
    try:
        headers = list(pool.map(_header, jobs))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    files = []
    for job, header in zip(jobs, headers, strict=True):
        planned = PlannedFile(job, rules.options_for(job.name, texture))
        if isinstance(header, str):
            files.append(replace(planned, reason=header))
            continue
        out = output_size(header, upscaler.scale, planned.options)
        too_big = output_limit(job.format, out) or ""
        planned = replace(planned, size=header, output_size=out, reason=too_big)
        if made is not None and not too_big:
            planned = _made(planned, made, state if options.skip_existing else None)
        files.append(planned)
    return RunPlan(tuple(files), options, state, tuple(problems), side)


def _header(job: Job) -> tuple[int, int] | str:
    """The input's (height, width), or why its header cannot be read."""
    try:
        return probe(job.source)
    except ImageReadError as exc:
        return exc.reason
    except Exception as exc:  # a decoder bug fails this file, never the batch
        return f"unexpected error reading the header: {one_line(exc)}"


def _made(
    planned: PlannedFile, producer: Mapping[str, object], state: RunState | None
) -> PlannedFile:
    """``planned`` with its recipe, and skipped where ``state`` holds its output complete."""
    try:
        planned = replace(planned, recipe=made_by(planned.job, planned.options, producer))
    except OSError as exc:
        return replace(planned, reason=f"cannot read: {exc.strerror or exc}")
    if state is None:
        return planned
    return replace(planned, done=state.complete(planned.job.target, planned.recipe))
