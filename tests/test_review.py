"""The review page's files, paths and report round trip (the browser checks are in
test_review_browser.py)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from review_helpers import FAILING, ODD_NAME, make_batch, page_data

from upscaler.cli import main as upscale
from upscaler.review import MARKER, ReviewError, check_paths
from upscaler.review.command import main as upscale_review
from upscaler.review.pictures import detail_region, make_pictures, shade


def _invoke(command: object, *args: object) -> object:
    return CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_x2: Path) -> Path:
    """One real run of the mixed batch with --report and --review; returns its folder."""
    root = tmp_path_factory.mktemp("review-run")
    make_batch(root / "in")
    result = _invoke(
        upscale,
        root / "in",
        "-o",
        root / "out",
        "--model",
        tiny_x2,
        "-q",
        "--report",
        root / "run.json",
        "--review",
        root / "review.html",
    )
    assert result.exit_code == 1, result.output  # two files fail
    assert f"review page: {root / 'review.html'}" in result.output
    return root


def test_page_lists_every_texture_with_its_pictures_beside_it(run: Path) -> None:
    data = page_data(run / "review.html")
    rows = {r["name"]: r for r in data["rows"]}
    names = {p.relative_to(run / "in").as_posix() for p in (run / "in").rglob("*") if p.is_file()}
    assert set(rows) == names and ODD_NAME in rows
    assert {n for n, r in rows.items() if r["status"] == "failed"} == FAILING
    assert all(rows[n]["reason"] for n in FAILING)
    folder = run / "review_files"
    assert data["folder"] == "review_files" and (folder / MARKER).is_file()
    for name, row in rows.items():
        for picture in row["img"].values():
            assert (folder / picture).is_file(), (name, picture)
        if row["status"] == "done":
            kinds = {"view-in", "view-out", "thumb-in", "thumb-out", "crop-in", "crop-out"}
            assert kinds <= set(row["img"]), name
            assert (("tiled" in row["img"]) == any(row["wrap"])) and row["seconds"] > 0
    assert "shaded-out" in rows["grass01_n.png"]["img"]  # a normal map: lit as well as raw
    assert "shaded-out" not in rows["sub/planks_n.png"]["img"]  # named so, but colour
    assert rows["sub/planks_n.png"]["notes"]
    assert rows["grate01_skin.png"]["alpha"] == "blended"
    assert {"alpha-in", "alpha-out"} <= set(rows["grate01_skin.png"]["img"])
    assert "view-out" not in rows["sub/broken.png"]["img"]
    assert rows["duct.png"]["crop"][2:] == [192, 192] and data["summary"]["model"]


def test_page_is_offline_and_stays_out_of_the_trees(run: Path) -> None:
    text = (run / "review.html").read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text and "//cdn" not in text
    assert "<b>&amp;" not in text  # the odd name travels as escaped JSON, never as markup
    assert not [p for p in (run / "out").rglob("*") if "review" in p.name]
    assert not [p for p in (run / "in").rglob("*") if "review" in p.name]


def test_report_carries_what_the_page_needs(run: Path) -> None:
    summary = json.loads((run / "run.json").read_text())["summary"]
    assert summary["output"] == str((run / "out").resolve())
    assert summary["inputs"] == [str((run / "in").resolve())] and summary["cwd"]


@pytest.mark.parametrize(
    "where",
    ["out/review.html", "out/deeper/review.html", "in/review.html", "in/sub/page.html"],
)
def test_page_inside_the_output_or_an_input_is_refused(
    tmp_path: Path, tiny_x2: Path, where: str
) -> None:
    make_batch(tmp_path / "in")
    before = _hashes(tmp_path / "in")
    page = tmp_path / where
    result = _invoke(
        upscale, tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_x2, "--review", page
    )
    assert result.exit_code == 2 and "would land inside" in result.output
    assert not (tmp_path / "out").exists() and _hashes(tmp_path / "in") == before


def test_pictures_folder_beside_the_page_inside_the_output_is_refused(
    tmp_path: Path, tiny_x2: Path
) -> None:
    """A page named ``out.html`` beside output folder ``out_files`` would put its pictures in
    the output tree."""
    make_batch(tmp_path / "in")
    args = [tmp_path / "in", "-o", tmp_path / "out_files", "--model", tiny_x2]
    result = _invoke(upscale, *args, "--review", tmp_path / "out.html")
    assert result.exit_code == 2 and "pictures" in result.output


def test_page_on_an_input_or_a_foreign_folder_is_refused(tmp_path: Path, tiny_x2: Path) -> None:
    make_batch(tmp_path / "in")
    single = tmp_path / "in" / "duct.png"
    args = ["-o", tmp_path / "out", "--model", tiny_x2]
    result = _invoke(upscale, single, *args, "--review", single)
    assert result.exit_code == 2 and "overwrite the input" in result.output
    (tmp_path / "mine_files").mkdir()
    (tmp_path / "mine_files" / "keep.txt").write_text("the user's")
    result = _invoke(upscale, tmp_path / "in", *args, "--review", tmp_path / "mine.html")
    assert result.exit_code == 2 and "not made by a review" in result.output
    result = _invoke(upscale, tmp_path / "in", *args, "--review", tmp_path / "p.html", "--dry-run")
    assert result.exit_code == 2
    assert not (tmp_path / "out").exists() and (tmp_path / "mine_files" / "keep.txt").exists()


def test_page_under_a_file_is_refused_and_a_missing_folder_is_not(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("a file")
    with pytest.raises(ReviewError, match=r"notes\.txt is not a folder"):
        check_paths(tmp_path / "notes.txt" / "sub" / "review.html", tmp_path / "out")
    paths = check_paths(tmp_path / "new" / "deeper" / "review.html", tmp_path / "out")
    assert paths.folder == tmp_path / "new" / "deeper" / "review_files"
    assert not (tmp_path / "new").exists()  # checked, not made: the run makes it


def test_review_of_an_earlier_run_matches_and_writes_no_output(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = _hashes(run / "out")
    monkeypatch.chdir(tmp_path)  # relative paths in the report resolve against the run's folder
    result = _invoke(upscale_review, run / "run.json", "-o", "again.html", "-q")
    assert result.exit_code == 0, result.output
    first, again = page_data(run / "review.html"), page_data(tmp_path / "again.html")
    keys = ("name", "source", "target", "status", "reason", "map", "alpha", "wrap", "notes")
    assert [[r[k] for k in keys] for r in again["rows"]] == [
        [r[k] for k in keys] for r in first["rows"]
    ]
    assert [sorted(r["img"]) for r in again["rows"]] == [sorted(r["img"]) for r in first["rows"]]
    assert _hashes(run / "out") == outputs
    result = _invoke(upscale_review, run / "run.json", "-o", run / "out" / "r.html")
    assert result.exit_code == 2 and "inside the output folder" in result.output


def test_review_of_moved_outputs_and_of_shards(tmp_path: Path, tiny_x2: Path) -> None:
    make_batch(tmp_path / "in")
    for k in (1, 2):
        args = ["--model", tiny_x2, "-q", "--shard", f"{k}/2", "--report", tmp_path / "r.json"]
        assert _invoke(upscale, tmp_path / "in", "-o", tmp_path / "out", *args).exit_code == 1
    (tmp_path / "out").rename(tmp_path / "moved")
    reports = [tmp_path / "r-shard1of2.json", tmp_path / "r-shard2of2.json"]
    page = tmp_path / "all.html"
    assert _invoke(upscale_review, *reports, "-o", page, "-q").exit_code == 0  # outputs gone
    rows = page_data(page)["rows"]
    assert all(r["problems"] and "view-in" in r["img"] for r in rows if r["status"] == "done")
    result = _invoke(upscale_review, *reports, "-o", page, "--outputs", tmp_path / "moved")
    assert result.exit_code == 0, result.output
    rows = page_data(page)["rows"]
    assert len(rows) == 9 and {r["name"] for r in rows if r["status"] == "failed"} == FAILING
    assert all("view-out" in r["img"] for r in rows if r["status"] == "done")
    assert not any(r["problems"] for r in rows)


def test_a_second_page_in_the_same_place_drops_stale_pictures(run: Path, tmp_path: Path) -> None:
    report = json.loads((run / "run.json").read_text())
    report["files"] = report["files"][:2]
    (tmp_path / "small.json").write_text(json.dumps(report))
    page = tmp_path / "p.html"
    assert _invoke(upscale_review, run / "run.json", "-o", page, "-q").exit_code == 0
    many = len(list((tmp_path / "p_files").iterdir()))
    assert _invoke(upscale_review, tmp_path / "small.json", "-o", page, "-q").exit_code == 0
    kept = {p.name for p in (tmp_path / "p_files").iterdir()}
    wanted = {name for row in page_data(page)["rows"] for name in row["img"].values()}
    assert kept == wanted | {MARKER} and len(kept) < many


def test_a_report_that_is_not_one_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text("{not json")
    result = _invoke(upscale_review, tmp_path / "r.json", "-o", tmp_path / "p.html")
    assert result.exit_code == 2 and "not a report written by upscale --report" in result.output
    assert not (tmp_path / "p.html").exists()


# -- the pictures ---------------------------------------------------------------------------------


def test_detail_region_finds_the_busy_patch() -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    colour = np.full((700, 900, 3), 120, np.uint8)
    colour[400:480, 610:700] = rng.integers(0, 256, (80, 90, 3), dtype=np.uint8)
    small = (300, 233)  # searched on a reduced copy, placed back in full-size pixels

    def region(alpha: np.ndarray | None) -> list[int]:
        rgb = Image.fromarray(colour).resize(small, Image.Resampling.LANCZOS)
        mask = None if alpha is None else Image.fromarray(alpha).resize(small)
        return detail_region(rgb, mask, (700, 900), (64, 64))

    x, y, w, h = region(None)
    assert (w, h) == (64, 64) and 600 <= x <= 640 and 390 <= y <= 420
    alpha = np.full((700, 900), 255, np.uint8)
    alpha[380:500, 590:720] = 0  # transparent there: the busy patch is not seen
    colour[100:150, 100:150] = rng.integers(0, 256, (50, 50, 3), dtype=np.uint8)
    x, y, _, _ = region(alpha)
    assert 80 <= x <= 110 and 80 <= y <= 110


def test_shading_lights_flat_and_tilted_normals() -> None:
    flat = np.zeros((4, 5, 3), np.uint8) + np.array([128, 128, 255], np.uint8)
    left = np.zeros((4, 5, 3), np.uint8) + np.array([37, 128, 218], np.uint8)  # faces -x
    a, b = shade(flat), shade(left)
    assert a.shape == (4, 5) and (a == a[0, 0]).all() and b[0, 0] > a[0, 0]
    two_channel = flat.copy()
    two_channel[:, :, 2] = 0  # RG map: Z rebuilt, so it lights as the flat one
    assert abs(int(shade(two_channel)[0, 0]) - int(a[0, 0])) <= 1


def test_tile_junction_is_the_four_corners_at_full_size(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    out = rng.integers(0, 256, (300, 260, 3), dtype=np.uint8)
    Image.fromarray(out).save(tmp_path / "out.png")
    pictures = make_pictures("", str(tmp_path / "out.png"), tmp_path, "00000", wrap=(True, True))
    junction = np.asarray(Image.open(tmp_path / pictures.files["junction"]))
    assert junction.shape == (192, 192, 3)
    assert (junction[:96, :96] == out[-96:, -96:]).all()
    assert (junction[96:, 96:] == out[:96, :96]).all()
    assert pictures.view == [260, 300]  # never enlarged: width, height
