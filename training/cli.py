"""``upscale-train``: prepare data, pack crops, fit, evaluate and export models.

The CLI parses and reports; the work is done in the modules it calls.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from upscaler.formats.image import ImageReadError
from upscaler.worklist import inside, overwrites, real_path

from .checkpoint import CheckpointError
from .config import RECIPES, Config, ConfigError, load_config, recipe_names
from .pack import PackError


def _fail(message: str, code: int = 2) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _load_config(name: str, overrides: list[str] | None = None) -> Config:
    """``load_config``, whose error for a mistyped recipe name suggests the closest recipes."""
    try:
        return load_config(name, overrides)
    except ConfigError as exc:
        if Path(name).is_file() or (RECIPES / f"{name}.toml").is_file():
            raise
        from upscaler.models.sources import did_you_mean

        hint = did_you_mean(name, {n: n for n in recipe_names()})
        raise ConfigError(f"{exc}{hint}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Train texture upscaling models (PSNR stage, then GAN stage) and export them."""


@main.command()
@click.argument("config", type=str)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. --set optim.learning_rate=1e-4 (repeatable).",
)
@click.option("--d-steps", type=int, help="D updates per cycle (optim.d_steps).")
@click.option("--g-steps", type=int, help="G updates per cycle (optim.g_steps).")
@click.option("--quiet", "-q", is_flag=True, help="No progress line.")
def fit(
    config: str, overrides: tuple[str, ...], d_steps: int | None, g_steps: int | None, quiet: bool
) -> None:
    """Train from CONFIG (a .toml file or a recipe name such as compact-x4-psnr).

    Resumes automatically from the newest readable checkpoint of the run. Under torchrun, every
    process trains on its share of each batch (DDP).

    \b
    Common --set keys (any key of the recipe can be set; a typo lists the valid ones):
      run.max_steps=5000    when to stop (compact-x4-psnr's 200,000 are meant for a GPU)
      run.name=my-x4        the run folder, runs/my-x4 (default: the recipe's name);
                            the same name resumes that run, a new name starts afresh
      val.folder=data/val   held-out textures to validate on ('' for none)
      data.crop_size=64     the training crop side; packed crops must be at least this
      model.init_from=PATH  start from a run folder, checkpoint or model file
    """
    from . import ddp
    from .trainer import Trainer

    extra = list(overrides)
    extra += [f"optim.d_steps={d_steps}"] if d_steps is not None else []
    extra += [f"optim.g_steps={g_steps}"] if g_steps is not None else []
    extra += ["run.progress=false"] if quiet else []
    try:
        cfg = _load_config(config, extra)
    except ConfigError as exc:
        _fail(str(exc))
    dist = ddp.setup(cfg.run.device)
    try:
        result = Trainer(cfg, dist, log=lambda m: click.echo(m, err=True)).fit()
    except (
        CheckpointError,
        ConfigError,
        ValueError,
        FileNotFoundError,
        ImageReadError,
        PackError,
    ) as exc:
        _fail(str(exc))
    finally:
        ddp.teardown(dist)
    if dist.main:
        where = f"; checkpoint {result.checkpoint}" if result.checkpoint else ""
        click.echo(
            f"{result.status} at step {result.step}{where}. {result.message}".strip(), err=True
        )
    if result.status == "diverged":
        sys.exit(3)
    if result.status == "interrupted":
        sys.exit(130)


WEIGHTS = click.option(
    "--weights",
    type=click.Choice(["ema", "live"]),
    default="ema",
    show_default=True,
    help="A checkpoint's EMA (averaged) or live (last trained) generator weights.",
)


