"""Training data: datasets of GT crops (from folders, packed crops or paired folders) and a
resumable sampler.

Every sample is a pure function of ``(seed, position)``: the sampler hands the dataset the global
position ``p`` of the sample in the run (``step * global_batch + i``) together with the image
index, and all the sample's randomness (crop, flips, degradation parameters) comes from a
``torch.Generator`` seeded with ``(seed, p)``. So batches do not depend on the number of workers or
processes, and resuming at step ``k`` only needs ``k``.

A sample is a dict: ``gt`` ``(3, S, S)`` uint8, ``normal`` bool, ``params`` (degradation
parameters, see ``training.recipe``), ``lq`` ``(3, S/scale, S/scale)`` uint8 and ``ready``: True
when ``lq`` was made in the worker (or read from a paired folder), False when it is left for the
trainer to make on its device (``training.recipe.finish_batch``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from upscaler.formats.image import ImageReadError, probe
from upscaler.texture.maps import kind_from_name
from upscaler.texture.seamless import detect_wrap

from .augment import augment, matte, sample_augmentation
from .config import Config, ConfigError, DataConfig, DegradeConfig
from .ddp import Dist
from .degradations import wrap_crop
from .images import list_images, load_texture
from .maps import KINDS
from .pack import PackedCrops, read_pack
from .recipe import degrade, jitter_colours, needs_cpu, sample_params, stack_params

MAX_REDRAWS = 4
MAX_SKIPS = 8


def sample_generator(seed: int, position: int) -> torch.Generator:
    """The generator owning all randomness of the sample at global ``position`` of a run."""
    return torch.Generator().manual_seed((seed * 0x9E3779B1 + position * 0x85EBCA77) % (1 << 62))


class ResumableSampler(Sampler[tuple[int, int]]):
    """Endless ``(position, index)`` pairs for one process, from global position ``start``.

    Each epoch is a fresh permutation of the dataset seeded by ``(seed, epoch)``. Of every global
    batch of ``batch_size * world`` positions, process ``rank`` takes its own contiguous slice.
    """

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        seed: int,
        start: int = 0,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if size < 1:
            raise ValueError("the training set is empty")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start, self.rank, self.world = start, rank, world

    def _order(self, epoch: int) -> torch.Tensor:
        return torch.randperm(self.size, generator=sample_generator(self.seed, -1 - epoch))

    def __iter__(self) -> Iterator[tuple[int, int]]:
        global_batch = self.batch_size * self.world
        epoch, order = -1, torch.empty(0, dtype=torch.long)
        batch_start = self.start
        while True:
            for j in range(self.batch_size):
                position = batch_start + self.rank * self.batch_size + j
                if position // self.size != epoch:
                    epoch = position // self.size
                    order = self._order(epoch)
                yield position, int(order[position % self.size])
            batch_start += global_batch


@dataclass(frozen=True)
class _Item:
    path: Path | None = None
    pack: int = -1
    row: int = -1


class TrainSet(Dataset[dict[str, object]]):
    """GT crops from folders of HR textures and packed-crop files, degraded on the fly."""

    def __init__(
        self,
        sources: tuple[str, ...],
        data: DataConfig,
        degrade_config: DegradeConfig,
        *,
        scale: int,
        seed: int,
        degrade_in_loader: bool,
    ) -> None:
        self.data, self.degrade_config = data, degrade_config
        self.scale, self.seed, self.degrade_in_loader = scale, seed, degrade_in_loader
        self.packs: list[PackedCrops] = []
        self.left_out: list[str] = []
        self.items: list[_Item] = []
        for source in sources:
            if Path(source).suffix == ".safetensors":
                pack = read_pack(source)
                if pack.crops.shape[1] < data.crop_size:
                    raise ValueError(
                        f"{source}: crops of {pack.crops.shape[1]} px are smaller "
                        f"than data.crop_size {data.crop_size}"
                    )
                self.items += [_Item(pack=len(self.packs), row=r) for r in range(len(pack))]
                self.packs.append(pack)
            else:
                self.items += [_Item(path=p) for p in self._usable(list_images([source]))]
        if not self.items:
            raise ValueError(f"no training images in {', '.join(sources) or '(none given)'}")

    def _usable(self, paths: list[Path]) -> list[Path]:
        """Files worth sampling: readable headers, big enough for a crop, not data maps by name.
        Only headers are read; what was left out and why is kept in ``self.left_out``."""
        kept = []
        for path in paths:
            if kind_from_name(path) == "data":
                self.left_out.append(f"{path}: a data map by its name (not trained on)")
                continue
            try:
                h, w = probe(path)
            except ImageReadError as exc:
                self.left_out.append(str(exc))
                continue
            if min(h, w) < self.data.crop_size:
                self.left_out.append(f"{path}: {w}x{h} is smaller than data.crop_size")
                continue
            kept.append(path)
        return kept

    def __len__(self) -> int:
        return len(self.items)

    def source(self, item: _Item) -> str:
        """Where ``item``'s pixels came from: the image file (for a packed crop, the file the
        pack recorded, with the crop's row and the pack), for reports that must name it."""
        if item.path is not None:
            return str(item.path)
        pack = self.packs[item.pack]
        owner = int(pack.sources[item.row])
        name = pack.source_paths[owner] if 0 <= owner < len(pack.source_paths) else "?"
        return f"{name} (crop {item.row} of {pack.path})"

    def _texture(self, item: _Item) -> tuple[torch.Tensor, str]:
        if item.path is None:
            pack = self.packs[item.pack]
            crop = torch.from_numpy(np.array(pack.crops[item.row])).permute(2, 0, 1)
            return crop, KINDS[int(pack.kinds[item.row])]
        pixels, kind = load_texture(item.path)
        if min(pixels.shape[:2]) < self.data.crop_size:
            raise ImageReadError(item.path, f"smaller than data.crop_size {self.data.crop_size}")
        return torch.from_numpy(pixels).permute(2, 0, 1), kind

    def _load(self, index: int) -> tuple[torch.Tensor, str, str]:
        """The texture at ``index``, its kind and its source; a file that has become unreadable
        is reported and the next one taken (deterministically), so one bad file does not end a
        long run."""
        for attempt in range(MAX_SKIPS):
            item = self.items[(index + attempt) % len(self.items)]
            try:
                return (*self._texture(item), self.source(item))
            except ImageReadError as exc:
                warnings.warn(f"skipped in training: {exc}", stacklevel=2)
        raise ImageReadError(self.items[index].path or "", f"{MAX_SKIPS} unreadable files in a row")

    def _crop(self, texture: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        size = self.data.crop_size
        h, w = texture.shape[-2:]
        wrap = detect_wrap(texture) if h > size or w > size else (False, False)
        wrap_now = float(torch.rand((), generator=generator)) < self.data.wrap_prob
        best, best_std = texture[:, :size, :size], -1.0
        for _ in range(MAX_REDRAWS):
            span_y = h if wrap[0] and wrap_now else h - size + 1
            span_x = w if wrap[1] and wrap_now else w - size + 1
            top = int(torch.randint(0, span_y, (), generator=generator))
            left = int(torch.randint(0, span_x, (), generator=generator))
            crop = wrap_crop(texture, top, left, size, size)
            std = float(crop.float().std()) / 255 if self.data.min_crop_std > 0 else 1.0
            if std > best_std:
                best, best_std = crop, std
            if std >= self.data.min_crop_std:
                break
        return best

    def __getitem__(self, key: tuple[int, int]) -> dict[str, object]:
        position, index = key
        generator = sample_generator(self.seed, position)
        texture, kind, source = self._load(index)
        normal = kind == "normal"
        gt = self._crop(texture, generator)
        aug = sample_augmentation(generator, flip=self.data.flip, rotate=self.data.rotate)
        if normal:  # the vectors turn with the picture
            turned = augment(
                gt.float() / 255, aug, normal=True, convention=self.data.normal_convention
            )
            gt = (turned * 255).round().to(torch.uint8)
        else:
            gt = augment(gt, aug)
            # drawn only when asked, so runs without mattes keep their random streams
            if self.data.matte_prob and float(torch.rand((), generator=generator)) < (
                self.data.matte_prob
            ):
                gt = matte(gt, generator)
        params = sample_params(self.degrade_config, generator, self.scale)
        batch, flag = stack_params([params]), torch.tensor([normal])
        # Codec round trips need CPU encoders: such samples are made whole here, whatever
        # degrade.where says; the others wait for the trainer's batched pass when it asks.
        ready = self.degrade_in_loader or bool(needs_cpu(batch, flag)[0])
        side = gt.shape[-1] // self.scale
        lq = torch.zeros(gt.shape[0], side, side, dtype=torch.uint8)
        if ready:
            jittered = jitter_colours(gt[None].float() / 255, batch, flag)
            gt = (jittered[0] * 255).round().to(torch.uint8)
            lq = (degrade(jittered, batch, self.scale, flag)[0] * 255).round().to(torch.uint8)
        sample = {"gt": gt, "lq": lq, "ready": ready, "normal": normal, "params": params}
        return {**sample, "source": source}


class PairedSet(Dataset[dict[str, object]]):
    """Aligned crops from HR and LR folders whose files match by relative path (any extension).

    Pairs whose sizes are not exactly ``scale`` apart are reported per file and left out.
    """

    def __init__(self, hr: str, lq: str, data: DataConfig, *, scale: int, seed: int) -> None:
        self.data, self.scale, self.seed = data, scale, seed
        lq_root, hr_root = Path(lq), Path(hr)
        by_stem = {p.relative_to(lq_root).with_suffix(""): p for p in list_images([lq_root])}
        self.pairs: list[tuple[Path, Path]] = []
        self.problems: list[str] = []
        for hr_path in list_images([hr_root]):
            lq_path = by_stem.get(hr_path.relative_to(hr_root).with_suffix(""))
            if lq_path is None:
                self.problems.append(f"{hr_path}: no low-res file with the same name in {lq}")
                continue
            try:
                (hh, hw), (lh, lw) = probe(hr_path), probe(lq_path)
            except ImageReadError as exc:
                self.problems.append(str(exc))
                continue
            if (hh, hw) != (lh * scale, lw * scale):
                self.problems.append(
                    f"{lq_path}: scale mismatch: {lw}x{lh} x{scale} = {lw * scale}x{lh * scale}, "
                    f"but the high-res file is {hw}x{hh}"
                )
            elif min(lh, lw) * scale < data.crop_size:
                self.problems.append(f"{hr_path}: smaller than data.crop_size {data.crop_size}")
            else:
                self.pairs.append((hr_path, lq_path))
        if not self.pairs:
            raise ValueError(f"no usable pairs in {hr} / {lq}: " + "; ".join(self.problems[:3]))

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, object]:
        position, index = key
        generator = sample_generator(self.seed, position)
        hr_path, lq_path = self.pairs[index]
        hr, kind = load_texture(hr_path)
        lq, _ = load_texture(lq_path)
        s, size = self.scale, self.data.crop_size // self.scale
        top = int(torch.randint(0, lq.shape[0] - size + 1, (), generator=generator))
        left = int(torch.randint(0, lq.shape[1] - size + 1, (), generator=generator))
        lq_crop = torch.from_numpy(lq[top : top + size, left : left + size]).permute(2, 0, 1)
        gt = torch.from_numpy(hr[top * s : (top + size) * s, left * s : (left + size) * s])
        gt = gt.permute(2, 0, 1)
        normal = kind == "normal"
        aug = sample_augmentation(generator, flip=self.data.flip, rotate=self.data.rotate)
        pair = [
            augment(t.float() / 255, aug, normal=normal, convention=self.data.normal_convention)
            for t in (gt, lq_crop)
        ]
        gt, lq_crop = ((t * 255).round().to(torch.uint8) for t in pair)
        return {"gt": gt, "lq": lq_crop, "ready": True, "normal": normal, "source": str(hr_path)}


