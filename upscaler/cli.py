"""The ``upscale`` command. It parses, reports and sets exit codes; the work happens elsewhere.

Exit codes: 0 all done (or skipped), 1 some files failed, 2 usage error (nothing written), 3 fatal
(model refused, output unwritable, disk full), 130 interrupted (Ctrl-C: the summary so far is
printed; rerun with ``--skip-existing`` to resume); SIGTERM and SIGHUP stop a run the same way,
with 143 and 129.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from upscaler import options as choices
from upscaler.arguments import Arguments, declare
from upscaler.batch import EXIT_FATAL, EXIT_INTERRUPTED, EXIT_OK, dry_run, run_batch
from upscaler.console import Console, shown

if TYPE_CHECKING:
    import torch

    from upscaler.engine.pipeline import Upscaler
    from upscaler.models.sources import ModelSource
    from upscaler.plan import RunFiles
    from upscaler.process import TextureOptions
    from upscaler.rules import Rules
    from upscaler.state import RunState
    from upscaler.worklist import Job, WorkList
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


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@declare
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
                code = _command(console, Arguments(**params))  # type: ignore[arg-type]
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


def _command(console: Console, args: Arguments) -> int:
    from upscaler.models import known, sources
    from upscaler.plan import RunOptions, make_plan

    texture = _texture(args)
    shard_spec = _parse_shard(args.shard)
    rules = _rules(args.rules)
    try:  # the registry files ($UPSCALE_KNOWN_MODELS) are read here, once, before any plan
        known.known_models()
    except ValueError as exc:
        raise click.UsageError(shown(exc)) from None
    if args.sharp and args.model:
        raise click.UsageError("--sharp picks a shipped model; it cannot go with --model")
    name = args.model or _default_model(args.scale, sharp=args.sharp)
    device = _pick_device(args.device)
    state = _state(args.output, args.inputs)
    worklist, jobs = _worklist(args, rules, state, shard_spec)
    source = sources.resolve(name)
    side = _side_files(args, source.path, shard_spec, worklist)
    source = _fetch_known(source, args.scale, args.no_download, args.quiet)
    upscaler = _load(source, device, args.precision, args.max_memory)
    if args.scale is not None and upscaler.scale != args.scale:
        raise click.UsageError(f"--scale {args.scale} but model {name} is x{upscaler.scale}")
    _print_notes(console, args, upscaler, worklist)
    batch = args.max_batch or (GPU_BATCH if upscaler.device.type == "cuda" else 1)
    plan = make_plan(
        jobs,
        upscaler,
        args.fill(RunOptions, output_root=args.output, max_batch=batch),
        texture=texture,
        rules=rules,
        state=state,
        problems=worklist.problems,
        side=side,
        recipes=not args.dry_run,
    )
    if args.dry_run:
        from upscaler.engine.load import precision_name

        info = f"x{upscaler.scale}, {precision_name(upscaler.dtype)} on {upscaler.device}"
        blocks = upscaler.for_blocks
        if blocks is not None:
            info += (
                f"; block-compressed textures: {blocks.info.name}, {precision_name(blocks.dtype)}"
            )
        console.line(f"model: {upscaler.info.name} ({info})", err=False)
        dry_run(console, plan)
        return EXIT_OK
    return run_batch(console, upscaler, plan, args.quiet, args.max_memory)


def _texture(args: Arguments) -> TextureOptions:
    """The run's texture options, as ``TextureOptions`` checks them (``--native`` and
    ``--output-scale`` exclude each other)."""
    from upscaler.process import TextureOptions

    try:
        return args.fill(TextureOptions)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _rules(path: Path | None) -> Rules:
    from upscaler.rules import Rules, RulesError

    try:
        return Rules.load(path) if path is not None else Rules()
    except RulesError as exc:
        raise click.UsageError(shown(exc)) from None


def _default_model(scale: int | None, *, sharp: bool = False) -> str:
    from upscaler.models import sources
    from upscaler.models.checkpoint import ModelFileError

    try:
        return sources.default_model(scale or 4, sharp=sharp)
    except ModelFileError as exc:
        raise click.BadParameter(exc.reason, param_hint="--scale") from None


def _state(output: Path, inputs: Sequence[Path]) -> RunState:
    from upscaler.state import RunState, StateError

    try:
        return RunState(output.resolve(), inputs=[Path(p) for p in inputs])
    except StateError as exc:
        raise click.UsageError(str(exc)) from None


def _worklist(
    args: Arguments, rules: Rules, state: RunState, shard_spec: tuple[int, int] | None
) -> tuple[WorkList, list[Job]]:
    """Every file of the inputs, and this shard's jobs among them."""
    from upscaler.worklist import PlanError, build_worklist, shard

    out_format = choices.FORMATS["." + args.format] if args.format else None
    try:
        inputs = list(args.inputs)
        worklist = build_worklist(
            inputs, args.output, out_format, rules.format_for, state.written_by_us
        )
        jobs = worklist.jobs if shard_spec is None else shard(worklist.jobs, *shard_spec)
    except PlanError as exc:
        raise click.UsageError(shown(exc)) from None
    return worklist, jobs


