"""Training config: TOML recipes, strict keys and types, command-line overrides, schedules."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from training_helpers import RECIPES

from training.cli import main
from training.config import ConfigError, OptimConfig, config_from_dict, load_config, to_dict
from training.schedule import lr_factor


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_loads_and_round_trips_through_a_dict(recipe: str) -> None:
    config = load_config(recipe)
    assert config.run.name == recipe
    assert config.model.scale == (2 if "x2" in recipe else 4)
    assert config_from_dict(to_dict(config)) == config
    if recipe.endswith("gan"):
        # Works without pretrained weights: feature matching, not VGG/LPIPS, by default.
        assert config.loss.feature_match_weight > 0 and config.loss.lpips_weight == 0
        assert config.loss.vgg_weight == 0 and 0 < config.loss.gan_weight <= 0.1
        assert config.model.init_from == f"runs/{recipe.replace('gan', 'psnr')}"
    else:
        assert not config.loss.adversarial


def test_game_texture_mix_has_point_sampling_block_compression_and_no_camera_noise() -> None:
    degrade = load_config("compact-x4-psnr").degrade
    assert "nearest" in degrade.down_kernels and degrade.bc_prob > 0
    assert degrade.noise_prob == 0 and degrade.jpeg_prob > 0 and degrade.jpeg_quality[0] >= 70


def test_unknown_keys_are_rejected_with_the_valid_ones(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[optim]\nlearnig_rate = 1e-4\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "bad.toml" in message and "learnig_rate" in message and "learning_rate" in message
    with pytest.raises(ConfigError, match="unknown key.*top level.*valid keys: run, model"):
        config_from_dict({"trainer": {}})


@pytest.mark.parametrize(
    ("override", "value"),
    [
        ("optim.learning_rate=1e-4", 1e-4),
        ("optim.milestones=[10, 20]", (10, 20)),
        ("run.name=other", "other"),
        ("run.deterministic=true", True),
        ("optim.learning_rate=1", 1.0),
    ],
)
def test_overrides_read_toml_values_and_bare_words(override: str, value: object) -> None:
    config = load_config("compact-x4-psnr", [override])
    section, key = override.split("=")[0].split(".")
    assert getattr(getattr(config, section), key) == value


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.learning_rate=fast", "optim.learning_rate must be float"),
        ("run.max_steps=1.5", "run.max_steps must be int"),
        ("loss.gan_type=wgan-lp", "loss.gan_type must be one of"),
        ("data.crop_size=30", "multiple of model.scale"),
        ("degrade.down_kernels=['box']", "degrade.down_kernels must be one of"),
        ("optim.betas=[0.9]", "optim.betas must have 2 entries"),
        ("learning_rate", "section.key=value"),
    ],
)
def test_bad_overrides_say_what_is_wrong(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("compact-x4-psnr", [override])


def test_fit_cli_reports_config_errors_in_one_line() -> None:
    result = CliRunner().invoke(main, ["fit", "compact-x4-psnr", "--set", "optim.lr=1"])
    assert result.exit_code == 2
    assert "unknown key(s) lr in [optim]; valid keys: learning_rate" in result.output
    missing = CliRunner().invoke(main, ["fit", "no-such-recipe"])
    assert missing.exit_code == 2 and "compact-x4-psnr" in missing.output


def test_a_mistyped_recipe_name_gets_the_closest_recipes() -> None:
    result = CliRunner().invoke(main, ["fit", "compact-x4-psrn"])
    assert result.exit_code == 2
    assert result.output.rstrip().endswith("did you mean compact-x4-psnr or compact-x2-psnr?")
    far = CliRunner().invoke(main, ["fit", "no-such-recipe"])
    assert far.exit_code == 2 and "did you mean" not in far.output


def test_learning_rate_schedules() -> None:
    multi = OptimConfig(schedule="multistep", milestones=(10, 20), gamma=0.5, warmup_steps=4)
    assert [lr_factor(s, 30, multi) for s in (0, 3, 4, 10, 25)] == [0.25, 1.0, 1.0, 0.5, 0.25]
    cosine = OptimConfig(schedule="cosine", min_lr_ratio=0.1)
    assert lr_factor(0, 100, cosine) == pytest.approx(1.0)
    assert lr_factor(50, 100, cosine) == pytest.approx(0.55)
    assert lr_factor(100, 100, cosine) == pytest.approx(0.1)


def test_fit_names_missing_data_paths_before_building_anything(tmp_path: Path) -> None:
    pack = tmp_path / "nope.safetensors"
    result = CliRunner().invoke(
        main, ["fit", "compact-x4-psnr", "--set", f"data.train=[{str(pack)!r}]"]
    )
    assert result.exit_code == 2
    assert f"data.train: {pack} does not exist (make it with upscale-train pack)" in result.output
    (tmp_path / "t").mkdir()
    no_val = CliRunner().invoke(
        main, ["fit", "compact-x4-psnr", "--set", f"data.train=[{str(tmp_path / 't')!r}]"]
    )
    assert "val.folder: data/val is not a folder" in no_val.output


def test_a_recipe_inherits_its_base_and_replaces_only_the_keys_it_sets(tmp_path: Path) -> None:
    (tmp_path / "parent.toml").write_text(
        'base = "compact-x4-psnr"\n[run]\nname = "parent"\n[degrade]\nbc_prob = 0.9\n'
    )
    (tmp_path / "child.toml").write_text(
        'base = "parent"\n[run]\nname = "child"\n[optim]\nmilestones = [7]\n'
    )
    shipped, child = load_config("compact-x4-psnr"), load_config(tmp_path / "child.toml")
    assert child.run.name == "child" and child.optim.milestones == (7,)
    assert child.degrade.bc_prob == 0.9  # from the parent, which sits beside the child
    assert child.degrade.down_kernels == shipped.degrade.down_kernels  # from the grandparent
    assert child.optim.learning_rate == shipped.optim.learning_rate
    overridden = load_config(tmp_path / "child.toml", ["degrade.bc_prob=0.1"])
    assert overridden.degrade.bc_prob == 0.1  # --set still has the last word


def test_inheritance_errors_name_the_files(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('base = "b"\n')
    (tmp_path / "b.toml").write_text('base = "a.toml"\n')
    with pytest.raises(ConfigError, match=r"circle \(a.toml -> b.toml -> a.toml\)"):
        load_config(tmp_path / "a.toml")
    (tmp_path / "c.toml").write_text('base = "no-such-recipe"\n')
    with pytest.raises(ConfigError, match=r"c.toml: base 'no-such-recipe': .*recipes: compact"):
        load_config(tmp_path / "c.toml")
    (tmp_path / "d.toml").write_text("base = 3\n")
    with pytest.raises(ConfigError, match="d.toml: base must name a recipe"):
        load_config(tmp_path / "d.toml")


def test_shipped_recipes_inherit_instead_of_copying_the_degradation_mix() -> None:
    from training.config import RECIPES, recipe_names

    roots = [n for n in recipe_names() if "base" not in (RECIPES / f"{n}.toml").read_text()]
    assert roots == ["compact-x4-psnr"]
    copies = [n for n in recipe_names() if "down_kernels" in (RECIPES / f"{n}.toml").read_text()]
    assert copies == ["compact-x4-psnr"]  # the [degrade] block lives in one file
    assert load_config("compact-x2-gan").degrade == load_config("compact-x4-psnr").degrade


def test_num_workers_default_from_the_cpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    data = load_config("compact-x4-psnr").data
    assert data.num_workers == "auto"
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(16)), raising=False)
    assert data.workers() == 8 and data.workers(world=4) == 3
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    assert data.workers() == 1
    assert load_config("compact-x4-psnr", ["data.num_workers=3"]).data.workers() == 3
    with pytest.raises(ConfigError, match="data.num_workers must be >= 0 or auto"):
        load_config("compact-x4-psnr", ["data.num_workers=many"])


def test_readme_lists_every_recipe_and_shows_list_values_in_set() -> None:
    from training.config import recipe_names

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Training your own model")[1].split("\n## ")[0]
    missing = [name for name in recipe_names() if f"`{name}`" not in section]
    assert not missing, f"recipes the README's training section does not list: {missing}"
    shown = [line for line in section.splitlines() if "--set" in line and "=[" in line]
    assert shown  # a list value on the command line, quoted for the shell
    for line in shown:  # and they parse as the README writes them
        load_config("compact-x4-psnr", [p.split('"')[0] for p in line.split('--set "')[1:]])


def test_fit_help_names_the_common_set_keys() -> None:
    text = CliRunner().invoke(main, ["fit", "--help"]).output
    for key in (
        "run.max_steps=",
        "run.name=",
        "val.folder=",
        "data.crop_size=",
        "model.init_from=",
    ):
        assert f"  {key}" in text, key


def _readme_training_commands() -> list[list[str]]:
    """The ``upscale-train`` lines of the README's training quick start, as the shell splits
    them (continuation lines joined, comments dropped)."""
    import shlex

    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Training your own model")[1].split("\n## ")[0]
    block = section.split("```sh\n")[1].split("```")[0].replace("\\\n", " ")
    lines = [shlex.split(line, comments=True) for line in block.splitlines()]
    return [words for words in lines if words[:1] == ["upscale-train"]]


def test_readme_training_quick_start_names_one_consistent_set_of_paths() -> None:
    """prepare makes the validation folder that both fits name; each fit is bounded and named,
    stage 2 starts from stage 1's run folder, eval and export read stage 2's, and the blend
    reads the two stages' exports."""
    commands = _readme_training_commands()
    kinds = ["prepare", "fit", "fit", "eval", "export", "export", "blend"]
    assert [c[1] for c in commands] == kinds
    prepare = commands[0]
    val = prepare[prepare.index("--val") + 1]
    configs = []
    for fit in commands[1:3]:
        sets = [fit[i + 1] for i, word in enumerate(fit) if word == "--set"]
        config = load_config(fit[2], sets)  # every key as written is valid
        assert config.val.folder == val and 0 < config.run.max_steps <= 10_000
        assert f"run.name={config.run.name}" in sets
        configs.append(config)
    runs = [config.run.name for config in configs]
    assert runs[0] != runs[1] and configs[1].model.init_from == f"runs/{runs[0]}"
    assert commands[3][2:] == [f"runs/{runs[1]}", val]
    assert commands[4][2] == f"runs/{runs[1]}"
    # the blend reads stage 1's export and stage 2's
    assert commands[5][2] == f"runs/{runs[0]}"
    assert commands[6][2:4] == [commands[5][3], commands[4][3]]


