"""What the review page costs: making its pictures, and a 2,000-texture page in a real browser.

    python benchmarks/review.py                  # 20 textures 256² -> 1024², a 2,000-row page
    python benchmarks/review.py --side 1024 --count 8 --rows 5000

1. Pictures: ``--count`` input/output pairs (the bundled samples tiled up to ``--side``, the
   output a bicubic x``--scale`` of it; no model needed) go through ``write_review``: seconds
   and bytes per texture.
2. Browser: a page of ``--rows`` textures (hard links to those pictures, so every row has its own
   URLs) opens in headless Chromium: seconds until the list is built, image files fetched on load
   (lazy thumbnails), seconds for a filter and back, a sort, and a jump to the last row.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def make_run(work: Path, count: int, side: int, scale: int) -> list[dict[str, object]]:
    import numpy as np
    from PIL import Image

    samples = sorted((ROOT / "samples" / "textures").glob("*.png"))
    (work / "in").mkdir()
    (work / "out").mkdir()
    files = []
    for i in range(count):
        source = Image.open(samples[i % len(samples)]).convert("RGB")
        reps = -(-side // source.width)
        tiled = np.tile(np.asarray(source), (reps, reps, 1))[:side, :side]
        name = f"tex{i:04d}.png"
        Image.fromarray(tiled).save(work / "in" / name)
        big = Image.fromarray(tiled).resize((side * scale,) * 2, Image.Resampling.BICUBIC)
        big.save(work / "out" / name, compress_level=1)
        files.append(
            {
                "source": str(work / "in" / name),
                "target": str(work / "out" / name),
                "status": "done",
                "seconds": 1.0 + i % 7,
                "input_size": [side, side],
                "output_size": [side * scale] * 2,
                "wrap": [True, True],
                "map": "color",
                "alpha": "absent",
                "notes": [],
            }
        )
    return files


def pictures(work: Path, files: list[dict[str, object]], workers: int) -> dict[str, float]:
    from upscaler.review import ReviewPaths, write_review

    paths = ReviewPaths.beside(work / "small.html")
    start = time.perf_counter()
    write_review(paths, files, {"model": "bicubic", "output": str(work / "out")}, workers=workers)
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in paths.folder.iterdir())
    return {
        "textures": len(files),
        "seconds_per_texture": seconds / len(files),
        "kib_per_texture": size / len(files) / 1024,
    }


def browser(work: Path, rows: int, chromium: str) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    from upscaler.review import render

    small = json.loads(
        (work / "small.html").read_text().split('id="review-data">', 1)[1].split("</script>")[0]
    )
    folder = work / "big_files"
    folder.mkdir()
    base = small["rows"]
    page_rows = []
    for i in range(rows):
        row = dict(base[i % len(base)], id=i, name=f"set{i // 100:03d}/tex{i:05d}.png")
        row["status"] = "failed" if i % 97 == 0 else "done"
        row["img"] = {}
        for kind, name in base[i % len(base)]["img"].items():
            row["img"][kind] = f"{i:05d}-{name.split('-', 1)[1]}"
            os.link(work / "small_files" / name, folder / row["img"][kind])
        page_rows.append(row)
    page_path = work / "big.html"
    page_path.write_text(render(page_rows, small["summary"], folder.name), encoding="utf-8")
    requests: list[str] = []
    with sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            str(work / "profile"),
            executable_path=chromium,
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 900},
        )
        page = context.new_page()
        page.on("request", lambda r: requests.append(r.url))
        start = time.perf_counter()
        page.goto(page_path.as_uri())
        page.wait_for_selector("body[data-ready]")
        loaded = time.perf_counter() - start
        page.wait_for_timeout(1000)  # let the lazy loads that start settle
        fetched = sum("thumb-" in u for u in requests)

        def timed(action: str) -> float:
            t = time.perf_counter()
            page.evaluate(action)
            page.evaluate("new Promise(r => requestAnimationFrame(() => r()))")  # laid out
            return time.perf_counter() - t

        check = "f => { const c = document.getElementById('f-failed'); c.checked = f; "
        check += "c.dispatchEvent(new Event('change')); }"
        result = {
            "rows": rows,
            "load_seconds": loaded,
            "thumbnails_fetched_on_load": fetched,
            "thumbnails_in_page": 2 * rows,
            "filter_failed_seconds": timed(f"({check})(true)"),
            "unfilter_seconds": timed(f"({check})(false)"),
            "sort_by_time_seconds": timed(
                "(() => { const s = document.getElementById('sort'); s.value = 'time'; "
                "s.dispatchEvent(new Event('change')); })()"
            ),
            "jump_to_last_seconds": timed(
                "document.dispatchEvent(new KeyboardEvent('keydown', {key: 'End'}))"
            ),
        }
        context.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20, help="textures whose pictures are made")
    parser.add_argument("--side", type=int, default=256, help="input side in pixels")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows", type=int, default=2000, help="rows of the browser page")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/review.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = make_run(work, args.count, args.side, args.scale)
        result = {"pictures": pictures(work, files, args.workers), "side": args.side}
        result["browser"] = browser(work, args.rows, args.chromium)
    for part in ("pictures", "browser"):
        for key, value in result[part].items():  # type: ignore[union-attr]
            print(
                f"{part:9} {key:28} {value:.3f}"
                if isinstance(value, float)
                else f"{part:9} {key:28} {value}"
            )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
