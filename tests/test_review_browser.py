"""The review page in a real browser: Debian's Chromium, headless, driven by Playwright (which
never downloads a browser here: it is pointed at the system one).

Skipped only when no Chromium can be found; under CI (``CI`` set) that is a failure, since
``.ci/run`` installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Page, Route, sync_playwright
from review_helpers import FAILING, ODD_NAME, make_batch, page_data

from upscaler.review import render

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        found = candidate and shutil.which(candidate)
        if found:
            return found
    return None


CHROMIUM = _chromium()
if CHROMIUM is None:
    if os.environ.get("CI"):
        raise RuntimeError("CI: no chromium on PATH; .ci/run should have installed it")
    pytest.skip(
        "no Chromium found (apt-get install chromium, or set CHROMIUM=/path/to/chromium)",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory, tiny_x2: Path) -> Path:
    """The mixed batch upscaled by the real command in a subprocess, with a page whose name has a
    space (its pictures folder must still be found)."""
    root = tmp_path_factory.mktemp("browser")
    make_batch(root / "in")
    command = [sys.executable, "-m", "upscaler", str(root / "in"), "-o", str(root / "out")]
    command += ["--model", str(tiny_x2), "-q", "--review", str(root / "review page.html")]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1, proc.stderr
    return root / "review page.html"


class Browser:
    """One headless Chromium with a fresh profile; records every request, and lets through only
    file: and data: URLs."""

    def __init__(self, profile: Path) -> None:
        self._driver = sync_playwright().start()
        self.context = self._driver.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1400, "height": 900},
        )
        self.requests: list[str] = []
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._route)

    def _route(self, route: Route) -> None:
        url = route.request.url
        if url.startswith(("file:", "data:")):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def open(self, page_path: Path, fragment: str = "") -> Page:
        page = self.context.new_page()
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.goto(page_path.as_uri() + fragment)
        page.wait_for_selector("body[data-ready]")
        return page

    def close(self) -> None:
        self.context.close()
        self._driver.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    b = Browser(tmp_path_factory.mktemp("chromium-profile"))
    yield b
    b.close()


def _visible_names(page: Page) -> list[str]:
    """Rows actually laid out (not just marked), in display order."""
    return page.eval_on_selector_all(
        "#list li.row",
        "rows => rows.filter(r => r.getClientRects().length).map(r => r.dataset.name)",
    )


def _wait(page: Page, condition: str, timeout: float = 10.0) -> None:
    """Poll a JS expression (the page's CSP forbids the eval that wait_for_function uses)."""
    end = time.monotonic() + timeout
    while not page.evaluate(condition):
        assert time.monotonic() < end, f"timed out waiting for {condition}"
        page.wait_for_timeout(50)


def _selected(page: Page) -> str | None:
    return page.get_attribute("#list li[aria-selected=true]", "data-name")


def test_every_texture_is_listed_failures_first(batch: Path, browser: Browser) -> None:
    page = browser.open(batch)
    names = _visible_names(page)
    expected = {r["name"] for r in page_data(batch)["rows"]}
    assert len(names) == len(expected) == 9 and set(names) == expected
    assert set(names[: len(FAILING)]) == FAILING  # failures first
    assert ODD_NAME in page.inner_text("#list")
    assert page.inner_text("#count") == "showing 9 of 9"
    assert _selected(page) in FAILING and "Failed:" in page.inner_text("#detail")
    assert not browser.errors
    page.close()


def test_the_slider_moves(batch: Path, browser: Browser) -> None:
    page = browser.open(batch, "#duct.png")
    assert _selected(page) == "duct.png"
    clip = "document.querySelector('.compare .before').style.clipPath"
    assert page.evaluate(clip) == "inset(0px 50% 0px 0px)"
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.input_value("#slider") == "60"
    assert page.evaluate(clip) == "inset(0px 40% 0px 0px)"
    box = page.locator(".compare").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.25, box["y"] + box["height"] / 2)
    assert abs(float(page.input_value("#slider")) - 25) <= 1
    divider = page.evaluate("parseFloat(document.querySelector('.compare .divider').style.left)")
    assert abs(divider - 25) <= 1
    page.close()


def test_filters_hide_rows(batch: Path, browser: Browser) -> None:
    page = browser.open(batch)
    page.select_option("#f-map", "normal")
    assert _visible_names(page) == ["grass01_n.png"]
    assert page.inner_text("#count") == "showing 1 of 9"
    page.select_option("#f-map", "")
    page.select_option("#f-alpha", "blended")
    assert _visible_names(page) == ["grate01_skin.png"]
    page.select_option("#f-alpha", "")
    page.check("#f-failed")
    assert set(_visible_names(page)) == FAILING
    page.uncheck("#f-failed")
    page.check("#f-notes")
    # planks_n is named as a normal map but is not; the duct sample is gray stored as RGB
    assert _visible_names(page) == ["duct.png", "sub/planks_n.png"]
    page.uncheck("#f-notes")
    page.fill("#f-text", "wood")
    assert _visible_names(page) == ["wood_planks1.png"]
    hidden = page.locator("#list li.row[hidden]").count()
    assert hidden == 8 and not page.locator("#list li[data-name='duct.png']").is_visible()
    page.close()