@pytest.mark.parametrize("name", ["../../../x", "a/b", "..", ".", "", "a\\b", "C:x"])
def test_a_run_name_must_be_a_plain_folder_name(name: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run.name must be a plain folder name"):
        load_config("compact-x4-psnr", [f"run.name={name!r}"])
    out = tmp_path / "runs"
    args = ["fit", "compact-x4-psnr", "--set", f"run.out_dir={str(out)!r}"]
    result = CliRunner().invoke(main, [*args, "--set", f"run.name={name!r}"])
    assert result.exit_code == 2 and "run.name must be a plain folder name" in result.output
    assert not tmp_path.joinpath("x").exists() and not out.exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.learning_rate=inf", "optim.learning_rate must be a finite number"),
        ("optim.learning_rate=nan", "optim.learning_rate must be a finite number"),
        ("optim.d_learning_rate=inf", "optim.d_learning_rate must be a finite number"),
        ("optim.grad_clip=-inf", "optim.grad_clip must be a finite number"),
        ("degrade.down_weights=[-1.0, 1.0, 1.0, 1.0, 1.0]", "degrade.down_weights must be >= 0"),
        ("degrade.down_weights=[0, 0, 0, 0, 0]", "degrade.down_weights must be >= 0"),
        ("data.num_workers=100000", "data.num_workers must be at most 64"),
        ("data.wrap_prob=2.0", "data.wrap_prob must be in"),
        ("data.wrap_prob=-0.1", "data.wrap_prob must be in"),
        ("model.scale=0", "model.scale must be 1 to 16; got 0"),
        ("model.scale=-2", "model.scale must be 1 to 16"),
        ("run.threads=-5", "run.threads must be >= 0"),
    ],
)
def test_values_no_run_survives_are_refused_in_one_line(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config("compact-x4-psnr", [override])
    result = CliRunner().invoke(main, ["fit", "compact-x4-psnr", "--set", override])
    assert result.exit_code == 2 and message.split(" ")[0] in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def test_learning_rates_are_checked_where_the_optim_config_is_built() -> None:
    for value in (math.inf, math.nan, 0.0):
        with pytest.raises(ConfigError, match="optim.learning_rate must be a finite number > 0"):
            OptimConfig(learning_rate=value)
    assert OptimConfig(learning_rate=1e-3, d_learning_rate=2.0).learning_rate == 1e-3


def test_auto_precision_is_bf16_only_where_the_device_computes_it_natively() -> None:
    """An AVX2 CPU only emulates bf16 (several times slower than fp32): ``auto`` trains in fp32
    there, and an explicit ``bf16`` gets a note; on an AVX512-BF16/AMX CPU both are bf16."""
    import torch

    from training.state import autocast_dtype, emulated_precision
    from upscaler.engine.load import native_bf16

    cpu = torch.device("cpu")
    auto = load_config("texture-x4-span-cpu", [])
    forced = load_config("texture-x4-span-cpu", ["run.precision='bf16'"])
    assert auto.run.precision == "auto"
    native = native_bf16(cpu)
    assert autocast_dtype(auto, cpu) == (torch.bfloat16 if native else None)
    assert autocast_dtype(forced, cpu) == torch.bfloat16
    assert emulated_precision(auto, cpu) is None
    note = emulated_precision(forced, cpu)
    assert (note is None) == native
    assert note is None or "run.precision='auto' picks fp32 here" in note
