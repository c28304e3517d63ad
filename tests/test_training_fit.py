"""``upscale-train fit``: every recipe at tiny size, both stages, the adversarial gradient, exact
resume, non-finite losses, and damaged checkpoints. Real files, real checkpoints, CPU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from training_helpers import RECIPES, tiny_overrides, write_texture_tree

import training.trainer as trainer_module
from training import checkpoint as ckpt
from training.cli import main
from training.config import load_config
from training.data import build_loader
from training.trainer import Trainer


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("textures")
    return write_texture_tree(root / "train"), write_texture_tree(root / "val", size=32, count=2)


def _fit(recipe: str, tmp_path: Path, folders: tuple[Path, Path], *extra: str) -> object:
    args = ["fit", recipe, "-q"]
    for value in [*tiny_overrides(recipe, tmp_path, *folders), *extra]:
        args += ["--set", value]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _config(recipe: str, tmp_path: Path, folders: tuple[Path, Path], *extra: str):  # noqa: ANN202
    return load_config(recipe, [*tiny_overrides(recipe, tmp_path, *folders), *extra])


def _records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_fits_two_steps(
    recipe: str, tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    result = _fit(recipe, tmp_path, folders)
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / recipe
    state = ckpt.read_checkpoint(run_dir / "checkpoints" / "step-000000002.pt")
    assert state["step"] == 2 and state["config"]["run"]["name"] == recipe
    train = _records(run_dir, "train")
    assert [r["step"] for r in train] == [1, 2]
    assert all(math.isfinite(r["loss_pixel"]) for r in train)
    if recipe.endswith("gan"):
        assert {"loss_gan", "loss_feature_match", "loss_colour", "d_real", "d_fake"} <= set(
            train[-1]
        )
        assert state["discriminator"] and state["optim_d"]
    val = _records(run_dir, "val")[-1]
    assert val["psnr_y"] > 5 and "seam_error" in val
    assert (run_dir / "samples" / "step-000000002.png").is_file()


def test_gan_stage_starts_from_the_psnr_stage(tmp_path: Path, folders: tuple[Path, Path]) -> None:
    assert _fit("compact-x4-psnr", tmp_path, folders).exit_code == 0
    psnr_run = tmp_path / "runs" / "compact-x4-psnr"
    gan = Trainer(
        _config("compact-x4-gan", tmp_path, folders, f"model.init_from={str(psnr_run)!r}"),
        log=lambda _m: None,
    )
    ema = ckpt.latest_checkpoint(psnr_run / "checkpoints")["ema"]
    assert all(torch.equal(v, ema[k]) for k, v in gan.state.g.state_dict().items())
    wrong = _config("rrdb-x4-gan", tmp_path, folders, f"model.init_from={str(psnr_run)!r}")
    with pytest.raises(ckpt.CheckpointError, match="compact.*cannot start.*rrdb"):
        Trainer(wrong, log=lambda _m: None)


def test_x2_run_starts_from_the_x4_trunk(tmp_path: Path, folders: tuple[Path, Path]) -> None:
    """Another scale of the same architecture: the trunk is taken, the upsampler is not."""
    assert _fit("compact-x4-psnr", tmp_path, folders).exit_code == 0
    x4_run = tmp_path / "runs" / "compact-x4-psnr"
    x2 = Trainer(
        _config("compact-x2-psnr", tmp_path, folders, f"model.init_from={str(x4_run)!r}"),
        log=lambda _m: None,
    )
    ema = ckpt.latest_checkpoint(x4_run / "checkpoints")["ema"]
    own = x2.state.g.state_dict()
    last = max((k for k in own if k.endswith(".weight")), key=lambda k: int(k.split(".")[1]))
    shared = [k for k in own if k != last and not k.startswith(last.rsplit(".", 1)[0])]
    assert shared and all(torch.equal(own[k], ema[k]) for k in shared)
    assert own[last].shape != ema[last].shape  # x2's own pixel-shuffle conv


def test_generator_gets_an_adversarial_gradient_through_the_frozen_discriminator(
    tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    only_gan = [
        "loss.pixel_weight=0",
        "loss.colour_weight=0",
        "loss.feature_match_weight=0",
        "loss.gan_weight=1.0",
    ]
    trainer = Trainer(_config("compact-x4-gan", tmp_path, folders, *only_gan), log=lambda _m: None)
    before = {k: v.clone() for k, v in trainer.state.g.state_dict().items()}
    batch = next(iter(build_loader(trainer.config, trainer.dist, 0, print)))
    stats = trainer.train_step(batch)
    assert {k for k in stats if k.startswith("loss_")} == {"loss_pixel", "loss_gan", "loss_d"}
    assert stats["grad_norm_g"] > 0  # the adversarial term alone moved G
    assert any(not torch.equal(before[k], v) for k, v in trainer.state.g.state_dict().items())
    assert all(p.requires_grad for p in trainer.state.d.parameters())  # D unfrozen for its own step
    assert stats["grad_norm_d"] > 0


def _final_state(run_dir: Path) -> dict:
    return ckpt.latest_checkpoint(run_dir / "checkpoints")


def _assert_same(a: object, b: object, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize(
    "gan",
    [
        ["loss.gan_type='wgan-gp'"],
        # R1 on real images, lsgan, the device degradation pass with colour and noise.
        ["loss.gan_type=lsgan", "loss.r1_weight=1.0", "degrade.where=trainer"]
        + ["degrade.colour_prob=0.5", "degrade.noise_prob=0.5", "degrade.blur_prob=0.5"],
    ],
)
def test_resume_is_bit_identical_to_an_uninterrupted_run(
    gan: list[str], tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    common = [
        "run.deterministic=true",
        "run.max_steps=4",
        *gan,
        "loss.colour_weight=0.5",
        "degrade.bc_prob=0.5",
        "degrade.jpeg_prob=0.5",
    ]
    assert _fit("compact-x4-gan", tmp_path / "a", folders, *common).exit_code == 0
    first = _fit("compact-x4-gan", tmp_path / "b", folders, *common, "run.max_steps=2")
    assert first.exit_code == 0
    assert _final_state(tmp_path / "b" / "runs" / "compact-x4-gan")["step"] == 2
    assert _fit("compact-x4-gan", tmp_path / "b", folders, *common).exit_code == 0
    whole = _final_state(tmp_path / "a" / "runs" / "compact-x4-gan")
    resumed = _final_state(tmp_path / "b" / "runs" / "compact-x4-gan")
    assert whole["step"] == resumed["step"] == 4
    keys = ("generator", "ema", "ema_updates", "discriminator", "optim_g", "optim_d", "scaler")
    for key in (*keys, "rng", "data", "counters"):
        _assert_same(whole[key], resumed[key], key)
    train = _records(tmp_path / "a" / "runs" / "compact-x4-gan", "train")
    assert ("r1" in train[-1]) == ("loss.r1_weight=1.0" in gan)


def _inject_nan(
    monkeypatch: pytest.MonkeyPatch, bad_calls: set[int] | None, from_call: int = 0
) -> None:
    real = trainer_module.pixel_loss
    calls = {"n": 0}

    def pixel_loss(kind: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        value = real(kind, pred, target)
        if (bad_calls and calls["n"] in bad_calls) or (from_call and calls["n"] >= from_call):
            return value * float("nan")
        return value

    monkeypatch.setattr(trainer_module, "pixel_loss", pixel_loss)


def test_a_nan_step_is_skipped_and_counted(
    tmp_path: Path, folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _inject_nan(monkeypatch, {2})
    result = _fit("compact-x4-gan", tmp_path, folders, "run.max_steps=3")
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "runs" / "compact-x4-gan"
    train = _records(run_dir, "train")
    assert [r["skipped_total"] for r in train] == [0, 1, 1]
    state = _final_state(run_dir)
    assert all(torch.isfinite(v).all() for v in state["generator"].values())
    assert all(torch.isfinite(v).all() for v in state["ema"].values())


def test_nan_steps_in_a_row_stop_the_run_with_its_last_good_checkpoint(
    tmp_path: Path, folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _inject_nan(monkeypatch, None, from_call=3)
    result = _fit("compact-x4-psnr", tmp_path, folders, "run.max_steps=20", "run.max_bad_steps=3")
    assert result.exit_code == 3
    assert "3 non-finite steps in a row" in result.output
    folder = tmp_path / "runs" / "compact-x4-psnr" / "checkpoints"
    assert [s for s, _ in ckpt.list_checkpoints(folder)] == [2]
    assert f"checkpoint {folder / 'step-000000002.pt'}" in result.output  # where to resume
    state = ckpt.latest_checkpoint(folder)
    assert all(torch.isfinite(v).all() for v in state["generator"].values())


def test_a_run_diverging_before_its_first_checkpoint_does_not_claim_one(
    tmp_path: Path, folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _inject_nan(monkeypatch, None, from_call=1)
    result = _fit("compact-x4-psnr", tmp_path, folders, "run.max_steps=20", "run.max_bad_steps=2")
    assert result.exit_code == 3
    assert "2 non-finite steps in a row at step 2; no checkpoint had been written yet" in (
        result.output
    )
    assert "intact" not in result.output
    assert ckpt.list_checkpoints(tmp_path / "runs" / "compact-x4-psnr" / "checkpoints") == []


def test_a_skipped_step_changes_nothing_it_must_not(
    tmp_path: Path, folders: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inf in G's loss: G, its EMA and D all unchanged. NaN in D's loss only: G and EMA step,
    D does not. Both count as skipped; a clean step resets the run of bad ones."""
    trainer = Trainer(_config("compact-x4-gan", tmp_path, folders), log=lambda _m: None)
    poison: dict[str, float] = {}
    for name in ("pixel_loss", "discriminator_loss"):
        real = getattr(trainer_module, name)

        def poisoned(*args: object, _real=real, _name=name) -> torch.Tensor:  # noqa: ANN001
            return _real(*args) * poison.get(_name, 1.0)

        monkeypatch.setattr(trainer_module, name, poisoned)

    def weights() -> dict[str, list[torch.Tensor]]:
        parts = {"g": trainer.state.g, "ema": trainer.state.ema.module, "d": trainer.state.d}
        return {k: [p.detach().clone() for p in m.parameters()] for k, m in parts.items()}

    def changed(before: dict[str, list[torch.Tensor]]) -> dict[str, bool]:
        after = weights()
        return {
            k: any(not torch.equal(a, b) for a, b in zip(before[k], after[k], strict=True))
            for k in before
        }

    loader = iter(build_loader(trainer.config, trainer.dist, 0, print))
    expected = [
        ({"pixel_loss": math.inf}, {"g": False, "ema": False, "d": False}, 1),
        ({"discriminator_loss": math.nan}, {"g": True, "ema": True, "d": False}, 2),
        ({}, {"g": True, "ema": True, "d": True}, 0),
    ]
    for faults, change, in_row in expected:
        poison.clear()
        poison.update(faults)
        before = weights()
        stats = trainer.train_step(next(loader))
        assert changed(before) == change, faults
        assert trainer.state.counters.bad_in_row == in_row
    assert trainer.state.counters.bad_total == stats["skipped_total"] == 2
    assert all(torch.isfinite(p).all() for ps in weights().values() for p in ps)


