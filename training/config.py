"""Training configuration: frozen dataclasses with defaults in code, loaded from TOML.

A recipe file has one table per section (``[run]``, ``[model]``, ``[data]``, ``[degrade]``,
``[loss]``, ``[optim]``, ``[discriminator]``, ``[val]``). Unknown keys are rejected with the list of
valid ones; values are type-checked. Any value can be overridden from the command line with
``section.key=value`` (the value is read as TOML, bare words as strings). The resolved config is
saved, as a plain dict, with every checkpoint and run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from upscaler.schema import from_dict

from .contracts import GAN_TYPES, refusals

PIXEL_LOSSES = ("l1", "charbonnier")
DISCRIMINATORS = ("patchgan", "unet")
SCHEDULES = ("constant", "multistep", "cosine")
DOWN_KERNELS = ("area", "bilinear", "bicubic", "lanczos", "nearest")
BC_FORMATS = ("bc1", "bc3")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
MAX_SCALE = 16
MAX_WORKERS = 64  # loader processes: more only exhausts memory and file handles, and hangs
DEGRADE_WHERE = ("auto", "loader", "trainer")
NORMAL_CONVENTIONS = ("opengl", "directx")
# Validation metrics, and whether higher is better (for run.best_metric).
METRICS = {
    "psnr_y": True,
    "ssim_y": True,
    "lpips": False,
    "normal_angle_deg": False,
    "seam_error": False,
    "fid": False,
    "kid": False,
}


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the key and what is allowed."""


def int_or(value: int | str, default: int) -> int:
    return value if isinstance(value, int) else default


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _range(name: str, pair: tuple[float, float], low: float, high: float) -> None:
    if len(pair) != 2 or not low <= pair[0] <= pair[1] <= high:
        raise ConfigError(f"{name} must be [min, max] with {low} <= min <= max <= {high}")


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    out_dir: str = "runs"  # checkpoints, samples and metrics go to out_dir/name
    seed: int = 0
    max_steps: int = 100_000
    log_every: int = 50
    val_every: int = 5_000
    save_every: int = 5_000
    keep_last: int = 3
    best_metric: str = "psnr_y"  # keep checkpoints/best.pt by this validation metric ("": off)
    max_bad_steps: int = 10  # non-finite losses in a row before the run stops
    deterministic: bool = False  # bit-exact resume on CPU; slower on GPU
    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast where native (GPU, AVX512-BF16/AMX), else fp32
    channels_last: bool = True  # on CUDA (on CPU it measured no faster for training)
    compile: bool = False  # torch.compile the generator
    progress: bool = True
    threads: int = 0  # CPU threads for torch in the main process (0: torch's default)

    def __post_init__(self) -> None:
        _choice("run.precision", self.precision, PRECISIONS)
        if self.name in ("", ".", "..") or any(c in self.name for c in "/\\\0:"):
            raise ConfigError(
                f"run.name must be a plain folder name (no / \\ : or ..); got {self.name!r}"
            )
        if self.best_metric:
            _choice("run.best_metric", self.best_metric, tuple(METRICS))
        if self.max_steps < 0 or self.keep_last < 1 or self.max_bad_steps < 1:
            raise ConfigError("run.max_steps >= 0, run.keep_last >= 1, run.max_bad_steps >= 1")
        if min(self.log_every, self.val_every, self.save_every) < 1:
            raise ConfigError("run.log_every, val_every and save_every must be >= 1")
        if self.threads < 0:
            raise ConfigError(f"run.threads must be >= 0 (0: torch's default); got {self.threads}")


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "compact"  # compact, rrdb (ours) or span (spandrel's SPAN)
    scale: int = 4
    num_features: int | None = None  # None: the architecture's default
    num_blocks: int | None = None
    growth_channels: int | None = None  # rrdb only
    activation: str | None = None  # compact only
    options: dict[str, Any] = field(default_factory=dict)  # other hyper-parameters, by name
    icnr: bool = True  # ICNR init of the pixel-shuffle conv (compact): no checkerboard at step 0
    interp_init: bool = False  # compact: start as a bicubic-like upscaler, learn the residual
    # Weights to start from: a checkpoint, a run folder, or any generator file spandrel can load
    # (.safetensors, .pth). Strict: every tensor must fit (a scale change keeps the upsampler);
    # false: load what fits by name and shape, and report what is missing or left over.
    init_from: str = ""
    init_strict: bool = True
    # Parameters kept as loaded, by name prefix (e.g. "conv_1."): a first conv whose weights hold
    # a folded colour normalisation is far smaller than the rest, and Adam, which moves every
    # weight by about the learning rate, would wreck it.
    frozen: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        from upscaler.models import ARCHITECTURES  # torch: once a recipe is read, not for --help

        _choice("model.arch", self.arch, tuple(ARCHITECTURES))
        if not 1 <= self.scale <= MAX_SCALE:
            raise ConfigError(f"model.scale must be 1 to {MAX_SCALE}; got {self.scale}")
        if self.interp_init and self.arch != "compact":
            raise ConfigError("model.interp_init is for the compact architecture only")

    def arch_config(self) -> dict[str, Any]:
        """The fields the architecture's config takes, leaving out unset ones."""
        names = ("num_features", "num_blocks", "growth_channels", "activation")
        values = {n: getattr(self, n) for n in names if getattr(self, n) is not None}
        return {"scale": self.scale, **values, **self.options}


