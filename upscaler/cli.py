"""The ``upscale`` command. It parses, reports and sets exit codes; the work happens elsewhere.

Exit codes: 0 all done (or skipped), 1 some files failed, 2 usage error (nothing written), 3 fatal
(model refused, output unwritable, disk full), 130 interrupted (Ctrl-C: the summary so far is
printed; rerun with ``--skip-existing`` to resume); SIGTERM and SIGHUP stop a run the same way,
with 143 and 129.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from upscaler import options as choices
from upscaler.batch import EXIT_FATAL, EXIT_INTERRUPTED, EXIT_OK, RunFiles, dry_run, run_batch
from upscaler.console import Console, shown

if TYPE_CHECKING:
    import torch

    from upscaler.engine.pipeline import Upscaler
    from upscaler.models.sources import ModelSource
    from upscaler.review import ReviewPaths
    from upscaler.worklist import WorkList

DEVICE_PATTERN = re.compile(r"auto|cpu|mps|cuda(:\d{1,3})?")
# Same-size images per forward pass on a GPU. On a CPU one at a time is faster: 16 x 256^2 through
# realesr-animevideov3 on one core took 14.3 s one by one, 21.7 s as one batch of 16 (the
# activations of a batch overflow the caches).
GPU_BATCH = 16


class FatalCommandError(Exception):
    """Stop with exit code 3 and this one-line message."""


def _keep_standard_streams() -> None:
    """Put /dev/null on any of fds 0-2 the command was started without (``2>&-``): otherwise
    the next file opened would get that number, and whatever writes to "stderr" at the C level
    (libraries' warnings) would write into it, an output file perhaps."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                opened = os.open(os.devnull, os.O_RDWR)
            except OSError:
                return
            if opened != fd:  # lower fds were free too; they are filled in turn
                os.close(opened)


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise click.UsageError(
            f"environment variable {name}={value!r} (set by torchrun) is not a whole number"
        ) from None


def _parse_shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        world = _int_env("WORLD_SIZE", 1)
        if world > 1:  # under torchrun every process takes its share
            rank = _int_env("RANK", 0)
            if not 0 <= rank < world:
                raise click.UsageError(f"RANK={rank} is not within WORLD_SIZE={world}")
            return rank, world
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


def _check_device(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    if not DEVICE_PATTERN.fullmatch(value):
        raise click.BadParameter(f"{value!r}: use auto, cpu, cuda, cuda:N or mps")
    return value


def _device(value: str) -> str:
    local_rank = os.environ.get("LOCAL_RANK")
    if value in ("auto", "cuda") and local_rank is not None:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{_int_env('LOCAL_RANK', 0)}"
    return value


def _list_models(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from upscaler.models import known
    from upscaler.models.sources import SHIPPED

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


class _GivenPath(click.Path):
    """A path that was written out: an empty one ('') would silently mean the working folder."""

    def convert(
        self,
        value: str | os.PathLike[str],
        param: click.Parameter | None,
        ctx: click.Context | None,
    ) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail("an empty path would mean the working folder; write . if you mean it")
        return super().convert(value, param, ctx)


_GIVEN_PATH = _GivenPath(path_type=Path)


def _require_paths(inputs: object, output: object) -> None:
    """A usage error that says what to give when the inputs or ``-o`` are missing, instead of
    click's 'Missing argument': neither defaults to the working folder."""
    missing = [
        what
        for what, given in (
            ("INPUTS (the texture files or folders to upscale)", inputs),
            ("-o OUTPUT (the folder to write the results into)", output),
        )
        if not given
    ]
    if missing:
        raise click.UsageError(
            f"give {' and '.join(missing)}: upscale INPUTS... -o OUTPUT ('.' names the working "
            "folder)"
        )


@dataclass(frozen=True)
class Params:
    """The command line, as parsed by click."""

    inputs: tuple[Path, ...]
    output: Path
    scale: int | None
    model_name: str | None
    no_download: bool
    native: bool
    output_scale: float | None
    fmt: str | None
    tile: int | None
    max_memory: int | None
    seamless: str
    map_kind: str
    alpha_mode: str
    palette: str
    dds_format: str
    dds_quality: str
    rules_file: Path | None
    skip_existing: bool
    dry_run: bool
    report: Path | None
    review: Path | None
    device: str
    precision: str
    shard: str | None
    png_level: int | None
    max_batch: int | None
    workers: int
    quiet: bool


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.argument("inputs", nargs=-1, type=_GIVEN_PATH, metavar="INPUTS...")
@click.option(
    "-o",
    "--output",
    type=_GIVEN_PATH,
    help="Output folder (required); the input tree is mirrored inside it.",
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
@click.option(
    "--skip-existing",
    is_flag=True,
    help="Keep outputs this tool already made from the same input, model and options.",
)
@click.option("--dry-run", is_flag=True, help="List what would be done; write nothing.")
@click.option(
    "--report",
    type=click.Path(path_type=Path),
    default=None,
    help="Write per-file results as JSON (never onto an input or an output).",
)
@click.option(
    "--review",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write a page to review the batch by eye (pictures in a folder beside it, named "
    "PAGE_files); never inside the output or an input folder.",
)
@click.option(
    "--device", default="auto", callback=_check_device, help="auto, cpu, cuda, cuda:N or mps."
)
@click.option(
    "--precision",
    type=click.Choice(choices.PRECISIONS),
    default="auto",
    help="auto: bf16 where the device has it natively (a CPU with AVX512-BF16/AMX, a GPU), "
    "else fp16 on a GPU, when the model's output in it is >= 50 dB from fp32's with no value "
    "over 12 levels off (measured once per model); else fp32.",
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
    default=None,
    help="zlib level for PNG (9: smallest files, slowest). Default: a fast run-length "
    "mode that is also smaller than level 3 on upscaled textures.",
)
@click.option(
    "--batch",
    "max_batch",
    type=click.IntRange(1, 1024),
    default=None,
    help="Most same-size images upscaled together (default: 16 on a GPU; 1 on a CPU, where one "
    "image at a time stays in cache and runs faster).",
)
@click.option(
    "--workers", type=click.IntRange(1, 64), default=2, help="Threads for decoding and encoding."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress lines; errors and summary only.")
@click.option(
    "--list-models",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_list_models,
    help="Show the shipped and known models (licence, whether present) and exit.",
)
@click.version_option(package_name="texture-upscaler")
def main(**params: object) -> None:
    """Upscale game textures in INPUTS (files or folders) into OUTPUT, mirroring the tree."""
    _require_paths(params["inputs"], params["output"])
    _keep_standard_streams()
    console = Console()
    with warnings.catch_warnings():
        # Library warnings (a damaged EXIF block, a torch hint) are not the user's business and
        # would print as stray lines; what matters reaches the report as a file's reason.
        warnings.simplefilter("ignore")
        try:
            with _stop_signals() as stopped_by:
                code = _command(console, Params(**params))  # type: ignore[arg-type]
        except KeyboardInterrupt:  # before the batch started: nothing was written
            console.line("interrupted before any file was written")
            code = EXIT_INTERRUPTED
        except FatalCommandError as exc:
            console.line(f"error: {exc}")
            code = EXIT_FATAL
    if code == EXIT_INTERRUPTED and stopped_by:
        code = 128 + stopped_by[-1]  # as the shell reports a process that signal ended
    sys.exit(code)


@contextlib.contextmanager
def _stop_signals() -> Iterator[list[int]]:
    """SIGTERM and SIGHUP (``kill``, a closed terminal, a job scheduler's time limit) stop the
    run as Ctrl-C does: work under way finishes or is cleaned up, and the report and summary
    are written. The list gets the signal's number. A signal this process was started with
    ignored (``nohup``) stays ignored; the old handlers come back afterwards."""
    stopped_by: list[int] = []

    def stop(signum: int, _frame: object) -> None:
        stopped_by.append(signum)
        raise KeyboardInterrupt

    previous = {}
    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)  # Windows has no SIGHUP
        if number is None or signal.getsignal(number) != signal.SIG_DFL:
            continue
        try:
            previous[number] = signal.signal(number, stop)
        except ValueError:  # not the main thread: signals cannot be caught here
            break
    try:
        yield stopped_by
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _command(console: Console, p: Params) -> int:
    from upscaler.models import known, sources
    from upscaler.models.checkpoint import ModelFileError
    from upscaler.process import TextureOptions
    from upscaler.rules import Rules, RulesError
    from upscaler.state import RunState, StateError
    from upscaler.worklist import PlanError, build_worklist
    from upscaler.worklist import shard as take_shard

    if p.native and p.output_scale is not None:
        raise click.UsageError("--native and --output-scale exclude each other")
    if p.output_scale is not None and not 0 < p.output_scale <= 64:
        raise click.BadParameter("must be in (0, 64]", param_hint="--output-scale")
    shard_spec = _parse_shard(p.shard)
    out_format = choices.FORMATS["." + p.fmt] if p.fmt else None
    try:
        rules = Rules.load(p.rules_file) if p.rules_file is not None else Rules()
    except RulesError as exc:
        raise click.UsageError(shown(exc)) from None
    try:  # the registry files ($UPSCALE_KNOWN_MODELS) are read here, once, before any plan
        known.known_models()
    except ValueError as exc:
        raise click.UsageError(shown(exc)) from None
    name = p.model_name
    if not name:
        try:
            name = sources.default_model(p.scale or 4)
        except ModelFileError as exc:
            raise click.BadParameter(exc.reason, param_hint="--scale") from None
    device = _pick_device(p.device)
    try:
        state = RunState(p.output.resolve())
    except StateError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        worklist = build_worklist(
            list(p.inputs), p.output, out_format, rules.format_for, state.written_by_us
        )
        jobs = worklist.jobs
        if shard_spec is not None:
            jobs = take_shard(jobs, *shard_spec)
    except PlanError as exc:
        raise click.UsageError(shown(exc)) from None
    source = sources.resolve(name)
    report, review = _side_files(p, source.path, shard_spec, worklist)
    texture = TextureOptions(
        tile=p.tile,
        seamless=p.seamless,
        native=p.native,
        output_scale=p.output_scale,
        map=p.map_kind,
        alpha=p.alpha_mode,
        palette=p.palette,
        dds_format=p.dds_format,
        dds_quality=p.dds_quality,
    )
    source = _fetch_known(source, p.scale, p.no_download, p.quiet)
    upscaler = _load(source, device, p.precision, p.max_memory)
    if p.scale is not None and upscaler.scale != p.scale:
        raise click.UsageError(f"--scale {p.scale} but model {name} is x{upscaler.scale}")

    if not p.quiet and p.precision == "auto":
        note = _precision_note(upscaler)
        if note:
            console.line(note)
    for path, reason in worklist.notes:
        console.line(f"note: {path}: {reason}")
    if worklist.duplicates:
        console.line(f"note: {worklist.duplicates} file(s) named more than once; each done once")
    if p.dry_run:
        dry_run(console, jobs, upscaler, texture, rules, p.skip_existing, state, worklist)
        return EXIT_OK
    from upscaler.runner import RunOptions

    batch = p.max_batch or (GPU_BATCH if upscaler.device.type == "cuda" else 1)
    options = RunOptions(p.output, p.skip_existing, p.png_level, batch, p.workers)
    where: dict[str, object] = {"cwd": os.getcwd(), "output": str(p.output.resolve())}
    where["inputs"] = [str(path.resolve()) for path in p.inputs]
    files = RunFiles(report, review, where)
    return run_batch(console, jobs, upscaler, texture, rules, options, p.quiet, files, worklist)


def _side_files(
    p: Params, model_file: Path | None, shard_spec: tuple[int, int] | None, worklist: WorkList
) -> tuple[Path | None, ReviewPaths | None]:
    """Where the report and the review page go (this shard's names), each checked against the
    files the run reads and writes (``model_file``: None for a known model not fetched yet); a
    usage error where one would replace any of them."""
    from upscaler.worklist import PlanError

    others = [f for f in (model_file, p.rules_file) if f is not None]  # inputs too
    report = _shard_name(p.report, shard_spec) if p.report is not None else None
    try:
        if report is not None:
            worklist.check_report(report, [*p.inputs, *others], p.output)
    except PlanError as exc:
        raise click.UsageError(shown(exc)) from None
    if p.review is None:
        return report, None
    from upscaler.review import ReviewError, check_paths

    if p.dry_run:
        raise click.UsageError("--review needs a run; --dry-run writes nothing")
    keep = [
        ("the model file", model_file),
        ("the rules file", p.rules_file),
        ("the report", report),
    ]
    sides = [(label, path) for label, path in keep if path is not None]
    try:
        return report, check_paths(_shard_name(p.review, shard_spec), p.output, p.inputs, sides)
    except ReviewError as exc:
        raise click.UsageError(str(exc)) from None


def _precision_note(upscaler: Upscaler) -> str | None:
    """Why ``auto`` chose fp32 on a device with a faster precision, and what it would change."""
    import torch

    from upscaler.engine.load import fast_dtypes
    from upscaler.models.descriptor import RULE

    if upscaler.dtype != torch.float32:
        return None
    info, names = upscaler.info, {torch.bfloat16: "bf16", torch.float16: "fp16"}
    supported = {torch.bfloat16: info.supports_bf16, torch.float16: info.supports_fp16}
    measured = [
        d for d in fast_dtypes(upscaler.device) if supported[d] and info.fidelity(d).psnr > 0
    ]
    if not measured:  # nothing faster here, or not measured: nothing to explain
        return None
    dtype = measured[0]
    return (
        f"note: {info.name} runs in fp32: in {names[dtype]} its output is "
        f"{info.fidelity(dtype)} (auto needs {RULE}); --precision {names[dtype]} runs faster "
        "here, with those differences"
    )


def _shard_name(path: Path, shard_spec: tuple[int, int] | None) -> Path:
    """``run.json`` -> ``run-shard1of2.json``: each shard writes its own report and page."""
    if shard_spec is None:
        return path
    return path.with_name(f"{path.stem}-shard{shard_spec[0] + 1}of{shard_spec[1]}{path.suffix}")


def _fetch_known(
    source: ModelSource, scale: int | None, no_download: bool, quiet: bool
) -> ModelSource:
    """A known model's source with its cached file (downloading it, with a progress bar); any
    other source as is."""
    from upscaler.models import known

    model = source.known_model
    if model is None:
        return source
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
        fetched = source.fetch(
            download=False if no_download else None, progress=None if quiet else progress
        )
    except known.ModelUnavailableError as exc:
        raise FatalCommandError(str(exc)) from None
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if bar is not None:
        click.echo(f"saved {fetched.path}", err=True)
    return fetched


def _pick_device(value: str) -> torch.device:
    """The torch device for ``--device``; one that is not here is a usage error."""
    from upscaler.engine.load import pick_device

    try:
        return pick_device(_device(value))
    except RuntimeError as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from None


def _load(
    source: ModelSource, device: torch.device, precision: str, max_memory: int | None
) -> Upscaler:
    from upscaler.engine.load import load_model
    from upscaler.models.checkpoint import ModelFileError

    try:
        return load_model(source, device=device, dtype=precision, max_memory=max_memory)
    except (ModelFileError, ValueError, RuntimeError) as exc:
        raise FatalCommandError(f"model refused: {exc}") from None
    except Exception as exc:  # a loader bug on a hostile file: still one line, still refused
        raise FatalCommandError(
            f"model refused: {source.name}: {type(exc).__name__}: {exc}"
        ) from None
