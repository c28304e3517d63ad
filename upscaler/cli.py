"""The ``upscale`` command. It parses, reports and sets exit codes; the work happens elsewhere.

Exit codes: 0 all done (or skipped), 1 some files failed, 2 usage error, 3 fatal (model refused,
output unwritable, disk full).
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from upscaler import options as choices

if TYPE_CHECKING:
    from upscaler.engine.pipeline import Upscaler
    from upscaler.process import TextureOptions
    from upscaler.review import ReviewPaths
    from upscaler.rules import Rules
    from upscaler.runner import FileResult, RunOptions
    from upscaler.worklist import Job

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE, EXIT_FATAL = 0, 1, 2, 3


def _fatal(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_FATAL)


def _parse_shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1:  # under torchrun every process takes its share
            return int(os.environ.get("RANK", "0")), world
        return None
    try:
        k, n = (int(v) for v in value.split("/"))
    except ValueError:
        raise click.BadParameter("use K/N, e.g. 1/4 for the first of four shards") from None
    if not 1 <= k <= n:
        raise click.BadParameter(f"shard {value}: K must be between 1 and N")
    return k - 1, n


class MemorySize(click.ParamType):
    """A byte count: ``4G``, ``512M``, ``1.5GiB`` (binary units; a bare number is bytes)."""

    name = "size"
    UNITS = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("B").removesuffix("I")
        unit = text[-1:] if text[-1:] in "KMGT" and text else ""
        try:
            number = float(text[: len(text) - len(unit)])
        except ValueError:
            self.fail(f"{value!r} is not a size; use e.g. 4G, 512M or 1.5G", param, ctx)
        if not math.isfinite(number) or number * (1 << self.UNITS[unit]) < 1 << 20:
            self.fail(f"{value!r} is not a usable size; give at least 1M", param, ctx)
        return int(number * (1 << self.UNITS[unit]))


def _device(value: str) -> str:
    local_rank = os.environ.get("LOCAL_RANK")
    if value in ("auto", "cuda") and local_rank is not None:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{local_rank}"
    return value


def _list_models(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from upscaler.models import known
    from upscaler.models.zoo import SHIPPED

    click.echo("shipped (inside the package):")
    for model in SHIPPED.values():
        size = f"{model.path.stat().st_size / 1e6:.1f} MB" if model.installed else "missing"
        click.echo(f"  {model.name:<26} {'x' + str(model.scale):>3} {size:>9}  {model.summary}")
    cache = known.cache_dir()
    try:
        registry = known.known_models()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"known (fetched by name into {cache}; SHA-256 checked):")
    for entry in registry.values():
        found = known.presence(entry, cache)
        if found.path is not None:
            state = "present" if found.path.name == entry.file else "present (a copy)"
        elif found.mismatched:
            state = "WRONG FILE in cache"
        else:
            how = "download" if entry.url else "by hand"
            state = f"{how}, {entry.size / 1e6:.0f} MB"
        click.echo(
            f"  {entry.name:<26} {'x' + str(entry.scale):>3}  {entry.licence:<15} {state:<19} "
            f"{entry.summary}"
        )
    ctx.exit(EXIT_OK)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Output folder; the input tree is mirrored inside it.",
)
@click.option(
    "-s",
    "--scale",
    type=click.IntRange(1, 16),
    default=None,
    help="Model scale; picks the shipped model (default 4, or the --model's scale).",
)
@click.option(
    "-m",
    "--model",
    "model_name",
    default=None,
    help="Shipped or known model name (--list-models), our .safetensors, or a community "
    ".pth/.safetensors.",
)
@click.option(
    "--no-download",
    is_flag=True,
    help="Never download a known model; say where to put its file instead "
    "(also UPSCALE_NO_DOWNLOAD=1).",
)
@click.option("--native", is_flag=True, help="Upscale, then filter back to the input's size.")
@click.option(
    "--output-scale",
    type=float,
    default=None,
    help="Final size as a multiple of the input (e.g. 2 with a x4 model).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(choices.OUTPUT_FORMATS),
    default=None,
    help="Convert outputs to this format (default: keep each input's format).",
)
@click.option(
    "--tile",
    type=click.IntRange(16, 16384),
    default=None,
    help="Tile size in input pixels (default: from available memory).",
)
@click.option(
    "--max-memory",
    type=MemorySize(),
    default=None,
    help="Memory the upscaling may use on its device, e.g. 4G or 512M; sets the tile size "
    "and batch (default: a quarter of RAM up to 4G on CPU, half of the GPU's memory).",
)
@click.option(
    "--seamless",
    type=click.Choice(choices.SEAMLESS_MODES),
    default="auto",
    help="Wrap-around padding so tileable textures stay tileable (auto: detect per axis; "
    "x: left/right edges only, y: top/bottom only).",
)
@click.option(
    "--map",
    "map_kind",
    type=click.Choice(choices.MAP_CHOICES),
    default="auto",
    help="Map type (auto: from the name suffix, e.g. _n normal, _rough data; checked by content).",
)
@click.option(
    "--alpha",
    "alpha_mode",
    type=click.Choice(choices.ALPHA_CHOICES),
    default="auto",
    help="Alpha meaning (auto: cutout if mostly 0/255, else blended; data in normal/data maps).",
)
@click.option(
    "--palette",
    type=click.Choice(choices.PALETTE_MODES),
    default="rgb",
    help="Palette images: upscale as RGB(A), or keep: re-quantise to the source palette.",
)
@click.option(
    "--dds-format",
    type=click.Choice(choices.DDS_FORMATS),
    default="auto",
    help="DDS outputs: auto keeps the source's format (BC7 for other sources).",
)
@click.option(
    "--dds-quality",
    type=click.Choice(choices.DDS_QUALITIES),
    default="balanced",
    show_default=True,
    help="DDS block encoders: fast, balanced (encoding ~15% of a CPU run), or best (slowest).",
)
@click.option(
    "--rules",
    "rules_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="TOML file of per-pattern options (glob -> map, alpha, seamless, native, format...).",
)
@click.option("--skip-existing", is_flag=True, help="Skip outputs that exist and are complete.")
@click.option("--dry-run", is_flag=True, help="List what would be done; write nothing.")
@click.option(
    "--report",
    type=click.Path(path_type=Path),
    default=None,
    help="Write per-file results as JSON.",
)
@click.option(
    "--review",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write a page to review the batch by eye (pictures in a folder beside it, named "
    "PAGE_files); never inside the output or an input folder.",
)
@click.option("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps.")
@click.option(
    "--precision",
    type=click.Choice(choices.PRECISIONS),
    default="auto",
    help="auto: bf16 on CUDA where the model supports it, fp32 on CPU.",
)
@click.option(
    "--shard",
    default=None,
    metavar="K/N",
    help="Process only the K-th of N shares of the files (automatic under torchrun).",
)
@click.option(
    "--png-level",
    type=click.IntRange(0, 9),
    default=3,
    help="PNG compression level (higher: smaller files, slower).",
)
@click.option(
    "--batch",
    "max_batch",
    type=click.IntRange(1, 1024),
    default=16,
    help="Most same-size images upscaled together.",
)
@click.option(
    "--workers", type=click.IntRange(1, 64), default=2, help="Threads for decoding and encoding."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar; errors and summary only.")
@click.option(
    "--list-models",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_list_models,
    help="Show the shipped and known models (licence, whether present) and exit.",
)
@click.version_option(package_name="texture-upscaler")
def main(
    inputs: tuple[Path, ...],
    output: Path,
    scale: int | None,
    model_name: str | None,
    no_download: bool,
    native: bool,
    output_scale: float | None,
    fmt: str | None,
    tile: int | None,
    max_memory: int | None,
    seamless: str,
    map_kind: str,
    alpha_mode: str,
    palette: str,
    dds_format: str,
    dds_quality: str,
    rules_file: Path | None,
    skip_existing: bool,
    dry_run: bool,
    report: Path | None,
    review: Path | None,
    device: str,
    precision: str,
    shard: str | None,
    png_level: int,
    max_batch: int,
    workers: int,
    quiet: bool,
) -> None:
    """Upscale game textures in INPUTS (files or folders) into OUTPUT, mirroring the tree."""
    from upscaler.models import zoo
    from upscaler.models.checkpoint import ModelFileError
    from upscaler.models.known import ModelUnavailableError
    from upscaler.process import TextureOptions
    from upscaler.rules import Rules, RulesError
    from upscaler.worklist import PlanError, build_worklist
    from upscaler.worklist import shard as take_shard

    if native and output_scale is not None:
        raise click.UsageError("--native and --output-scale exclude each other")
    if output_scale is not None and not 0 < output_scale <= 64:
        raise click.BadParameter("must be in (0, 64]", param_hint="--output-scale")
    shard_spec = _parse_shard(shard)
    out_format = choices.FORMATS["." + fmt] if fmt else None
    try:
        rules = Rules.load(rules_file) if rules_file is not None else Rules()
    except RulesError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        worklist = build_worklist(list(inputs), output, out_format, rules.format_for)
        jobs = worklist.jobs
        if shard_spec is not None:
            jobs = take_shard(jobs, *shard_spec)
    except PlanError as exc:
        raise click.UsageError(str(exc)) from None
    review_paths = None
    if review is not None:
        from upscaler.review import ReviewError, check_paths

        if dry_run:
            raise click.UsageError("--review needs a run; --dry-run writes nothing")
        try:
            review_paths = check_paths(_shard_name(review, shard_spec), output, inputs)
        except ReviewError as exc:
            raise click.UsageError(str(exc)) from None
    texture = TextureOptions(
        tile=tile,
        seamless=seamless,
        native=native,
        output_scale=output_scale,
        map=map_kind,
        alpha=alpha_mode,
        palette=palette,
        dds_format=dds_format,
        dds_quality=dds_quality,
    )

    try:
        name = model_name or zoo.default_model(scale or 4)
        source = _fetch_known(name, scale, no_download, quiet)
        upscaler = _load(source, device, precision, max_memory)
    except ModelUnavailableError as exc:
        _fatal(str(exc))
        return
    except (ModelFileError, ValueError, RuntimeError) as exc:
        _fatal(f"model refused: {exc}")
        return
    if scale is not None and upscaler.scale != scale:
        raise click.UsageError(f"--scale {scale} but model {name} is x{upscaler.scale}")

    for path, reason in worklist.notes:
        click.echo(f"not followed: {path}: {reason}", err=True)
    if dry_run:
        _dry_run(jobs, upscaler.scale, texture, rules, skip_existing, output)
        return
    from upscaler.runner import RunOptions

    options = RunOptions(output, skip_existing, png_level, max_batch, workers)
    where: dict[str, object] = {"cwd": os.getcwd(), "output": str(output.resolve())}
    where["inputs"] = [str(p.resolve()) for p in inputs]
    files = _Files(_shard_name(report, shard_spec) if report else None, review_paths, where)
    sys.exit(_run(jobs, upscaler, texture, rules, options, quiet, files, worklist.problems))


def _shard_name(path: Path, shard_spec: tuple[int, int] | None) -> Path:
    """``run.json`` -> ``run-shard1of2.json``: each shard writes its own report and page."""
    if shard_spec is None:
        return path
    return path.with_name(f"{path.stem}-shard{shard_spec[0] + 1}of{shard_spec[1]}{path.suffix}")


@dataclass(frozen=True)
class _Files:
    """What the run writes besides its outputs."""

    report: Path | None
    review: ReviewPaths | None
    where: dict[str, object]  # cwd, output and inputs, for the report's readers


def _fetch_known(name: str, scale: int | None, no_download: bool, quiet: bool) -> str:
    """A known model's cached file (downloading it, with a progress bar), or ``name`` as is."""
    from upscaler.models import known

    model = known.find(name)
    if model is None or Path(name).exists():
        return name
    if scale is not None and model.scale != scale:
        raise click.UsageError(f"--scale {scale} but model {model.name} is x{model.scale}")
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            click.echo(
                f"downloading {model.name} ({total / 1e6:.1f} MB, {model.licence}) from "
                f"{known.download_url(model)}",
                err=True,
            )
            bar = click.progressbar(length=total, label=model.name, file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        path = known.fetch(
            model, download=False if no_download else None, progress=None if quiet else progress
        )
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if bar is not None:
        click.echo(f"saved {path}", err=True)
    return str(path)


def _load(name: str, device: str, precision: str, max_memory: int | None) -> Upscaler:
    from upscaler.engine.load import pick_device, pick_dtype
    from upscaler.engine.pipeline import Upscaler
    from upscaler.models.loader import read_model

    module, info = read_model(name)
    torch_device = pick_device(_device(device))
    return Upscaler(
        module,
        info,
        device=torch_device,
        dtype=pick_dtype(precision, torch_device, info),
        max_memory=max_memory,
    )


def _dry_run(
    jobs: list[Job],
    scale: int,
    texture: TextureOptions,
    rules: Rules,
    skip_existing: bool,
    output: Path,
) -> None:
    from upscaler.formats.image import ImageReadError, probe
    from upscaler.process import output_size
    from upscaler.runner import Manifest
    from upscaler.texture.maps import kind_from_name

    manifest = Manifest(output.resolve())
    for job in jobs:
        try:
            size = probe(job.source)
        except ImageReadError as exc:
            click.echo(f"fail  {job.source}: {exc.reason}")
            continue
        options = rules.options_for(job.name, texture)
        out = output_size(size, scale, options)
        done = skip_existing and manifest.complete(job.target, out)
        verb = "skip " if done else "do   "
        kind = options.map if options.map != "auto" else kind_from_name(job.source) or "color"
        click.echo(
            f"{verb} {job.source} -> {job.target} ({size[1]}x{size[0]} -> {out[1]}x{out[0]}) {kind}"
        )
    click.echo(f"{len(jobs)} files planned (dry run: nothing written)")


def _run(
    jobs: list[Job],
    upscaler: Upscaler,
    texture: TextureOptions,
    rules: Rules,
    options: RunOptions,
    quiet: bool,
    files: _Files,
    problems: list[tuple[Path, str]],
) -> int:
    from upscaler.runner import FatalError, FileResult, Runner, write_report

    total = len(jobs)
    started = time.perf_counter()
    bar = None
    if not quiet and total:
        bar = click.progressbar(
            length=total, label="upscaling", file=sys.stderr, show_eta=True, show_pos=True
        )
        bar.__enter__()

    def on_result(result: FileResult) -> None:
        if result.status == "failed":
            if bar is not None:
                sys.stderr.write("\r\033[K" if sys.stderr.isatty() else "\n")
            click.echo(f"failed: {result.source}: {result.reason}", err=True)
        if bar is not None:
            bar.update(1)

    runner = Runner(upscaler, texture, options, on_result, rules)
    for path, reason in problems:  # folders that could not be read: their files are missing
        runner.results.append(FileResult(str(path), "", "failed", reason))
        click.echo(f"failed: {path}: {reason}", err=True)
    fatal = None
    try:
        results = runner.run(jobs)
    except FatalError as exc:
        fatal, results = str(exc), runner.results
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    counts = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    seconds = time.perf_counter() - started
    total += len(problems)  # unreadable folders count as tried, and failed
    summary = {
        **counts,
        "total": total,
        "seconds": round(seconds, 3),
        "model": upscaler.info.name,
        "scale": upscaler.scale,
        "device": str(upscaler.device),
        "fatal": fatal,
        **files.where,
    }
    if files.report is not None:
        try:
            write_report(files.report, results, summary)
        except OSError as exc:
            fatal = fatal or f"cannot write the report {files.report}: {exc.strerror or exc}"
    if files.review is not None:  # not after a fatal error: the disk is full or unwritable
        fatal = fatal or _review(files.review, results, summary, options.workers, quiet)
    click.echo(
        f"{counts['done']} upscaled, {counts['skipped']} skipped, {counts['failed']} failed "
        f"of {total} in {seconds:.1f} s",
        err=True,
    )
    failed = [r for r in results if r.status == "failed"]
    for r in failed[:50]:
        click.echo(f"  {r.source}: {r.reason}", err=True)
    if len(failed) > 50:
        click.echo(f"  ... and {len(failed) - 50} more (see --report)", err=True)
    if fatal:
        click.echo(f"error: {fatal}", err=True)
        return EXIT_FATAL
    return EXIT_SOME_FAILED if failed else EXIT_OK


def _review(
    paths: ReviewPaths,
    results: list[FileResult],
    summary: dict[str, object],
    workers: int,
    quiet: bool,
) -> str | None:
    """Write the review page; a reason when it cannot be written."""
    from dataclasses import asdict

    from upscaler.review import write_review

    bar = None
    if not quiet and results:
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
    click.echo(f"review page: {paths.page} ({count} textures)", err=True)
    return None
