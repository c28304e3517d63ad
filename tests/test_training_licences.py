"""``prepare`` on an unpacked Debian package: each kept file's licence, from the package's
copyright file, and the package's desktop images left out."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from helpers import make_pixels
from PIL import Image

from training.cli import main
from training.licences import licences, match_dep5, parse_dep5
from training.prepare import PrepareOptions, prepare

# As Debian's packages write them: patterns name the source tree (data/, engine/), which
# dpkg -x installs elsewhere (usr/share/games/tinygame/); a Files field continues over lines.
DEP5 = """\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: tinygame

Files: *
Copyright: 2020 The Tiny Team
License: GPL-2+

Files: tinygame/*
Copyright: 2020 The Tiny Team
License: MIT
Comment: the engine's sources, not the installed data folder of the same name

Files: data/textures/rock*.png
 data/textures/lava.png
Copyright: 2021 A. Painter
License: CC-BY-SA-3.0
 The licence text, which is not its name.

Files: *.jpg
Copyright: 2022 A. Photographer
License: CC0-1.0

Files: debian/*
Copyright: 2023 A. Packager
License: GPL-3+

License: GPL-2+
 A stand-alone licence text paragraph: no Files, no match.
"""

DOC = "usr/share/doc/tinygame-data/copyright"
GAME = "usr/share/games/tinygame"


def _unpacked_package(root: Path, copyright_text: str | None = DEP5) -> None:
    """A tiny ``dpkg -x`` tree: five textures that ``prepare`` keeps, one it drops."""
    textures = root / GAME / "textures"
    textures.mkdir(parents=True)
    for seed, name in enumerate(("rock1.png", "rock_moss.png", "lava.png", "grass.png"), 1):
        Image.fromarray(make_pixels(40, 48, 3, seed=seed)).save(textures / name)
    Image.fromarray(make_pixels(90, 80, 3, seed=9)).save(textures / "sky.jpg", quality=95)
    Image.fromarray(make_pixels(12, 40, 3, seed=10)).save(textures / "tiny.png")  # too small
    if copyright_text is not None:
        (root / DOC).parent.mkdir(parents=True)
        (root / DOC).write_text(copyright_text)


def _manifest(out: Path) -> dict[str, dict]:
    return {m["source"]: m for m in map(json.loads, (out / "manifest.jsonl").open())}


def test_prepare_records_the_licence_of_each_kept_file(tmp_path: Path) -> None:
    src, out = tmp_path / "tinygame-data", tmp_path / "set"
    _unpacked_package(src)
    prepared = prepare(src, out, PrepareOptions(min_size=32, workers=1))
    kept = _manifest(out)
    licence = {Path(s).name: m["licence"] for s, m in kept.items()}
    assert licence == {
        "rock1.png": "CC-BY-SA-3.0",  # data/textures/rock*.png, installed under GAME
        "rock_moss.png": "CC-BY-SA-3.0",
        "lava.png": "CC-BY-SA-3.0",  # the second line of the Files field
        "grass.png": "GPL-2+",  # no specific pattern: the default, never tinygame/*'s MIT
        "sky.jpg": "CC0-1.0",  # *.jpg matches across directories
    }
    origin = {Path(s).name: m["licence_from"] for s, m in kept.items()}
    assert origin["rock1.png"] == (
        f"{DOC}: Files: data/textures/rock*.png (as .../textures/rock*.png)"
    )
    assert origin["grass.png"] == f"{DOC}: the default Files: * (no specific pattern matched)"
    assert prepared.licences == {"CC-BY-SA-3.0": 3, "GPL-2+": 1, "CC0-1.0": 1}
    assert prepared.counts["color"] == 5 and prepared.has_copyright


def test_a_pattern_drops_no_more_directories_than_it_needs() -> None:
    """``share/game/Data/Graphics/*`` fits ``.../game/Data/Graphics/`` and so is never loosened
    to ``Graphics/*``, which would take in a theme's ``Graphics`` folder too."""
    text = DEP5.replace("data/textures/rock*.png", "share/game/Data/Graphics/*")
    src = Path("/dump")
    files = [
        src / "usr/share/games/game/Data/Graphics/hog.png",
        src / "usr/share/games/game/Data/Themes/Cave/Graphics/rock.png",
    ]
    paragraphs = parse_dep5(text)
    assert paragraphs is not None and paragraphs[2].patterns == (
        "share/game/Data/Graphics/*",
        "data/textures/lava.png",
    )
    relative = [str(f.relative_to(src)) for f in files]
    matched = match_dep5(paragraphs, relative, DOC)
    assert matched[relative[0]].name == "CC-BY-SA-3.0"
    assert matched[relative[1]].name == "GPL-2+"


def test_a_copyright_file_that_is_not_dep5_is_pointed_to_not_guessed(tmp_path: Path) -> None:
    src = tmp_path / "oldgame-data"
    _unpacked_package(src, "This package was debianized by someone.\n\nLicense: ISC\n")
    files = sorted((src / GAME).rglob("*.png"))
    found = licences(src, files)
    assert {f.name for f in found.values()} == {f"see {DOC}"}
    assert all(f.origin == f"{DOC}: not DEP-5" for f in found.values())


def test_cli_counts_licences_and_warns_when_there_is_no_copyright_file(tmp_path: Path) -> None:
    src, out = tmp_path / "tinygame-data", tmp_path / "set"
    _unpacked_package(src)
    result = CliRunner().invoke(main, ["prepare", str(src), str(out), "--min-size", "32"])
    assert result.exit_code == 0, result.output
    assert "; licences: 3 CC-BY-SA-3.0, 1 GPL-2+, 1 CC0-1.0; manifest:" in result.output
    assert "no licence record" not in result.output

    bare, out = tmp_path / "bare", tmp_path / "bare-set"
    _unpacked_package(bare, None)
    result = CliRunner().invoke(main, ["prepare", str(bare), str(out), "--min-size", "32"])
    assert result.exit_code == 0, result.output
    assert "; licences: 5 unknown;" in result.output
    assert (
        f"warning: 5 files have no licence record: {bare} has no usr/share/doc/*/copyright"
        in result.output
    )
    assert {m["licence"] for m in _manifest(out).values()} == {"unknown"}


