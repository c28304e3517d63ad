"""The batch runner: decode, upscale and encode a work list, overlapping I/O with compute.

Files are grouped by their header (size, mode) in work-list order, so batches do not depend on which
outputs already exist: a run resumed with ``skip_existing`` computes every image exactly as an
uninterrupted run would (a partly finished group is recomputed, and only its missing files are
written). A bad file fails alone; a full disk, an unwritable output or a model that produces NaN
stops the run. Reporting (the ``on_result`` callback) can never stop it: a callback that raises is
switched off and the run goes on.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

from upscaler.atomic import is_disk_full, remove_stale_temps, temp_path_for
from upscaler.engine.pipeline import NonFiniteOutputError, NotEnoughMemoryError, Upscaler
from upscaler.formats.image import (
    ImageFile,
    ImageReadError,
    ImageWriteError,
    output_limit,
    probe,
    read_image,
    write_image,
)
from upscaler.process import (
    TextureOptions,
    batch_key,
    for_output,
    output_size,
    plan_texture,
    upscale_images,
)
from upscaler.rules import Rules
from upscaler.state import LEGACY_MANIFEST, RunState, file_sha256, recipe
from upscaler.texture.maps import MapInfo
from upscaler.worklist import Job, inside

MAX_BATCH_OUTPUT_PIXELS = 64 << 20
_T = TypeVar("_T")


class FatalError(Exception):
    """The run cannot go on (exit code 3): disk full, output folder unwritable."""


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``, for reasons that come from outside our own errors."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}"[:300] if first else type(exc).__name__


@dataclass
class FileResult:
    source: str
    target: str
    status: str  # done | skipped | failed | planned
    reason: str = ""
    seconds: float = 0.0
    input_size: list[int] = field(default_factory=list)  # [height, width]
    output_size: list[int] = field(default_factory=list)
    wrap: list[bool] = field(default_factory=list)
    map: str = ""  # color | normal | data
    alpha: str = ""  # cutout | blended | data | absent
    notes: list[str] = field(default_factory=list)  # what was decided or changed, and why

    @property
    def pixels(self) -> int:
        return self.input_size[0] * self.input_size[1] if self.input_size else 0


@dataclass(frozen=True)
class RunOptions:
    output_root: Path
    skip_existing: bool = False
    png_level: int | None = None  # None: fast run-length PNG (formats.image._png)
    max_batch: int = 16
    workers: int = 2


@dataclass
class _Item:
    job: Job
    size: tuple[int, int]  # input (height, width) from the header
    key: tuple[object, ...]
    options: TextureOptions  # the run's, refined by the rules file for this file
    done: bool = False  # output already complete
    recipe: str = ""  # what the output is made from (see ``state``)


def producer(upscaler: Upscaler) -> dict[str, object]:
    """What, besides each file's options and format, decides an output's pixels: the model file's
    SHA-256 (its name when it was built in memory), scale and precision."""
    source = Path(upscaler.info.source) if upscaler.info.source else None
    try:
        model = file_sha256(source) if source is not None else f"name:{upscaler.info.name}"
    except OSError:
        model = f"name:{upscaler.info.name}"
    return {"model": model, "scale": upscaler.scale, "dtype": str(upscaler.dtype)}


def made_by(job: Job, options: TextureOptions, producer: Mapping[str, object]) -> str:
    """The recipe of ``job``'s output (see ``state``); raises OSError if its source is gone."""
    return recipe(job.source, {**producer, "options": asdict(options), "format": job.format})


def _header(job: Job) -> tuple[tuple[int, int], tuple[object, ...]]:
    h, w = probe(job.source)
    return (h, w), (h, w, job.source.suffix.lower())