@dataclass(frozen=True)
class DataConfig:
    train: tuple[str, ...] = ()  # folders of HR images or packed-crop files (.safetensors)
    train_lq: str = ""  # paired mode: folder of LR images matching ``train`` by relative name
    crop_size: int = 256  # GT crop side; the LR crop is crop_size / scale
    batch_size: int = 16  # per process
    num_workers: int | str = "auto"  # loader processes; auto: from the CPU count (see workers())
    wrap_prob: float = 0.5  # share of crops from tileable images taken across the wrap seam
    flip: bool = True
    rotate: bool = True
    normal_convention: str = "opengl"  # how normal maps' green channel points (for rotations)
    min_crop_std: float = 0.0  # re-draw crops flatter than this (0..1 units), at most 4 times
    # Share of colour crops drawn over a flat white, black or random colour through a hard-edged
    # random mask (training.augment.matte): sprites, UI and decals on flat backgrounds, where
    # SPAN x2's features blew up into noise (issue 22's follow-up: Warzone 2100's tiles).
    matte_prob: float = 0.0

    def __post_init__(self) -> None:
        _choice("data.normal_convention", self.normal_convention, NORMAL_CONVENTIONS)
        if isinstance(self.num_workers, str) and self.num_workers != "auto":
            raise ConfigError(f"data.num_workers must be >= 0 or auto; got {self.num_workers!r}")
        if self.crop_size < 4 or self.batch_size < 1 or int_or(self.num_workers, 0) < 0:
            raise ConfigError("data.crop_size >= 4, data.batch_size >= 1, num_workers >= 0")
        if int_or(self.num_workers, 0) > MAX_WORKERS:
            raise ConfigError(
                f"data.num_workers must be at most {MAX_WORKERS} (or auto); got {self.num_workers}"
            )
        if not 0 <= self.wrap_prob <= 1:
            raise ConfigError("data.wrap_prob must be in [0, 1]")
        if not 0 <= self.matte_prob <= 1:
            raise ConfigError("data.matte_prob must be in [0, 1]")

    def workers(self, world: int = 1) -> int:
        """Loader processes per training process: ``num_workers``, or for ``auto`` one per CPU
        core this process can use, less one for the training loop itself, at most 8."""
        if isinstance(self.num_workers, int):
            return self.num_workers
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
        return max(0, min(8, cores // max(1, world) - 1))


@dataclass(frozen=True)
class DegradeConfig:
    # Where blur, resize and noise run: "trainer" batches them on the training device (kornia);
    # "loader" runs everything in the workers; "auto": trainer on a GPU, else loader. Samples
    # that need a codec (palette, BC, JPEG) are always made whole in the workers, on CPU.
    where: str = "auto"
    down_kernels: tuple[str, ...] = DOWN_KERNELS
    down_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.2, 1.5)  # in GT pixels, applied before the resize
    blur_aniso_prob: float = 0.0  # of the blurs: an elongated, turned Gaussian (Real-ESRGAN's)
    noise_prob: float = 0.0  # camera-style Gaussian noise; off for game textures
    noise_sigma: tuple[float, float] = (1.0, 10.0)  # in 8-bit levels
    noise_gray_prob: float = 0.4
    jpeg_prob: float = 0.0
    jpeg_quality: tuple[float, float] = (75.0, 95.0)
    bc_prob: float = 0.0  # block compression round trip of the LR
    bc_formats: tuple[str, ...] = BC_FORMATS
    palette_prob: float = 0.0
    palette_colors: tuple[float, float] = (16.0, 256.0)
    dither_prob: float = 0.5
    # Colour augmentation of the ground truth (and so of the input made from it); not normals.
    colour_prob: float = 0.0
    colour_brightness: tuple[float, float] = (-0.05, 0.05)  # added
    colour_contrast: tuple[float, float] = (0.9, 1.1)  # factor around the mean
    colour_saturation: tuple[float, float] = (0.8, 1.2)  # factor
    colour_hue: tuple[float, float] = (-0.03, 0.03)  # turns of the colour circle

    def __post_init__(self) -> None:
        _choice("degrade.where", self.where, DEGRADE_WHERE)
        for kernel in self.down_kernels:
            _choice("degrade.down_kernels", kernel, DOWN_KERNELS)
        for fmt in self.bc_formats:
            _choice("degrade.bc_formats", fmt, BC_FORMATS)
        if len(self.down_weights) != len(self.down_kernels) or not self.down_kernels:
            raise ConfigError("degrade.down_weights needs one weight per entry of down_kernels")
        if not all(0 <= w < math.inf for w in self.down_weights) or not sum(self.down_weights):
            raise ConfigError(
                f"degrade.down_weights must be >= 0, finite, and not all 0; got {self.down_weights}"
            )
        if not self.bc_formats:
            raise ConfigError("degrade.bc_formats must name at least one format")
        probabilities = ("blur_prob", "blur_aniso_prob", "noise_prob", "noise_gray_prob")
        for name in (*probabilities, "jpeg_prob", "bc_prob", "colour_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"degrade.{name} must be in [0, 1]")
        if not 0 <= self.palette_prob <= 1 or not 0 <= self.dither_prob <= 1:
            raise ConfigError("degrade.palette_prob and dither_prob must be in [0, 1]")
        _range("degrade.blur_sigma", self.blur_sigma, 0.0, 10.0)
        _range("degrade.noise_sigma", self.noise_sigma, 0.0, 255.0)
        _range("degrade.jpeg_quality", self.jpeg_quality, 1.0, 100.0)
        _range("degrade.palette_colors", self.palette_colors, 2.0, 256.0)
        _range("degrade.colour_brightness", self.colour_brightness, -1.0, 1.0)
        _range("degrade.colour_contrast", self.colour_contrast, 0.0, 10.0)
        _range("degrade.colour_saturation", self.colour_saturation, 0.0, 10.0)
        _range("degrade.colour_hue", self.colour_hue, -0.5, 0.5)


@dataclass(frozen=True)
class LossConfig:
    pixel: str = "l1"
    pixel_weight: float = 1.0
    colour_weight: float = 0.0  # colour consistency against the LR input
    step_weight: float = 0.0  # local step statistics per phase of the texel and block grid
    step_window: int = 32  # HR pixels per side of the blocks the step statistics average over
    checker_weight: float = 0.0  # local 2x2 checker energy above the truth's (screen door)
    lattice_weight: float = 0.0  # a fine pattern locked to the output's texel lattice (hatch)
    # Output beyond [0, 1] on hostile inputs (losses.hostile_inputs: full-contrast one-pixel
    # patterns, alone or in blobs on flat ground), a batch of range_count per step: no truth is
    # needed, only that the network does not blow up on them.
    range_weight: float = 0.0
    range_count: int = 4
    lpips_weight: float = 0.0  # needs pretrained AlexNet weights in the torch hub cache
    vgg_weight: float = 0.0  # needs pretrained VGG19 weights in the torch hub cache
    # Features of a pretrained SPAN SR network (training/perceptual.py SRFeatures): a perceptual
    # term that needs no ImageNet weights.
    sr_feature_weight: float = 0.0
    sr_feature_model: str = "../shared/peers/spanx4_ch48.safetensors"
    sr_feature_blocks: int = 2
    # Fidelity at the input's resolution only (losses.low_pass_loss): holds colours and shading
    # to the truth without pulling invented detail towards the blurred average.
    low_pass_weight: float = 0.0
    # The fine detail of a frozen teacher model's output (losses.detail_loss; perceptual.Teacher).
    # Its licence carries over to the model trained.
    detail_weight: float = 0.0
    detail_teacher: str = ""
    gan_type: str = "nonsaturating"
    gan_weight: float = 0.0  # 0 with feature_match_weight 0: the PSNR stage (no discriminator)
    feature_match_weight: float = 0.0
    gp_weight: float = 10.0  # wgan-gp only
    r1_weight: float = 0.0  # R1 (Mescheder et al. 2018): gamma of (gamma/2) E||grad D(real)||^2
    clip_value: float = 0.0  # wgan: D's effective weights kept in [-c, c] (0: off)

    def __post_init__(self) -> None:
        _choice("loss.pixel", self.pixel, PIXEL_LOSSES)
        _choice("loss.gan_type", self.gan_type, GAN_TYPES)
        weights = (
            self.pixel_weight,
            self.colour_weight,
            self.step_weight,
            self.checker_weight,
            self.lattice_weight,
            self.range_weight,
            self.lpips_weight,
            self.vgg_weight,
            self.sr_feature_weight,
            self.low_pass_weight,
            self.detail_weight,
        )
        others = (self.gan_weight, self.feature_match_weight, self.clip_value, self.r1_weight)
        if min(*weights, *others, self.gp_weight) < 0:
            raise ConfigError("loss weights and loss.clip_value must be >= 0")
        if self.detail_weight > 0 and not self.detail_teacher:
            raise ConfigError("loss.detail_weight needs loss.detail_teacher (a model file)")

    @property
    def adversarial(self) -> bool:
        return self.gan_weight > 0 or self.feature_match_weight > 0


@dataclass(frozen=True)
class OptimConfig:
    learning_rate: float = 2e-4
    d_learning_rate: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    schedule: str = "multistep"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.5
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # cosine: final learning rate / initial
    grad_clip: float = 0.0  # max gradient norm (0: off); the norm is logged either way
    ema_decay: float = 0.999
    # Warm-up: the n-th update uses min(ema_decay, (1 + n) / (10 + n)) (TensorFlow's
    # ExponentialMovingAverage with num_updates), so short runs do not average in the init.
    ema_warmup: bool = True
    d_steps: int = 1  # per cycle of max(d_steps, g_steps) batches: D updates on the first d_steps
    g_steps: int = 1  # ... and G on the first g_steps

    def __post_init__(self) -> None:
        _choice("optim.schedule", self.schedule, SCHEDULES)
        for name in ("learning_rate", "d_learning_rate"):
            value = getattr(self, name)
            if not 0 < value < math.inf:  # nan fails too: the first step would poison every weight
                raise ConfigError(f"optim.{name} must be a finite number > 0; got {value}")
        if not 0 <= self.ema_decay < 1 or self.d_steps < 1 or self.g_steps < 1:
            raise ConfigError("optim.ema_decay in [0, 1); d_steps and g_steps >= 1")


@dataclass(frozen=True)
class DiscriminatorConfig:
    arch: str = "unet"
    num_features: int = 64
    num_layers: int = 3  # patchgan: stride-2 layers
    spectral_norm: bool = True  # on every conv but the first and the last (Real-ESRGAN's choice)
    # Weights to start from: a checkpoint or run folder (its discriminator) or a state dict file
    # (.safetensors, .pth; Real-ESRGAN's UNetDiscriminatorSN names are mapped). Strict as above.
    init_from: str = ""
    init_strict: bool = True

    def __post_init__(self) -> None:
        _choice("discriminator.arch", self.arch, DISCRIMINATORS)


@dataclass(frozen=True)
class ValConfig:
    folder: str = ""  # held-out HR images; empty: no validation
    max_images: int = 16
    crop_size: int = 256  # centre crop of each image (0: whole image)
    samples: int = 4  # images shown in the PNG sample grid
    seam_images: int = 4  # whole tileable textures checked for seams after upscaling
    # FID and KID (TF-GAN's definitions) of the outputs against the ground truths; needs
    # Inception-v3's ImageNet weights in the torch hub cache (training.distances).
    fid: bool = False

    def __post_init__(self) -> None:
        if self.max_images < 0 or self.crop_size < 0 or self.samples < 0 or self.seam_images < 0:
            raise ConfigError("val.max_images, crop_size, samples and seam_images must be >= 0")


@dataclass(frozen=True)
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    degrade: DegradeConfig = field(default_factory=DegradeConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    val: ValConfig = field(default_factory=ValConfig)

    def __post_init__(self) -> None:
        if self.data.crop_size % self.model.scale:
            raise ConfigError(
                f"data.crop_size {self.data.crop_size} must be a multiple of model.scale "
                f"{self.model.scale}"
            )
        period = 4 * self.model.scale
        if self.loss.step_weight and (
            self.loss.step_window % period or self.data.crop_size % self.loss.step_window
        ):
            raise ConfigError(
                f"loss.step_window {self.loss.step_window} must be a multiple of 4 x scale "
                f"({period}) and divide data.crop_size {self.data.crop_size}"
            )
        if self.val.crop_size % self.model.scale:
            raise ConfigError("val.crop_size must be a multiple of model.scale")
        if self.run.best_metric in ("fid", "kid") and not self.val.fid:
            raise ConfigError(f"run.best_metric {self.run.best_metric} needs val.fid = true")
        if self.loss.adversarial:
            problems = refusals(
                self.loss.gan_type,
                clip_value=self.loss.clip_value,
                spectral_norm=self.discriminator.spectral_norm,
                gp_weight=self.loss.gp_weight,
            )
            if problems:
                raise ConfigError("; ".join(problems))

    @property
    def run_dir(self) -> Path:
        return Path(self.run.out_dir) / self.run.name


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.learning_rate=1e-4"`` -> (["optim", "learning_rate"], 1e-4)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like section.key=value")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word: a string
    return key.strip().split("."), value


def merge_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for text in overrides:
        path, value = parse_override(text)
        table = data
        for part in path[:-1]:
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                raise ConfigError(f"override {text!r}: {part} is not a section")
        table[path[-1]] = value
    return data


def config_from_dict(data: dict[str, Any], overrides: list[str] | None = None) -> Config:
    return from_dict(Config, merge_overrides(data, overrides or []), error=ConfigError)


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a TOML recipe (a path, or a recipe name from ``training/configs``) plus overrides.

    A recipe may start from another: ``base = "compact-x4-psnr"`` (a recipe name, or a path
    relative to the file) takes every table of the base and replaces the keys this file sets.
    """
    path = resolve_recipe(path)
    data = read_recipe(path)
    try:
        return config_from_dict(data, overrides)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def read_recipe(path: Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The plain tables of the recipe at ``path``, its ``base`` chain merged in."""
    if path.resolve() in _chain:
        names = " -> ".join(p.name for p in (*_chain, path.resolve()))
        raise ConfigError(f"{path}: recipes inherit in a circle ({names})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: base must name a recipe or a .toml file, got {base!r}")
    try:
        parent = read_recipe(resolve_recipe(base, path.parent), (*_chain, path.resolve()))
    except ConfigError as exc:
        raise ConfigError(f"{path}: base {base!r}: {exc}") from None
    merged = {k: dict(v) if isinstance(v, dict) else v for k, v in parent.items()}
    for key, value in data.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


RECIPES = Path(__file__).parent / "configs"


def resolve_recipe(name: str | Path, folder: Path | None = None) -> Path:
    """A recipe file: ``name`` itself, ``name`` in ``folder`` (the including file's), or a
    recipe by name from ``training/configs``."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (folder / path, folder / f"{name}.toml") if folder else ():
        if candidate.is_file():
            return candidate
    recipe = RECIPES / f"{name}.toml"
    if recipe.is_file():
        return recipe
    known = ", ".join(recipe_names())
    raise ConfigError(f"{name}: no such config file or recipe (recipes: {known})")


def recipe_names() -> list[str]:
    return sorted(p.stem for p in RECIPES.glob("*.toml"))


def to_dict(config: Config) -> dict[str, Any]:
    """Plain nested dict (lists for tuples), safe for JSON and for the checkpoint."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        return value

    return {
        section.name: {
            k: plain(v) for k, v in dataclasses.asdict(getattr(config, section.name)).items()
        }
        for section in dataclasses.fields(config)
    }