def test_prepare_leaves_out_the_desktop_icon_and_screenshots(tmp_path: Path) -> None:
    src, out = tmp_path / "tinygame-data", tmp_path / "set"
    _unpacked_package(src)
    icon = src / "usr/share/icons/hicolor/128x128/apps/tinygame.png"
    icon.parent.mkdir(parents=True)
    Image.fromarray(make_pixels(48, 48, 3, seed=11)).save(icon)
    Image.fromarray(make_pixels(40, 60, 3, seed=12)).save(src / GAME / "Screenshot_01.png")
    prepare(src, out, PrepareOptions(min_size=32, workers=1))
    dropped = {d["source"]: d["reason"] for d in map(json.loads, (out / "dropped.jsonl").open())}
    assert dropped["usr/share/icons/hicolor/128x128/apps/tinygame.png"] == (
        "a desktop file (under usr/share/icons/), not a game texture"
    )
    assert dropped[f"{GAME}/Screenshot_01.png"] == "a screenshot by its name, not a texture"
    assert len(_manifest(out)) == 5  # the package's textures all stay


def test_prepare_that_keeps_nothing_still_says_what_it_dropped(tmp_path: Path) -> None:
    """Minetest's 16 px textures at --min-size 128: an empty set, and every reason written."""
    src, out = tmp_path / "tinygame-data", tmp_path / "set"
    _unpacked_package(src)
    prepared = prepare(src, out, PrepareOptions(min_size=512, workers=1))
    assert prepared.counts["dropped"] == 6 and prepared.licences == {}
    assert (out / "manifest.jsonl").read_text() == ""
    dropped = [json.loads(line)["reason"] for line in (out / "dropped.jsonl").open()]
    assert len(dropped) == 6 and all(r.startswith("too small") for r in dropped)