@main.command("eval")
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.argument("data", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--crop",
    "crop_size",
    type=int,
    default=None,
    help="Evaluate centre crops of this size (0: whole images). Default: whole images, or on "
    "the run's own validation folder its val.crop_size (repeating the figures fit logged).",
)
@click.option(
    "--max-images",
    type=int,
    default=None,
    help="At most this many images (0: all). Default: all, or on the run's own validation "
    "folder its val.max_images.",
)
@click.option(
    "--degrade",
    "degrade_from",
    metavar="RECIPE",
    help="Make the low-res inputs with this recipe's [degrade] mix (a recipe name or .toml) "
    "instead of the model's own: the same inputs for every model compared.",
)
@WEIGHTS
@click.option(
    "--fid",
    is_flag=True,
    help="Also FID and KID against the ground truths (Inception-v3 ImageNet weights from the "
    "torch hub cache).",
)
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the metrics as JSON.")
def eval_command(
    checkpoint: Path,
    data: Path,
    crop_size: int | None,
    max_images: int | None,
    degrade_from: str | None,
    weights: str,
    fid: bool,
    device: str,
    as_json: bool,
) -> None:
    """Measure CHECKPOINT (checkpoint, run folder or model file) on the images in DATA, beside
    bicubic and Lanczos upscales of the same inputs."""
    from upscaler.engine.load import pick_device

    from .evaluate import evaluate

    try:
        degrade = _load_config(degrade_from).degrade if degrade_from else None
        metrics = evaluate(
            checkpoint,
            data,
            crop_size=crop_size,
            max_images=max_images,
            device=pick_device(device),
            degrade=degrade,
            weights=weights,
            fid=fid,
        )
    except (CheckpointError, ConfigError, ValueError, FileNotFoundError) as exc:
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps(metrics, indent=2))
        return
    reference = metrics.pop("baselines")
    crop = metrics["crop_size"]
    click.echo(
        f"{metrics['images']} images ({f'{crop} px centre crops' if crop else 'whole'}), low-res "
        f"made with {'the [degrade] mix of ' + degrade_from if degrade_from else 'its own recipe'}"
        "; fit's validation logs the same figures on its folder with its crop and image count"
    )
    click.echo(f"{'':>18}  {'model':>10}" + "".join(f"  {name:>10}" for name in reference))
    for key, value in metrics.items():
        row = [value] + [reference[name].get(key, "") for name in reference]
        click.echo(f"{key:>18}  " + "  ".join(_cell(v) for v in row))
    if metrics.get("lpips", 0) is None:
        click.echo("(lpips: not measured, no pretrained AlexNet weights in the torch hub cache)")


def _cell(value: object) -> str:
    if value is None:
        return f"{'-':>10}"
    if isinstance(value, float):
        return f"{value:>10.4g}"
    return f"{value!s:>10}"