def _groups(items: list[_Item], max_batch: int, scale: int) -> list[list[_Item]]:
    """Chunks of same-header items in work-list order; sizes fixed by the list alone."""
    by_key: dict[tuple[object, ...], list[_Item]] = {}
    for item in items:
        by_key.setdefault(item.key, []).append(item)
    groups = []
    for members in by_key.values():
        h, w = members[0].size
        fit = max(1, MAX_BATCH_OUTPUT_PIXELS // max(1, h * w * scale * scale))
        step = max(1, min(max_batch, fit))
        groups += [members[i : i + step] for i in range(0, len(members), step)]
    order = {id(item): i for i, item in enumerate(items)}
    return sorted(groups, key=lambda g: order[id(g[0])])


class Runner:
    def __init__(
        self,
        upscaler: Upscaler,
        texture: TextureOptions,
        options: RunOptions,
        on_result: Callable[[FileResult], None] | None = None,
        rules: Rules | None = None,
        on_plan: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        self.upscaler, self.texture, self.options = upscaler, texture, options
        self.rules = rules or Rules()
        self.on_result = on_result or (lambda result: None)
        self.on_plan = on_plan or (lambda work: None)  # called once, as on_result is
        self.root = options.output_root.resolve()
        self.state = RunState(self.root)
        self.producer = producer(upscaler)
        self.results: list[FileResult] = []
        self.reporting_error: str | None = None  # why reporting was switched off, if it was

    # -- planning -------------------------------------------------------------------------------

    def plan(self, jobs: list[Job], pool: ThreadPoolExecutor) -> list[_Item]:
        """Probe every header (bad files fail here, fast) and mark complete outputs."""
        items = []
        for job, probed in zip(jobs, pool.map(self._probe, jobs), strict=True):
            if isinstance(probed, FileResult):
                self._emit(probed)
                continue
            size, key = probed
            texture = self.rules.options_for(job.name, self.texture)
            item = _Item(job, size, (*key, texture), texture)
            too_big = output_limit(job.format, output_size(size, self.upscaler.scale, texture))
            if too_big is not None:
                self._emit(self._result(item, "failed", too_big))
                continue
            try:
                item.recipe = made_by(job, texture, self.producer)
            except OSError as exc:
                self._emit(self._result(item, "failed", f"cannot read: {exc.strerror or exc}"))
                continue
            if self.options.skip_existing:
                item.done = self.state.complete(job.target, item.recipe)
            items.append(item)
        return items

    def work(self, items: list[_Item]) -> dict[str, int]:
        """The work each file still to upscale takes, by target: input pixels x scale², which
        is what the model's time grows with (a 1024² texture is 64 times a 128² one)."""
        area = self.upscaler.scale**2
        return {str(i.job.target): i.size[0] * i.size[1] * area for i in items if not i.done}

    def _probe(self, job: Job) -> tuple[tuple[int, int], tuple[object, ...]] | FileResult:
        try:
            return _header(job)
        except ImageReadError as exc:
            reason = exc.reason
        except Exception as exc:  # a decoder bug fails this file, never the batch
            reason = f"unexpected error reading the header: {one_line(exc)}"
        return FileResult(str(job.source), str(job.target), "failed", reason)

    # -- running --------------------------------------------------------------------------------

    def run(self, jobs: list[Job]) -> list[FileResult]:
        """Run ``jobs``; results also land in ``results`` as they come, so that after a
        ``FatalError`` or ``KeyboardInterrupt`` they say what was done so far. On either, work not
        yet started is dropped; decodes and writes under way finish (nothing half-written)."""
        self._check_output_root()
        readers = ThreadPoolExecutor(self.options.workers, "decode")
        writers = ThreadPoolExecutor(self.options.workers, "encode")
        self._writes: list[Future[FileResult]] = []  # submitted, result not yet emitted
        try:
            items = self.plan(jobs, readers)
            self._report(self.on_plan, self.work(items))
            for item in items:
                if item.done:
                    self._emit(self._result(item, "skipped", "output exists and is complete"))
            groups = [
                g
                for g in _groups(items, self.options.max_batch, self.upscaler.scale)
                if not all(i.done for i in g)
            ]
            for group, decoded in self._decoded(groups, readers):
                self._compute(group, decoded, writers)
                self._collect(block=False)
            self._collect(block=True)
        finally:
            for future in self._writes:
                future.cancel()
            readers.shutdown(wait=True, cancel_futures=True)
            writers.shutdown(wait=True, cancel_futures=True)
            for future in self._writes:  # writes that were under way when the run stopped
                if not future.cancelled() and future.exception() is None:
                    self._emit(future.result())
        return self.results

    def _decoded(
        self, groups: list[list[_Item]], pool: ThreadPoolExecutor
    ) -> Iterator[tuple[list[_Item], list[ImageFile | FileResult]]]:
        """Decode groups in a thread pool, one group ahead of the one being computed."""
        ahead: list[list[Future[ImageFile | FileResult]]] = []
        for index in range(len(groups) + 1):
            if index < len(groups):
                ahead.append([pool.submit(self._read, item) for item in groups[index]])
            if index >= 1:
                yield groups[index - 1], [f.result() for f in ahead.pop(0)]

    def _read(self, item: _Item) -> ImageFile | FileResult:
        try:
            image = read_image(item.job.source)
        except ImageReadError as exc:
            return self._result(item, "failed", exc.reason)
        except MemoryError:
            return self._result(item, "failed", "not enough memory to decode")
        except Exception as exc:  # a decoder bug fails this file, never the batch
            return self._result(item, "failed", f"unexpected error decoding: {one_line(exc)}")
        if image.size != item.size:
            return self._result(item, "failed", "file changed while the run was going on")
        return image

    def _compute(
        self, group: list[_Item], decoded: list[ImageFile | FileResult], writers: ThreadPoolExecutor
    ) -> None:
        batches: dict[tuple[object, ...], list[tuple[_Item, ImageFile, MapInfo]]] = {}
        for item, image in zip(group, decoded, strict=True):
            if isinstance(image, FileResult):
                self._emit(image)
                continue
            try:
                info = plan_texture(image, item.job.name, item.options)
            except Exception as exc:  # a bug in one file's analysis fails that file only
                self._emit(self._result(item, "failed", f"cannot analyse: {exc}"[:300]))
                continue
            key = (*batch_key(image, info), item.options)
            batches.setdefault(key, []).append((item, image, info))
        for members in batches.values():
            self._upscale(members, writers)

    def _upscale(
        self, members: list[tuple[_Item, ImageFile, MapInfo]], writers: ThreadPoolExecutor
    ) -> None:
        start = time.perf_counter()
        try:
            images, infos = [m[1] for m in members], [m[2] for m in members]
            options = members[0][0].options
            outputs = upscale_images(self.upscaler, images, options, infos=infos)
        except NonFiniteOutputError as exc:  # the model, not this file: nothing it makes is usable
            raise FatalError(f"model refused: {exc}") from exc
        except Exception as exc:  # one bad batch must not end the run: retry alone, then fail
            if len(members) > 1 and not isinstance(exc, NotEnoughMemoryError):
                for member in members:
                    self._upscale([member], writers)
                return
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if not isinstance(exc, (NotEnoughMemoryError, ValueError)):
                reason = f"{type(exc).__name__}: {reason}"
            for item, _, _ in members:
                self._emit(self._result(item, "failed", reason[:300]))
            return
        seconds = (time.perf_counter() - start) / len(members)
        for (item, _, info), output in zip(members, outputs, strict=True):
            if item.done:
                continue  # recomputed only to keep its batch-mates bit-identical
            self._writes.append(writers.submit(self._write, item, output, seconds, info))

    def _write(self, item: _Item, image: ImageFile, seconds: float, info: MapInfo) -> FileResult:
        target = item.job.target
        result = self._result(item, "done", seconds=seconds, output=image.size, info=info)
        try:
            if not self._inside_root(target.parent):
                raise ImageWriteError(target, "output folder resolves outside the output root")
            target.parent.mkdir(parents=True, exist_ok=True)
            image, notes = for_output(image, info, item.job.format)
            notes += write_image(target, image, item.job.format, png_level=self.options.png_level)
            result.notes += notes
            self.state.record(target, item.recipe)
        except ImageWriteError as exc:
            result.status, result.reason = "failed", exc.reason
        except OSError as exc:
            if is_disk_full(exc):  # nothing more fits
                raise FatalError(
                    f"disk full while writing {target}; earlier outputs are intact"
                ) from exc
            result.status, result.reason = "failed", f"cannot write: {exc.strerror or exc}"
        except Exception as exc:  # an encoder bug fails this file, never the batch
            result.status, result.reason = "failed", f"cannot encode: {one_line(exc)}"
        return result

    def _collect(self, block: bool) -> None:
        """Emit the results of finished writes (of all, waiting for them, with ``block``)."""
        for future in list(self._writes):
            if block or future.done():
                self._writes.remove(future)
                self._emit(future.result())  # re-raises FatalError from the writer

    # -- helpers --------------------------------------------------------------------------------

    def _inside_root(self, folder: Path) -> bool:
        """Whether ``folder`` (existing or not) resolves inside the output root. Checked before
        any folder is made, so a link inside the output tree cannot lead writes elsewhere."""
        try:
            return inside(folder.resolve(), self.root)
        except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
            return False

    def _check_output_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            # Named like a temporary, so a kill right here leaves nothing a later run keeps.
            probe_file = temp_path_for(self.root / "write-test")
            probe_file.write_bytes(b"")
            probe_file.unlink()
        except OSError as exc:
            why = "the disk is full" if is_disk_full(exc) else exc.strerror or str(exc)
            raise FatalError(f"output folder {self.root} is not writable: {why}") from exc
        for folder, _, _ in os.walk(self.root):
            remove_stale_temps(Path(folder))
        with contextlib.suppress(OSError):  # older versions kept resume state in the tree
            (self.root / LEGACY_MANIFEST).unlink()

    def _result(
        self,
        item: _Item,
        status: str,
        reason: str = "",
        *,
        seconds: float = 0.0,
        output: tuple[int, int] | None = None,
        info: MapInfo | None = None,
    ) -> FileResult:
        out = output or output_size(item.size, self.upscaler.scale, item.options)
        result = FileResult(
            str(item.job.source), str(item.job.target), status, reason, seconds, list(item.size)
        )
        result.output_size = list(out)
        if info is not None:
            result.wrap, result.map, result.alpha = list(info.wrap), info.kind, info.alpha
            result.notes = list(info.notes)
        return result

    def _emit(self, result: FileResult) -> None:
        self.results.append(result)
        self._report(self.on_result, result)

    def _report(self, callback: Callable[[_T], None], value: _T) -> None:
        if self.reporting_error is not None:
            return
        try:
            callback(value)
        except Exception as exc:  # a closed stderr, a broken pipe: the batch goes on, unreported
            self.reporting_error = one_line(exc)


def write_report(path: Path, results: list[FileResult], summary: Mapping[str, object]) -> None:
    from upscaler.atomic import write_bytes_atomic

    data = {"summary": summary, "files": [asdict(r) for r in results]}
    write_bytes_atomic(path, json.dumps(data, indent=2).encode("utf-8"))
