"""The rules file (glob -> options) and per-file decisions in the command's report."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import DATA, within
from PIL import Image

from upscaler import options
from upscaler.cli import main
from upscaler.process import TextureOptions
from upscaler.rules import OPTIONS, Rules, RulesError, compile_glob
from upscaler.texture import resample


@pytest.mark.parametrize(
    ("pattern", "matching", "not_matching"),
    [
        ("*_mask.png", ["a_mask.png", "env/rock/B_MASK.PNG"], ["a_mask.tga", "a_mask.png/x"]),
        ("env/*.png", ["env/a.png"], ["env/rock/a.png", "x/env/a.png"]),
        ("env/**/*.png", ["env/a.png", "env/rock/deep/a.png"], ["x/env/a.png"]),
        ("foliage/", ["foliage/a.png", "maps/foliage/b/c.dds"], ["foliage.png", "xfoliage/a.png"]),
        ("**", ["a.png", "x/y/z.dds"], []),
        ("ui/icon_?.png", ["ui/icon_1.png"], ["ui/icon_10.png"]),
        ("[ab]_n.png", ["a_n.png", "x/b_n.png"], ["c_n.png"]),
        ("[!ab]_n.png", ["c_n.png"], ["a_n.png"]),
    ],
)
def test_glob_semantics(pattern: str, matching: list[str], not_matching: list[str]) -> None:
    glob = compile_glob(pattern)
    for path in matching:
        assert glob.matches(path), (pattern, path)
    for path in not_matching:
        assert not glob.matches(path), (pattern, path)


def _reference_regex(pattern: str) -> re.Pattern[str]:
    """The glob as the regex it used to be compiled to (backtracking: small inputs only)."""
    p = pattern.strip().replace("\\", "/")
    anchored = "/" in p.rstrip("/")
    p = p.lstrip("/")
    p += "**" if p.endswith("/") else ""
    out, i = [], 0
    while i < len(p):
        if p.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif p.startswith("**", i):
            out.append(".*")
            i += 2
        elif p[i] in "*?":
            out.append("[^/]*" if p[i] == "*" else "[^/]")
            i += 1
        elif p[i] == "[" and "]" in p[i + 2 :]:
            end = p.index("]", i + 2)
            body = p[i + 1 : end]
            out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
            i = end + 1
        else:
            out.append(re.escape(p[i]))
            i += 1
    return re.compile(("" if anchored else "(?:.*/)?") + "".join(out), re.IGNORECASE | re.DOTALL)


def test_globs_match_as_the_regexes_they_replace() -> None:
    """Random globs over a small alphabet against random paths: the automaton says what the
    regex translation said, for every pair."""
    rng = random.Random(23)
    pieces = ["a", "B", "/", "*", "**", "**/", "?", "[ab]", "[!a]", "[a-c]", "."]
    letters = "aAbBc/."
    for _ in range(400):
        pattern = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 7)))
        glob, regex = compile_glob(pattern), _reference_regex(pattern)
        for _ in range(25):
            path = "".join(rng.choice(letters) for _ in range(rng.randint(0, 9)))
            assert glob.matches(path) == bool(regex.fullmatch(path)), (pattern, path)


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ("**/" * 40 + "x.png", "/".join(["d"] * 200) + "/y.png"),
        ("*a" * 40 + "*b", "a" * 4000),
        ("**a" * 40 + "**b", "a/" * 2000),
        ("?*" * 300 + "b", "a" * 4000),
    ],
)
def test_pathological_globs_match_in_milliseconds(pattern: str, path: str) -> None:
    """Regexes took minutes here (backtracking); the automaton is linear in the path."""
    rules = Rules.parse(f'["{pattern}"]\nmap = "data"\n')
    start = time.perf_counter()
    for _ in range(3):
        assert rules.settings(path) == {}
    assert time.perf_counter() - start < 1.0


def test_a_pattern_longer_than_any_path_is_refused() -> None:
    with pytest.raises(RulesError, match="longer than 1,024"):
        Rules.parse(f'["{"*a" * 600}"]\nmap = "data"\n', "rules.toml")


def test_later_rules_win_and_options_apply() -> None:
    rules = Rules.parse(
        """
        ["**"]
        native = true
        ["env/**"]
        map = "data"
        output_scale = 2
        ["env/rock/*_n.png"]
        map = "normal"
        format = "dds"
        dds_format = "bc5"
        dds_quality = "best"
        """
    )
    base = TextureOptions(seamless="off")
    rock = rules.options_for("env/rock/a_n.png", base)
    assert (rock.map, rock.native, rock.output_scale, rock.dds_format, rock.dds_quality) == (
        "normal",
        False,
        2.0,
        "bc5",
        "best",
    )
    assert rock.seamless == "off"  # untouched options keep the command line's value
    assert rules.options_for("ui/a.png", base).native
    assert rules.format_for("env/rock/a_n.png") == "DDS" and rules.format_for("ui/a.png") is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('["*.png"]\nmaps = "data"', "unknown option 'maps' (valid: map, alpha, seamless"),
        ('["*.png"]\nmap = "roughness"', "map must be one of"),
        ('["*.png"]\nnative = "yes"', "native must be a bool"),
        ('["*.png"]\noutput_scale = 100', "output scale must be in"),
        ('["*.png"]\nformat = "gif"', "format must be one of"),
        ('["*.png"]\ndds_quality = "ultra"', "dds_quality must be one of"),
        ('["*.png"]\nalpha = 1', "alpha must be a str"),
        ('"*.png" = "data"', "must be a table of options"),
        ('["*.png"\nmap = "data"', "not valid TOML"),
    ],
)
def test_bad_rules_are_refused_with_the_rule_named(text: str, message: str) -> None:
    with pytest.raises(RulesError, match=message.replace("(", r"\(")) as info:
        Rules.parse(text, "rules.toml")
    assert str(info.value).startswith("rules.toml") and "\n" not in str(info.value)


def test_choices_are_defined_once_and_help_needs_no_torch() -> None:
    code = "import sys, upscaler.cli; print('torch' in sys.modules, 'PIL' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
    assert tuple(resample.KERNELS) == options.FILTER_KERNELS  # the names of what it implements
    assert set(OPTIONS) <= {f.name for f in TextureOptions.__dataclass_fields__.values()} | {
        "format"
    }


def _invoke(*args: object) -> object:
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_rules_file_over_a_batch_and_the_report(tmp_path: Path, tiny_x2: Path) -> None:
    src = tmp_path / "in"
    (src / "env").mkdir(parents=True)
    (src / "ui").mkdir()
    shutil.copy(DATA / "grass01_n.png", src / "env")
    shutil.copy(DATA / "grate01_skin.png", src / "env")
    shutil.copy(DATA / "redrock01_tile.png", src / "env" / "redrock01_n.png")  # misnamed
    shutil.copy(DATA / "jar_diffuse2.png", src / "ui" / "jar_mask.png")
    rules = tmp_path / "rules.toml"
    rules.write_text('["ui/"]\nnative = true\nalpha = "cutout"\nformat = "tga"\n')
    report = tmp_path / "report.json"
    result = _invoke(
        src, "-o", tmp_path / "out", "--model", tiny_x2, "-q", "--rules", rules, "--report", report
    )
    assert result.exit_code == 0, result.output
    files = {Path(f["source"]).name: f for f in json.loads(report.read_text())["files"]}
    assert (files["grass01_n.png"]["map"], files["grass01_n.png"]["alpha"]) == ("normal", "absent")
    assert files["grate01_skin.png"]["alpha"] == "cutout"
    assert files["grate01_skin.png"]["wrap"] == [True, False]
    misnamed = files["redrock01_n.png"]
    assert misnamed["map"] == "color" and "not unit vectors" in misnamed["notes"][0]
    jar = files["jar_mask.png"]
    assert (jar["map"], jar["alpha"], jar["output_size"]) == ("data", "cutout", [32, 36])
    with Image.open(tmp_path / "out" / "ui" / "jar_mask.tga") as im:
        assert im.size == (36, 32) and im.mode == "RGBA"


def test_bad_rules_file_is_a_usage_error(tmp_path: Path, tiny_x2: Path) -> None:
    shutil.copy(DATA / "grass01_n.png", tmp_path)
    rules = tmp_path / "rules.toml"
    rules.write_text('["*.png"]\nmodel = "x"\n')
    result = _invoke(
        tmp_path / "grass01_n.png", "-o", tmp_path / "out", "--model", tiny_x2, "--rules", rules
    )
    assert result.exit_code == 2 and "unknown option 'model'" in result.output
    assert not (tmp_path / "out").exists()


def test_rules_files_are_regular_files_of_bounded_size(tmp_path: Path) -> None:
    """A FIFO is refused without waiting for a writer, a device without reading it, and a file
    over the cap without reading it to the end; deep nesting is a one-line TOML error."""
    fifo = tmp_path / "rules.toml"
    os.mkfifo(fifo)
    with pytest.raises(RulesError, match="is a FIFO, not a regular file"):
        within(5, lambda: Rules.load(fifo), fifo)
    with pytest.raises(RulesError, match="is a character device, not a regular file"):
        Rules.load(Path("/dev/zero"))
    big = tmp_path / "big.toml"
    big.write_bytes(b"# " + b"x" * (1 << 20) + b"\n")
    with pytest.raises(RulesError, match="larger than 1,048,576 bytes"):
        Rules.load(big)
    deep = tmp_path / "deep.toml"
    for text in ("a = " + "[" * 5000 + "]" * 5000, "a = " + "{b=" * 5000 + "1" + "}" * 5000):
        deep.write_text(text)
        with pytest.raises(RulesError, match="nested too deep") as info:
            Rules.load(deep)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["fifo", "device", "deep"])
def test_unusable_rules_files_are_one_line_usage_errors(
    tmp_path: Path, tiny_x2: Path, kind: str
) -> None:
    shutil.copy(DATA / "grass01_n.png", tmp_path)
    rules = tmp_path / "rules.toml"
    if kind == "fifo":
        os.mkfifo(rules)
    elif kind == "device":
        rules = Path("/dev/zero")
    else:
        rules.write_text("x = " + "[" * 3000 + "]" * 3000)
    args = [tmp_path / "grass01_n.png", "-o", tmp_path / "out", "--model", tiny_x2]
    result: Any = within(10, lambda: _invoke(*args, "--rules", rules, "--dry-run"), rules)
    assert result.exit_code == 2, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error:") and str(rules) in last and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_map_and_alpha_overrides_on_the_command_line(tmp_path: Path, tiny_x2: Path) -> None:
    shutil.copy(DATA / "grate01_skin.png", tmp_path)
    report = tmp_path / "r.json"
    result = _invoke(
        tmp_path / "grate01_skin.png",
        "-o",
        tmp_path / "out",
        "--model",
        tiny_x2,
        "-q",
        "--map",
        "data",
        "--alpha",
        "blended",
        "--seamless",
        "x",
        "--report",
        report,
    )
    assert result.exit_code == 0
    entry = json.loads(report.read_text())["files"][0]
    assert (entry["map"], entry["alpha"], entry["wrap"]) == ("data", "blended", [False, True])


def test_a_file_whose_analysis_fails_fails_alone(
    tmp_path: Path, tiny_x2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from upscaler import runner

    real = runner.plan_texture

    def flaky(image, name, options, **kwargs):  # type: ignore[no-untyped-def]
        if Path(name).name.startswith("grate"):
            raise ValueError("injected")
        return real(image, name, options, **kwargs)

    monkeypatch.setattr(runner, "plan_texture", flaky)
    shutil.copy(DATA / "grate01_skin.png", tmp_path)
    shutil.copy(DATA / "grass01_n.png", tmp_path)
    report = tmp_path / "r.json"
    result = _invoke(tmp_path, "-o", tmp_path / "out", "--model", tiny_x2, "-q", "--report", report)
    assert result.exit_code == 1
    status = {Path(f["source"]).name: f for f in json.loads(report.read_text())["files"]}
    assert status["grate01_skin.png"]["status"] == "failed"
    assert "injected" in status["grate01_skin.png"]["reason"]
    assert status["grass01_n.png"]["status"] == "done"