def check_paths(config: Config) -> None:
    """Fail early, in one line, when a data path of the config does not exist."""
    if not config.data.train:
        raise ConfigError("data.train is empty: give folders of textures or packed-crop files")
    for path in config.data.train:
        if not Path(path).exists():
            hint = " (make it with upscale-train pack)" if path.endswith(".safetensors") else ""
            raise ConfigError(f"data.train: {path} does not exist{hint}")
    for key, path in (("data.train_lq", config.data.train_lq), ("val.folder", config.val.folder)):
        if path and not Path(path).is_dir():
            raise ConfigError(f"{key}: {path} is not a folder (set {key}='' to go without)")


def build_loader(
    config: Config, dist: Dist, position: int, log: Callable[[str], None]
) -> DataLoader[dict[str, object]]:
    """The run's training loader, starting at global sample ``position``. Degradations run in
    the workers on CPU, on the training device when it is a GPU (``degrade.where = "auto"``)."""
    where = config.degrade.where
    in_loader = where == "loader" or (where == "auto" and dist.device.type != "cuda")
    scale, seed = config.model.scale, config.run.seed
    dataset: Dataset[dict[str, object]]
    if config.data.train_lq:
        paired = PairedSet(
            config.data.train[0], config.data.train_lq, config.data, scale=scale, seed=seed
        )
        for problem in paired.problems:
            log(f"paired data: {problem}")
        dataset = paired
    else:
        train = TrainSet(
            config.data.train,
            config.data,
            config.degrade,
            scale=scale,
            seed=seed,
            degrade_in_loader=in_loader,
        )
        if train.left_out:
            log(f"data: {len(train.left_out)} files left out, e.g. {train.left_out[0]}")
        dataset = train
    return make_loader(
        dataset,
        config.data.batch_size,
        seed=seed,
        start=position,
        rank=dist.rank,
        world=dist.world,
        num_workers=config.data.workers(dist.world),
        pin_memory=dist.device.type == "cuda",
    )


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)  # workers run many small ops; threads would fight each other


def make_loader(
    dataset: Dataset[dict[str, object]],
    batch_size: int,
    *,
    seed: int,
    start: int,
    rank: int,
    world: int,
    num_workers: int,
    pin_memory: bool,
) -> DataLoader[dict[str, object]]:
    sampler = ResumableSampler(
        len(dataset),
        batch_size,
        seed=seed,
        start=start,
        rank=rank,
        world=world,  # type: ignore[arg-type]
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=pin_memory,
        worker_init_fn=_worker_init if num_workers else None,
        persistent_workers=num_workers > 0,
        prefetch_factor=4 if num_workers else None,
        drop_last=True,
        # Its own generator, so starting the workers does not draw from the global one.
        generator=torch.Generator().manual_seed(seed),
    )
