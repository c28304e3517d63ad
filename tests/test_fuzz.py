"""The fuzz harness: generated and mutated files for every decoder we own, odd names
and trees, through the decoders and through the real command, with the invariants that must
always hold:

* no hang (every call and every run has a time bound), no traceback, exit code in {0, 1, 2, 3};
* inputs byte-identical after the run, nothing new in the input tree but the output folder;
* every output decodes, at the size its input and the flags call for, or does not exist; no
  file in the output tree but outputs (no temporaries, no state);
* a decoder either raises ``ImageReadError`` or returns pixels of the size ``probe`` says (the
  drawn size when the file was left intact), and what it returns can be written back and read.

A bounded budget runs in the default suite (fixed examples: ``derandomize``, so the suite is
deterministic); ``-m slow`` runs a longer, random one. A failure prints the shrunk example.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from fuzz_files import (
    Drawn,
    any_file,
    dds_files,
    detail_files,
    file_names,
    folder_names,
    palette_files,
    tga_files,
)
from helpers import write_compact
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.faults.procs import file_hashes, run_upscale
from upscaler.formats.image import (
    ImageFile,
    ImageReadError,
    ImageWriteError,
    probe,
    read_image,
    write_image,
)

CALL_SECONDS = 20  # one decode of a file of at most a few kB: far above any honest time
RUN_SECONDS = 240  # one run of the command on a handful of small files, on a busy machine


def _settings(examples: int, slow: bool) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=not slow,  # the default suite sees the same examples every time
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def _bounded(call: Callable[[], object], seconds: float = CALL_SECONDS) -> object:
    """``call()``'s result or exception (returned, not raised); fails the test if it runs past
    ``seconds`` (a hang, or a pathological slowness)."""
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:  # handed to the caller
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"no answer within {seconds} s"
    return outcome[0]


# -- the decoders, in process -----------------------------------------------------------------


def check_decoders(drawn: Drawn) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / drawn.name
        path.write_bytes(drawn.data)
        size = _bounded(lambda: probe(path))
        image = _bounded(lambda: read_image(path))
        for outcome in (size, image):
            if isinstance(outcome, BaseException) and not isinstance(outcome, ImageReadError):
                raise outcome  # anything but a clean refusal is a bug
        if isinstance(size, ImageReadError):
            assert isinstance(image, ImageReadError), "probe refused what read_image accepts"
            assert "\n" not in size.reason
            return
        if isinstance(image, ImageReadError):
            assert "\n" not in image.reason
            return
        assert isinstance(image, ImageFile)
        assert image.pixels.ndim == 3 and image.channels in (1, 2, 3, 4)
        assert image.pixels.dtype.name == ("uint16" if image.bits == 16 else "uint8")
        assert image.size == size
        if drawn.size is not None:
            assert image.size == drawn.size
        if drawn.pixels is not None:
            assert image.pixels.shape == drawn.pixels.shape
            assert (image.pixels == drawn.pixels).all(), "decoded pixels differ from the file's"
        again = Path(tmp) / f"again{path.suffix.lower()}"
        written = _bounded(lambda: write_image(again, image))
        if isinstance(written, ImageWriteError):
            assert not again.exists()
            return
        if isinstance(written, BaseException):
            raise written
        back = _bounded(lambda: read_image(again))
        assert isinstance(back, ImageFile), back
        assert back.size == image.size


DECODER_STRATEGIES = {
    "dds": dds_files(),
    "tga": tga_files(),
    "palette": palette_files(),
    "details": detail_files(),
}


def _fuzz_decoders(kind: str, examples: int, slow: bool) -> None:
    @_settings(examples, slow=slow)
    @given(drawn=DECODER_STRATEGIES[kind])
    def run(drawn: Drawn) -> None:
        check_decoders(drawn)

    run()


@pytest.mark.parametrize("kind", sorted(DECODER_STRATEGIES))
def test_decoders_refuse_cleanly_or_decode_consistently(kind: str) -> None:
    _fuzz_decoders(kind, 150, slow=False)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(DECODER_STRATEGIES))
def test_decoders_refuse_cleanly_or_decode_consistently_long(kind: str) -> None:
    _fuzz_decoders(kind, 3000, slow=True)


# -- the real command, on generated trees -----------------------------------------------------

FLAGS = (
    (),
    ("--native",),
    ("--output-scale", "0.5"),
    ("--format", "png"),
    ("--format", "tga"),
    ("--format", "bmp"),
    ("--format", "dds", "--dds-format", "bc1"),
    ("--palette", "keep"),
    ("--alpha", "cutout", "--seamless", "off"),
    ("--map", "normal"),
    ("--dry-run",),
)
EXTRAS = ("fifo", "folder named x.png", "empty file", "link inside", "link outside", "link loop")


@dataclass(frozen=True)
class Tree:
    files: tuple[tuple[tuple[str, ...], str, Drawn], ...]  # (folders, name, file)
    extras: frozenset[str]
    flags: tuple[str, ...]
    output_inside: bool


@st.composite
def trees(draw: st.DrawFn) -> Tree:
    files = []
    for drawn in draw(st.lists(any_file, min_size=1, max_size=6)):
        folders = tuple(draw(st.lists(folder_names, max_size=2)))
        name = draw(file_names(Path(drawn.name).suffix))
        files.append((folders, name, drawn))
    extras = frozenset(draw(st.sets(st.sampled_from(EXTRAS), max_size=3)))
    return Tree(tuple(files), extras, draw(st.sampled_from(FLAGS)), draw(st.booleans()))


def _expected_size(size: list[int], flags: tuple[str, ...], scale: int) -> tuple[int, int]:
    h, w = size
    if "--native" in flags:
        return h, w
    if "--output-scale" in flags:
        s = float(flags[flags.index("--output-scale") + 1])
        return max(1, round(h * s)), max(1, round(w * s))
    return h * scale, w * scale


def build(tree: Tree, root: Path) -> dict[str, tuple[int, int] | None]:
    """Write the tree under ``root``; returns every written file's path -> intact size."""
    made: dict[str, tuple[int, int] | None] = {}
    for folders, name, drawn in tree.files:
        path = root.joinpath(*folders, name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() or path.is_symlink():
                continue
            path.write_bytes(drawn.data)
        except OSError:  # a name this filesystem refuses: not our case to test
            continue
        made[str(path)] = drawn.size
    outside = root.parent / "elsewhere.png"
    outside.write_bytes(b"\x89PNG\r\n\x1a\n outside the tree")
    some = next(iter(made), None)
    if "fifo" in tree.extras:
        os.mkfifo(root / "pipe.png")
    if "folder named x.png" in tree.extras:
        (root / "x.png").mkdir()
    if "empty file" in tree.extras:
        (root / "empty.dds").write_bytes(b"")
    if "link inside" in tree.extras and some is not None:
        (root / "inside-link.png").symlink_to(some)
    if "link outside" in tree.extras:
        (root / "outside-link.png").symlink_to(outside)
    if "link loop" in tree.extras:
        (root / "loop-a.tga").symlink_to("loop-b.tga")
        (root / "loop-b.tga").symlink_to("loop-a.tga")
    return made


def check_command(tree: Tree, model: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = work / "in"
        root.mkdir()
        made = build(tree, root)
        out = root / "upscaled" if tree.output_inside else work / "out"
        report = work / "report.json"
        before = file_hashes(root)
        run = run_upscale(
            root, "-o", out, "-m", model, "--report", report, *tree.flags, timeout=RUN_SECONDS
        )
        text = run.stdout + run.stderr
        assert run.returncode >= 0, f"killed after {RUN_SECONDS} s: a hang\n{text[-2000:]}"
        assert "Traceback" not in text, text[-4000:]
        assert run.returncode in (0, 1, 2, 3), text[-2000:]
        after = file_hashes(root)
        if tree.output_inside:
            after = {k: v for k, v in after.items() if not k.startswith("upscaled")}
        assert after == before, "the input tree changed"
        if run.returncode == 2 or "--dry-run" in tree.flags:
            assert not out.exists() or not any(out.rglob("*")), "a refused or dry run wrote"
            assert not report.exists()
            return
        data = json.loads(report.read_text())
        files, summary = data["files"], data["summary"]
        assert summary["done"] + summary["skipped"] + summary["failed"] == summary["total"]
        assert (run.returncode == 1) == (summary["failed"] > 0 and not summary["fatal"])
        targets = set()
        for entry in files:
            target = Path(entry["target"]) if entry["target"] else None
            if entry["status"] == "done":
                assert target is not None and target.is_file(), entry
                expected = _expected_size(entry["input_size"], tree.flags, summary["scale"])
                assert read_image(target).size == expected, entry
                intact = made.get(entry["source"])
                if intact is not None:
                    assert tuple(entry["input_size"]) == intact, entry
                targets.add(str(target))
            elif entry["status"] == "failed" and target is not None:
                assert not target.exists(), entry
                assert "\n" not in entry["reason"]
        found = {str(p) for p in out.rglob("*") if p.is_file() or p.is_symlink()}
        assert found == targets, f"stray files in the output tree: {found - targets}"


@pytest.fixture(scope="module")
def fuzz_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_compact(tmp_path_factory.mktemp("fuzz") / "fuzz-x2.safetensors", scale=2)


def _fuzz_command(model: Path, examples: int, slow: bool) -> None:
    @_settings(examples, slow=slow)
    @given(tree=trees())
    def run(tree: Tree) -> None:
        check_command(tree, model)

    run()


def test_the_command_on_generated_trees(fuzz_model: Path) -> None:
    _fuzz_command(fuzz_model, 6, slow=False)


@pytest.mark.slow
def test_the_command_on_generated_trees_long(fuzz_model: Path) -> None:
    _fuzz_command(fuzz_model, 120, slow=True)


# -- the side files a run reads: rules files and upscale-review's reports ------------------------

SIDE_SECONDS = 30  # one dry run on three small files, or one review page: far above honest time


def _one_line_outcome(result: object) -> None:
    """Exit 0, or exit 2 with one error line: never a traceback (CliRunner keeps it in
    ``exc_info`` when the command raised)."""
    from click.testing import Result

    assert isinstance(result, Result), result
    assert result.exit_code in (0, 2), (result.exit_code, result.output[-2000:], result.exc_info)
    assert "Traceback" not in result.output, result.output[-2000:]
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == (result.exit_code == 2), result.output[-2000:]


@pytest.fixture(scope="module")
def rules_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers import make_pixels
    from PIL import Image

    root = tmp_path_factory.mktemp("rules-tree")
    for name in ("a.png", "ui/x_mask.png", "a/a/a/a/a/a/a/" + "a" * 60 + "b.png"):
        (root / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(make_pixels(5, 3, 3, seed=len(name))).save(root / "in" / name)
    return root


def _warm(model: Path, root: Path) -> None:
    """One dry run outside the time bound: the first one imports torch and loads the model,
    which on a machine shared with training can take longer than any rules file should."""
    from click.testing import CliRunner

    from upscaler.cli import main

    args = [str(root / "in"), "-o", str(root / "out"), "-m", str(model), "--dry-run", "-q"]
    assert CliRunner().invoke(main, args).exit_code == 0


def _fuzz_rules(model: Path, root: Path, examples: int, slow: bool) -> None:
    from click.testing import CliRunner
    from fuzz_side_files import any_rules

    from upscaler.cli import main

    _warm(model, root)

    @_settings(examples, slow=slow)
    @given(text=any_rules)
    def run(text: str) -> None:
        rules = root / "rules.toml"
        rules.write_text(text, encoding="utf-8", errors="surrogatepass")
        args = [str(root / "in"), "-o", str(root / "out"), "-m", str(model), "--dry-run", "-q"]
        result = _bounded(
            lambda: CliRunner().invoke(main, [*args, "--rules", str(rules)]), SIDE_SECONDS
        )
        _one_line_outcome(result)
        assert not (root / "out").exists(), "a dry run wrote"

    run()


def test_generated_rules_files(fuzz_model: Path, rules_tree: Path) -> None:
    _fuzz_rules(fuzz_model, rules_tree, 15, slow=False)


@pytest.mark.slow
def test_generated_rules_files_long(fuzz_model: Path, rules_tree: Path) -> None:
    _fuzz_rules(fuzz_model, rules_tree, 600, slow=True)


def _fuzz_reports(examples: int, slow: bool) -> None:
    from click.testing import CliRunner
    from fuzz_side_files import reports

    from upscaler.review.command import main

    root = Path(tempfile.mkdtemp(prefix="fuzz-reports-"))

    @_settings(examples, slow=slow)
    @given(text=reports())
    def run(text: str) -> None:
        report = root / "report.json"
        report.write_text(text, encoding="utf-8", errors="surrogatepass")
        page = root / "review.html"
        args = [str(report), "-o", str(page), "-q"]
        result = _bounded(lambda: CliRunner().invoke(main, args), SIDE_SECONDS)
        _one_line_outcome(result)
        assert report.read_text(encoding="utf-8", errors="surrogatepass") == text

    run()


def test_generated_reports_for_upscale_review() -> None:
    _fuzz_reports(20, slow=False)


@pytest.mark.slow
def test_generated_reports_for_upscale_review_long() -> None:
    _fuzz_reports(1000, slow=True)