def test_truncated_newest_checkpoint_falls_back_to_the_previous(
    tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    assert (
        _fit("compact-x4-psnr", tmp_path, folders, "run.max_steps=4", "val.folder=''").exit_code
        == 0
    )
    folder = tmp_path / "runs" / "compact-x4-psnr" / "checkpoints"
    newest = folder / "step-000000004.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.warns(UserWarning, match="step-000000004.pt.*falling back"):
        trainer = Trainer(
            _config("compact-x4-psnr", tmp_path, folders, "run.max_steps=4"), log=lambda _m: None
        )
    assert trainer.step == 2
    with pytest.warns(UserWarning, match="falling back"):
        result = _fit("compact-x4-psnr", tmp_path, folders, "run.max_steps=4")
    assert result.exit_code == 0
    assert ckpt.read_checkpoint(newest)["step"] == 4  # rewritten whole


def test_a_save_killed_midway_leaves_the_previous_checkpoint_loadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "checkpoints"
    ckpt.save_checkpoint(folder, 1, {"generator": {"w": torch.ones(3)}}, keep=3)

    def dying_save(obj: object, handle) -> None:  # noqa: ANN001
        handle.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # the process dies mid-write

    monkeypatch.setattr(ckpt.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(folder, 2, {"generator": {"w": torch.zeros(3)}}, keep=3)
    assert [p.name for p in folder.iterdir()] == ["step-000000001.pt"]
    assert ckpt.latest_checkpoint(folder)["step"] == 1


def test_keep_last_n_checkpoints(tmp_path: Path, folders: tuple[Path, Path]) -> None:
    result = _fit(
        "compact-x4-psnr",
        tmp_path,
        folders,
        "run.max_steps=5",
        "run.save_every=1",
        "run.keep_last=2",
        "val.folder=''",
    )
    assert result.exit_code == 0
    folder = tmp_path / "runs" / "compact-x4-psnr" / "checkpoints"
    assert [s for s, _ in ckpt.list_checkpoints(folder)] == [5, 4]


def test_checkpoints_load_with_weights_only(tmp_path: Path, folders: tuple[Path, Path]) -> None:
    assert _fit("compact-x4-gan", tmp_path, folders).exit_code == 0
    path = tmp_path / "runs" / "compact-x4-gan" / "checkpoints" / "step-000000002.pt"
    state = torch.load(path, weights_only=True)
    assert state["format"] == ckpt.FORMAT and state["data"]["position"] == 4


def test_d_steps_and_g_steps_interleave_updates(tmp_path: Path, folders: tuple[Path, Path]) -> None:
    trainer = Trainer(
        _config("compact-x4-gan", tmp_path, folders, "optim.d_steps=2", "optim.g_steps=1"),
        log=lambda _m: None,
    )
    loader = iter(build_loader(trainer.config, trainer.dist, 0, print))
    first, second = trainer.train_step(next(loader)), trainer.train_step(next(loader))
    assert "loss_gan" in first and "loss_d" in first  # cycle of 2: G on the first batch only
    assert "loss_gan" not in second and "loss_d" in second
    result = _fit("compact-x4-gan", tmp_path / "cli", folders, "run.max_steps=2")
    assert result.exit_code == 0
    cli = CliRunner().invoke(
        main, ["fit", "compact-x4-gan", "-q", "--g-steps", "3", "--d-steps", "0"]
    )
    assert cli.exit_code == 2 and "d_steps and g_steps >= 1" in cli.output
    missing = tmp_path / "no-psnr-run"
    no_stage_one = CliRunner().invoke(
        main,
        [
            "fit",
            "compact-x4-gan",
            "-q",
            "--set",
            f"data.train=[{str(folders[0])!r}]",
            "--set",
            "val.folder=''",
            "--set",
            f"model.init_from={str(missing)!r}",
        ],
    )
    assert no_stage_one.exit_code == 2
    assert f"model.init_from: {missing}: no such checkpoint" in no_stage_one.output
    assert "train the PSNR stage first" in no_stage_one.output


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_paths_train(
    precision: str, tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    """Autocast (bf16, as on CUDA; fp16 with its grad scaler) runs here on CPU too."""
    result = _fit("compact-x4-gan", tmp_path, folders, f"run.precision={precision}")
    assert result.exit_code == 0, result.output
    state = _final_state(tmp_path / "runs" / "compact-x4-gan")
    assert all(torch.isfinite(v).all() for v in state["generator"].values())
    assert bool(state["scaler"]) == (precision == "fp16")  # the scaler's state is saved


def test_sigkill_during_saves_never_leaves_an_unloadable_newest_checkpoint(tmp_path: Path) -> None:
    """A real process killed with SIGKILL while it writes checkpoints back to back."""
    import signal
    import subprocess
    import sys
    import time
    import warnings

    script = (
        "import sys, torch\n"
        "from training.checkpoint import save_checkpoint\n"
        "from pathlib import Path\n"
        "for step in range(1, 10_000):\n"
        "    w = torch.full((3_000_000,), float(step))\n"
        "    save_checkpoint(Path(sys.argv[1]), step, {'w': w}, 2)\n"
        "    print(step, flush=True)\n"
    )
    folder = tmp_path / "checkpoints"
    root = Path(__file__).parents[1]
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(folder)], cwd=root, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    process.stdout.readline()  # at least one checkpoint exists
    time.sleep(0.3)  # now it is in the middle of some later write
    process.send_signal(signal.SIGKILL)
    process.wait()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback needed: the newest file is whole
        state = ckpt.latest_checkpoint(folder)
    assert torch.equal(state["w"], torch.full((3_000_000,), float(state["step"])))
    # keep=2, plus one when the kill fell between a rename and the pruning that follows it
    assert 1 <= len(ckpt.list_checkpoints(folder)) <= 3


def test_a_kill_between_rename_and_pruning_leaves_one_extra_that_the_next_save_removes(
    tmp_path: Path,
) -> None:
    """The window the SIGKILL test above can land in, made exact: step 3 renamed into place,
    the process gone before pruning. Three files; the next save leaves the newest two."""
    from upscaler.atomic import atomic_write

    folder = tmp_path / "checkpoints"
    for step in (1, 2):
        ckpt.save_checkpoint(folder, step, {"w": torch.full((3,), float(step))}, keep=2)
    with atomic_write(folder / "step-000000003.pt") as handle:  # save_checkpoint's first half
        torch.save({"format": ckpt.FORMAT, "step": 3, "w": torch.full((3,), 3.0)}, handle)
    assert [s for s, _ in ckpt.list_checkpoints(folder)] == [3, 2, 1]
    assert ckpt.latest_checkpoint(folder)["step"] == 3
    ckpt.save_checkpoint(folder, 4, {"w": torch.full((3,), 4.0)}, keep=2)
    assert [s for s, _ in ckpt.list_checkpoints(folder)] == [4, 3]