def _print_notes(console: Console, args: Arguments, upscaler: Upscaler, worklist: WorkList) -> None:
    if not args.quiet and args.precision == "auto":
        for engine in (upscaler, upscaler.for_blocks):
            note = _precision_note(engine) if engine is not None else None
            if note:
                console.line(note)
    for path, reason in worklist.notes:
        console.line(f"note: {path}: {reason}")
    if worklist.duplicates:
        console.line(f"note: {worklist.duplicates} file(s) named more than once; each done once")


def _side_files(
    args: Arguments, model_file: Path | None, shard_spec: tuple[int, int] | None, worklist: WorkList
) -> RunFiles:
    """Where the report and the review page go (this shard's names), each checked against the
    files the run reads and writes (``model_file``: None for a known model not fetched yet); a
    usage error where one would replace any of them."""
    from upscaler.plan import RunFiles
    from upscaler.worklist import PlanError

    others = [f for f in (model_file, args.rules) if f is not None]  # inputs too
    report = _shard_name(args.report, shard_spec) if args.report is not None else None
    try:
        if report is not None:
            worklist.check_report(report, [*args.inputs, *others], args.output)
    except PlanError as exc:
        raise click.UsageError(shown(exc)) from None
    if args.dry_run:
        if args.review is not None:
            raise click.UsageError("--review needs a run; --dry-run writes nothing")
        return RunFiles(report)
    where: dict[str, object] = {"cwd": os.getcwd(), "output": str(args.output.resolve())}
    where["inputs"] = [str(path.resolve()) for path in args.inputs]
    if args.review is None:
        return RunFiles(report, None, where)
    from upscaler.review import ReviewError, check_paths

    keep = [
        ("the model file", model_file),
        ("the rules file", args.rules),
        ("the report", report),
    ]
    sides = [(label, path) for label, path in keep if path is not None]
    try:
        review = check_paths(_shard_name(args.review, shard_spec), args.output, args.inputs, sides)
    except ReviewError as exc:
        raise click.UsageError(str(exc)) from None
    return RunFiles(report, review, where)


def _precision_note(upscaler: Upscaler) -> str | None:
    """Why ``auto`` chose fp32 on a device with a faster precision, and what it would change."""
    import torch

    from upscaler.engine.load import fast_dtypes, precision_name
    from upscaler.models.descriptor import RULE

    if upscaler.dtype != torch.float32:
        return None
    info = upscaler.info
    supported = {torch.bfloat16: info.supports_bf16, torch.float16: info.supports_fp16}
    measured = [
        d for d in fast_dtypes(upscaler.device) if supported[d] and info.fidelity(d).psnr > 0
    ]
    if not measured:  # nothing faster here, or not measured: nothing to explain
        return None
    dtype, name = measured[0], precision_name(measured[0])
    return (
        f"note: {info.name} runs in fp32: in {name} its output is "
        f"{info.fidelity(dtype)} (auto needs {RULE}); --precision {name} runs faster "
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
