"""The batch runner: carry out a run plan (``plan``), overlapping I/O with compute.

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
from upscaler.console import one_line
from upscaler.engine.pipeline import NonFiniteOutputError, NotEnoughMemoryError, Upscaler
from upscaler.formats.image import (
    ImageFile,
    ImageReadError,
    ImageWriteError,
    read_image,
    write_image,
)
from upscaler.plan import PlannedFile, RunPlan
from upscaler.process import batch_key, for_output, plan_texture, upscale_images
from upscaler.state import LEGACY_MANIFEST
from upscaler.texture.maps import MapInfo
from upscaler.worklist import inside

MAX_BATCH_OUTPUT_PIXELS = 64 << 20
_T = TypeVar("_T")


class FatalError(Exception):
    """The run cannot go on (exit code 3): disk full, output folder unwritable."""


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


def _key(item: PlannedFile) -> tuple[object, ...]:
    """Files with equal keys (header and options) may share a group."""
    return (item.size, item.job.source.suffix.lower(), item.options)


def _groups(items: list[PlannedFile], max_batch: int, scale: int) -> list[list[PlannedFile]]:
    """Chunks of same-header items in work-list order; sizes fixed by the list alone."""
    by_key: dict[tuple[object, ...], list[PlannedFile]] = {}
    for item in items:
        by_key.setdefault(_key(item), []).append(item)
    groups = []
    for members in by_key.values():
        h, w = members[0].size or (0, 0)
        fit = max(1, MAX_BATCH_OUTPUT_PIXELS // max(1, h * w * scale * scale))
        step = max(1, min(max_batch, fit))
        groups += [members[i : i + step] for i in range(0, len(members), step)]
    order = {id(item): i for i, item in enumerate(items)}
    return sorted(groups, key=lambda g: order[id(g[0])])


class Runner:
    """Carries out a ``RunPlan`` with ``upscaler`` (the model it was planned for); each file's
    result goes to ``on_result`` as it comes, the work to do to ``on_plan`` once."""

    def __init__(
        self,
        upscaler: Upscaler,
        plan: RunPlan,
        on_result: Callable[[FileResult], None] | None = None,
        on_plan: Callable[[dict[str, int]], None] | None = None,
    ) -> None:
        self.upscaler, self.plan, self.options = upscaler, plan, plan.options
        self.on_result = on_result or (lambda result: None)
        self.on_plan = on_plan or (lambda work: None)  # called once, as on_result is
        self.root = self.options.output_root.resolve()
        self.state = plan.state
        self.results: list[FileResult] = []
        self._emitted: set[int] = set()  # ids of the results in ``results``
        self.reporting_error: str | None = None  # why reporting was switched off, if it was

    def run(self) -> list[FileResult]:
        """Run the plan; results also land in ``results`` as they come, so that after a
        ``FatalError`` or ``KeyboardInterrupt`` they say what was done so far. On either, work not
        yet started is dropped; decodes and writes under way finish (nothing half-written)."""
        for path, reason in self.plan.problems:
            self._emit(FileResult(str(path), "", "failed", reason))
        self._check_output_root()
        for item in self.plan.files:
            if item.reason:
                self._emit(self._result(item, "failed", item.reason))
        items = [item for item in self.plan.files if not item.reason]
        self._report(self.on_plan, self.plan.work(self.upscaler.scale))
        for item in items:
            if item.done:
                self._emit(self._result(item, "skipped", "output exists and is complete"))
        groups = [
            g
            for g in _groups(items, self.options.max_batch, self.upscaler.scale)
            if not all(i.done for i in g)
        ]
        readers = ThreadPoolExecutor(self.options.workers, "decode")
        writers = ThreadPoolExecutor(self.options.workers, "encode")
        self._writes: list[Future[FileResult]] = []  # submitted, result not yet emitted
        # results the writer threads finished, appended by them: a write done when the run is
        # interrupted (SIGTERM arrives as a KeyboardInterrupt anywhere in the main thread, even
        # between a submit and its bookkeeping) is still counted
        self._written: list[FileResult] = []
        try:
            for group, decoded in self._decoded(groups, readers):
                self._compute(group, decoded, writers)
                self._collect(block=False)
            self._collect(block=True)
        finally:
            for future in self._writes:
                future.cancel()
            readers.shutdown(wait=True, cancel_futures=True)
            writers.shutdown(wait=True, cancel_futures=True)
            for result in list(self._written):  # writes that finished as the run stopped
                self._emit_once(result)
        return self.results

    def _decoded(
        self, groups: list[list[PlannedFile]], pool: ThreadPoolExecutor
    ) -> Iterator[tuple[list[PlannedFile], list[ImageFile | FileResult]]]:
        """Decode groups in a thread pool, one group ahead of the one being computed."""
        ahead: list[list[Future[ImageFile | FileResult]]] = []
        for index in range(len(groups) + 1):
            if index < len(groups):
                ahead.append([pool.submit(self._read, item) for item in groups[index]])
            if index >= 1:
                yield groups[index - 1], [f.result() for f in ahead.pop(0)]

    def _read(self, item: PlannedFile) -> ImageFile | FileResult:
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
        self,
        group: list[PlannedFile],
        decoded: list[ImageFile | FileResult],
        writers: ThreadPoolExecutor,
    ) -> None:
        batches: dict[tuple[object, ...], list[tuple[PlannedFile, ImageFile, MapInfo]]] = {}
        blocks = self.upscaler.for_blocks is not None  # otherwise nothing to tell them apart for
        for item, image in zip(group, decoded, strict=True):
            if isinstance(image, FileResult):
                self._emit(image)
                continue
            try:
                info = plan_texture(image, item.job.name, item.options, blocks=blocks)
            except Exception as exc:  # a bug in one file's analysis fails that file only
                self._emit(self._result(item, "failed", f"cannot analyse: {exc}"[:300]))
                continue
            key = (*batch_key(image, info), item.options)
            batches.setdefault(key, []).append((item, image, info))
        for members in batches.values():
            self._upscale(members, writers)

    def _upscale(
        self, members: list[tuple[PlannedFile, ImageFile, MapInfo]], writers: ThreadPoolExecutor
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

    def _write(
        self, item: PlannedFile, image: ImageFile, seconds: float, info: MapInfo
    ) -> FileResult:
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
        self._written.append(result)
        return result

    def _collect(self, block: bool) -> None:
        """Emit the results of finished writes (of all, waiting for them, with ``block``)."""
        for future in list(self._writes):
            if block or future.done():
                # Emitted before it leaves the list: an interrupt (SIGTERM arrives as a
                # KeyboardInterrupt anywhere) between the two must not lose a written file
                self._emit_once(future.result())  # re-raises FatalError from the writer
                self._writes.remove(future)

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
        item: PlannedFile,
        status: str,
        reason: str = "",
        *,
        seconds: float = 0.0,
        output: tuple[int, int] | None = None,
        info: MapInfo | None = None,
    ) -> FileResult:
        out = output or item.output_size or ()
        result = FileResult(
            str(item.job.source),
            str(item.job.target),
            status,
            reason,
            seconds,
            list(item.size or ()),
        )
        result.output_size = list(out)
        if info is not None:
            result.wrap, result.map, result.alpha = list(info.wrap), info.kind, info.alpha
            result.notes = list(info.notes)
        return result

    def _emit_once(self, result: FileResult) -> None:
        if id(result) not in self._emitted:
            self._emit(result)

    def _emit(self, result: FileResult) -> None:
        self.results.append(result)
        self._emitted.add(id(result))
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