def test_sort_and_keyboard_navigation(batch: Path, browser: Browser) -> None:
    page = browser.open(batch)
    rows = {r["name"]: r for r in page_data(batch)["rows"]}
    page.select_option("#sort", "time")
    page.click("#sort-dir")  # descending: slowest first
    names = _visible_names(page)
    assert set(names[:2]) == FAILING  # failures stay first whatever the order
    seconds = [rows[n]["seconds"] for n in names[2:]]
    assert seconds == sorted(seconds, reverse=True)
    page.select_option("#sort", "size")
    names = _visible_names(page)
    assert names[-1] == ODD_NAME  # 17 x 11: the smallest, last in descending order
    page.select_option("#sort", "name")
    page.click("#sort-dir")
    names = _visible_names(page)
    page.click("#list li[data-name='duct.png']")
    start = names.index("duct.png")
    page.keyboard.press("j")
    assert _selected(page) == names[start + 1]
    page.keyboard.press("ArrowDown")
    assert _selected(page) == names[start + 2]
    page.keyboard.press("k")
    assert _selected(page) == names[start + 1]
    assert page.inner_text("#detail h2") == names[start + 1]
    page.keyboard.press("End")
    assert _selected(page) == names[-1]
    page.keyboard.press("f")
    assert set(_visible_names(page)) == FAILING and _selected(page) in FAILING
    page.keyboard.press("/")
    page.keyboard.type("broken")
    assert _visible_names(page) == ["sub/broken.png"]
    page.close()


def test_every_picture_loads_and_nothing_comes_from_the_network(
    batch: Path, browser: Browser, tmp_path: Path
) -> None:
    browser.requests.clear()
    page = browser.open(batch)
    page.keyboard.press("Home")
    for _ in range(9):  # open every texture: all its pictures load
        _wait(page, "[...document.querySelectorAll('#detail img')].every(i => i.complete)")
        broken = page.evaluate(
            "[...document.querySelectorAll('#detail img')].filter(i => !i.naturalWidth).length"
        )
        assert broken == 0 and not page.locator("#detail .missing").count()
        page.keyboard.press("j")
    assert not browser.errors and not browser.blocked
    assert browser.requests and all(u.startswith(("file:", "data:")) for u in browser.requests)
    assert any("review%20page_files/" in u for u in browser.requests)
    page.close()


def test_screenshot_shows_a_texture(batch: Path, browser: Browser, tmp_path: Path) -> None:
    """The picture checked by eye during development; here: it is not blank, and the selected
    texture's views are drawn in it (the output differs from the input)."""
    page = browser.open(batch, "#grate01_skin.png")
    _wait(
        page,
        "[...document.querySelectorAll('#detail img')].every(i => i.complete && i.naturalWidth)",
    )
    shot = tmp_path / "review.png"
    page.screenshot(path=str(shot))
    keep = os.environ.get("REVIEW_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert pixels.shape[:2] == (900, 1400) and pixels.std() > 20
    box = page.locator(".pair img").first.bounding_box()
    other = page.locator(".pair img").nth(1).bounding_box()
    assert (box["width"], box["height"]) == (other["width"], other["height"])  # same size
    page.close()


def test_two_thousand_textures_stay_responsive(batch: Path, browser: Browser) -> None:
    """2,000 rows (hard links to the batch's pictures, so each row has its own URLs): all
    listed, thumbnails fetched lazily, filters and sorting over all of them. Seconds are printed,
    not asserted (benchmarks/review.py measures them)."""
    data = page_data(batch)
    pictures = batch.with_name(data["folder"])
    base = [r for r in data["rows"] if r["status"] == "done"]
    folder = batch.with_name("big_files")
    folder.mkdir()
    rows = []
    for i in range(2000):
        row = dict(base[i % len(base)], id=i, name=f"set{i // 100:02d}/tex{i:04d}.png")
        row["status"] = "failed" if i % 97 == 0 else "done"
        row["img"] = {}
        for kind, name in base[i % len(base)]["img"].items():
            row["img"][kind] = f"{i:05d}-{name.split('-', 1)[1]}"
            os.link(pictures / name, folder / row["img"][kind])
        rows.append(row)
    big = batch.with_name("big.html")
    big.write_text(render(rows, data["summary"], folder.name), encoding="utf-8")
    browser.requests.clear()
    start = time.perf_counter()
    page = browser.open(big)
    loaded = time.perf_counter() - start
    assert page.locator("#list li.row").count() == 2000
    thumbs = [u for u in browser.requests if "thumb-" in u]
    assert len(thumbs) < 200, "thumbnails must load lazily"  # 4,000 if eager
    start = time.perf_counter()
    page.check("#f-failed")
    assert len(_visible_names(page)) == 21
    page.uncheck("#f-failed")
    page.select_option("#sort", "time")
    assert len(_visible_names(page)) == 2000
    filtered = time.perf_counter() - start
    page.keyboard.press("End")
    assert _selected(page) == _visible_names(page)[-1]
    print(f"2000 rows: loaded in {loaded:.2f} s, filter + sort round trip {filtered:.2f} s")
    assert not browser.errors and not browser.blocked
    page.close()