@main.command()
@click.argument("checkpoint", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--fp16", is_flag=True, help="Store half-precision weights (half the size).")
@click.option(
    "--onnx",
    "onnx_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write an ONNX model here.",
)
@WEIGHTS
def export(checkpoint: Path, out: Path, fp16: bool, onnx_path: Path | None, weights: str) -> None:
    """Write the generator of CHECKPOINT as OUT.safetensors (loads in ``upscale --model``).

    Our architectures are written in this project's format; spandrel's (span) as a plain state
    dict that spandrel, and so ``upscale``, chaiNNer and ComfyUI, load by themselves.
    """
    from .export import export_model, export_onnx, load_generator

    if out.suffix != ".safetensors":
        _fail(f"{out}: the model file must end in .safetensors")
    reads = [("the checkpoint it reads", checkpoint)] if checkpoint.is_file() else []
    for written, others in ((out, reads), (onnx_path, [*reads, ("the model file", out)])):
        clash = None if written is None else overwrites(written, others)
        if clash is not None:
            _fail(f"{written}: the export would overwrite {clash[0]}, {clash[1]}")
    try:
        info = export_model(checkpoint, out, fp16=fp16, weights=weights)
        if onnx_path is not None:
            clash = overwrites(onnx_path, [("the checkpoint it reads", Path(info["path"]))])
            if clash is not None:
                _fail(f"{onnx_path}: the export would overwrite {clash[0]}, {clash[1]}")
            channels = int(info["arch_config"].get("in_channels", 3))
            export_onnx(load_generator(checkpoint, weights)[0], onnx_path, in_channels=channels)
    except (CheckpointError, RuntimeError) as exc:
        _fail(str(exc))
    scale = info["arch_config"]["scale"]
    click.echo(
        f"wrote {out} ({info['arch']} x{scale}, step {info.get('step', '?')}, {weights} weights)"
    )


@main.command()
@click.argument("first", type=click.Path(exists=True, path_type=Path))
@click.argument("second", type=click.Path(exists=True, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--alpha",
    type=click.FloatRange(0, 1),
    required=True,
    help="Weight of SECOND: 0 gives FIRST, 1 gives SECOND.",
)
@WEIGHTS
def blend(first: Path, second: Path, out: Path, alpha: float, weights: str) -> None:
    """Write OUT.safetensors with every weight (1 - alpha) * FIRST + alpha * SECOND.

    ESRGAN's network interpolation: between a faithful and a sharp model of one architecture
    (model files, checkpoints or run folders), a model in between, with no training.
    """
    from .export import blend_models

    if out.suffix != ".safetensors":
        _fail(f"{out}: the model file must end in .safetensors")
    try:
        info = blend_models(first, second, alpha, out, weights)
    except (CheckpointError, RuntimeError) as exc:
        _fail(str(exc))
    click.echo(f"wrote {out} ({info['arch']} x{info['arch_config']['scale']}, alpha {alpha:g})")


@main.command()
@click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--min-size",
    type=int,
    default=64,
    show_default=True,
    help="Shortest side kept (old games' textures are 64-128 px).",
)
@click.option("--max-size", type=int, default=1024, show_default=True, help="Longest side cap.")
@click.option("--no-halve-jpeg", is_flag=True, help="Keep JPEG sources at full size.")
@click.option(
    "--duplicate-bits",
    type=int,
    default=12,
    show_default=True,
    help="Average-hash distance (of 256 bits) that counts as a duplicate.",
)
@click.option(
    "--keep-grayscale",
    is_flag=True,
    help="Keep gray images (dropped by default: mostly unnamed masks and height maps).",
)
@click.option("--workers", type=int, default=4, show_default=True)
@click.option(
    "--pack",
    "pack_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also cut packed training crops from the result into this .safetensors file.",
)
@click.option(
    "--crop",
    "crop_size",
    type=int,
    default=256,
    show_default=True,
    help="Packed crop side; smaller textures are prepared but not packed (train on the folder, "
    "or pack with --crop 64 and fit with --set data.crop_size=64).",
)
@click.option("--per-image", type=int, default=8, show_default=True)
@click.option(
    "--val",
    "val_folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="Hold out a few colour textures (--val-count, spread over the set, at most a quarter) "
    "in this folder instead of OUT, never packed: fit's val.folder.",
)
@click.option("--val-count", type=click.IntRange(min=1), default=8, show_default=True)
def prepare(
    src: Path,
    out: Path,
    min_size: int,
    max_size: int,
    no_halve_jpeg: bool,
    duplicate_bits: int,
    keep_grayscale: bool,
    workers: int,
    pack_path: Path | None,
    crop_size: int,
    per_image: int,
    val_folder: Path | None,
    val_count: int,
) -> None:
    """Build a training set in OUT from the unpacked game data in SRC."""
    from .licences import UNKNOWN
    from .prepare import PrepareOptions
    from .prepare import prepare as run_prepare

    options = PrepareOptions(
        min_size=min_size,
        max_size=max_size,
        halve_jpeg=not no_halve_jpeg,
        duplicate_bits=duplicate_bits,
        keep_grayscale=keep_grayscale,
        workers=workers,
    )
    for folder in (out, val_folder) if val_folder is not None else (out,):
        if inside(real_path(folder), real_path(src)):
            _fail(f"{folder}: the output must not lie inside the source folder {src}")
    if val_folder is not None and inside(real_path(val_folder), real_path(out)):
        _fail(f"--val {val_folder}: keep it out of OUT {out}, which training may read whole")
    prepared = run_prepare(
        src,
        out,
        options,
        report=lambda m: click.echo(m, err=True),
        val=val_folder,
        val_count=val_count,
    )
    licences = ", ".join(f"{n} {name}" for name, n in prepared.licences.items()) or "none"
    click.echo(
        ", ".join(f"{v} {k}" for k, v in prepared.counts.items())
        + f"; licences: {licences}; manifest: {out}/manifest.jsonl"
    )
    unknown = prepared.licences.get(UNKNOWN, 0)
    if unknown:
        why = (
            "no usr/share/doc/*/copyright above them in SRC"
            if prepared.has_copyright
            else f"{src} has no usr/share/doc/*/copyright"
        )
        click.echo(f"warning: {unknown} files have no licence record: {why}", err=True)
    if pack_path is not None:  # colour, normal and alpha maps (alpha's colour, bled under it)
        _pack(
            [out / kind for kind in ("color", "normal", "alpha") if (out / kind).is_dir()],
            pack_path,
            crop_size,
            per_image,
        )


@main.command()
@click.argument(
    "folders",
    nargs=-1,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The .safetensors file to write.",
)
@click.option("--crop", "crop_size", type=int, default=256, show_default=True)
@click.option("--per-image", type=int, default=8, show_default=True)
def pack(folders: tuple[Path, ...], out: Path, crop_size: int, per_image: int) -> None:
    """Cut training crops from FOLDERS once into one uint8 file (fast loading)."""
    _pack(list(folders), out, crop_size, per_image)


def _pack(folders: list[Path], out: Path, crop_size: int, per_image: int) -> None:
    from .pack import SMALL_ADVICE, PackError, pack_folders

    try:
        packed = pack_folders(
            folders,
            out,
            crop_size=crop_size,
            per_image=per_image,
            report=lambda m: click.echo(m, err=True),
        )
    except PackError as exc:
        _fail(str(exc))
    size = out.stat().st_size / 2**20
    click.echo(f"wrote {packed.crops} crops of {crop_size} px to {out} ({size:.0f} MiB)")
    if packed.too_small:
        click.echo(
            f"left out of the pack: {packed.too_small} of {packed.textures} textures, smaller "
            f"than the {crop_size} px crop on their short side (named above): {SMALL_ADVICE}"
        )


if __name__ == "__main__":
    main()
