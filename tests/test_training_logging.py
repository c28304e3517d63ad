"""What a run reports and keeps: interval means, the progress line, validation from step 0 beside
bicubic and Lanczos, the best checkpoint, eval on fixed inputs, and the EMA's warm-up."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from training_helpers import tiny_overrides, write_texture_tree

from training import checkpoint as ckpt
from training.cli import main
from training.config import load_config
from training.data import build_loader
from training.generator import ModelEMA
from training.monitor import IntervalMeans, Progress, shown
from training.trainer import Trainer


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("textures")
    return write_texture_tree(root / "train"), write_texture_tree(root / "val", size=32, count=2)


def _fit(recipe: str, tmp_path: Path, folders: tuple[Path, Path], *extra: str):  # noqa: ANN202
    args = ["fit", recipe, "-q"]
    for value in [*tiny_overrides(recipe, tmp_path, *folders), *extra]:
        args += ["--set", value]
    return CliRunner().invoke(main, args, catch_exceptions=False)


def _records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == kind]


def test_interval_means_average_each_key_over_the_steps_that_had_it() -> None:
    means = IntervalMeans()
    means.add({"loss_d": 1.0, "loss_pixel": 0.5})
    means.add({"loss_d": 3.0})  # a D-only step of a d_steps=2 cycle
    assert means.take() == {"loss_d": 2.0, "loss_pixel": 0.5}
    assert means.take() == {}


def test_g_losses_are_logged_whatever_the_cycle(tmp_path: Path, folders: tuple[Path, Path]) -> None:
    """d_steps=2: G updates on every other batch; log_every=2 used to land on D-only steps."""
    result = CliRunner().invoke(
        main,
        ["fit", "compact-x4-gan", "-q", "--d-steps", "2"]
        + [
            a
            for v in tiny_overrides("compact-x4-gan", tmp_path, *folders)
            + ["run.max_steps=4", "run.log_every=2"]
            for a in ("--set", v)
        ],
    )
    assert result.exit_code == 0, result.output
    train = _records(tmp_path / "runs" / "compact-x4-gan", "train")
    assert [r["step"] for r in train] == [2, 4]
    for record in train:
        assert {"loss_pixel", "loss_gan", "loss_d", "d_real", "d_fake"} <= set(record)


def test_progress_line_shows_d_loss_and_logits() -> None:
    values = {"lr": 1e-4, "loss_pixel": 0.03, "loss_gan": 0.7, "loss_d": 1.3, "d_real": 0.4}
    values |= {"d_fake": -0.2, "loss_colour": 0.01}
    picked = shown(values)
    assert list(picked) == ["pixel", "gan", "loss_d", "d_real", "d_fake", "colour"]
    stream = io.StringIO()
    Progress(10, 0, 4, enabled=True, stream=stream).update(3, picked, force=True)
    assert "loss_d=1.3" in stream.getvalue() and "d_fake=-0.2" in stream.getvalue()


def test_validation_runs_at_step_0_beside_bicubic_and_lanczos(
    tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    result = _fit("compact-x4-psnr", tmp_path, folders)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "compact-x4-psnr"
    assert [r["step"] for r in _records(run, "val")] == [0, 2]
    (baseline,) = _records(run, "baseline")
    assert baseline["step"] == 0 and 10 < baseline["bicubic_psnr_y"] < 60
    assert baseline["bicubic_psnr_y"] != baseline["lanczos_psnr_y"]
    assert "bicubic on 2 validation images: psnr_y" in result.output
    assert "step 0 validation: psnr_y" in result.output and "(bicubic " in result.output
    assert (run / "samples" / "step-000000000.png").is_file()


def test_best_checkpoint_is_kept_by_its_metric(tmp_path: Path, folders: tuple[Path, Path]) -> None:
    result = _fit(
        "compact-x4-psnr",
        tmp_path,
        folders,
        "run.max_steps=6",
        "run.val_every=1",
        "run.save_every=100",
        "run.keep_last=1",
        "run.best_metric=seam_error",
        "val.crop_size=32",
        "optim.warmup_steps=0",
        "optim.learning_rate=1e-2",
        "model.interp_init=false",
    )
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "compact-x4-psnr"
    val = _records(run, "val")
    best = min(val, key=lambda r: r["seam_error"])
    assert 0 < best["step"] < 6  # these settings put the best mid-run
    state = ckpt.read_checkpoint(run / "checkpoints" / ckpt.BEST)
    assert state["step"] == best["step"]
    assert state["counters"]["best_value"] == pytest.approx(best["seam_error"])
    assert f"best seam_error so far ({best['seam_error']:.4g})" in result.output
    assert [s for s, _ in ckpt.list_checkpoints(run / "checkpoints")] == [6]


def test_keep_last_never_deletes_the_best(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    first = ckpt.save_checkpoint(folder, 1, {"generator": {"w": torch.ones(2)}}, keep=1)
    ckpt.mark_best(first)
    for step in (2, 3):
        ckpt.save_checkpoint(folder, step, {"generator": {"w": torch.zeros(2)}}, keep=1)
    assert not first.exists() and [s for s, _ in ckpt.list_checkpoints(folder)] == [3]
    assert ckpt.read_checkpoint(folder / ckpt.BEST)["step"] == 1
    assert ckpt.latest_checkpoint(folder)["step"] == 3  # resume takes the newest, not the best


def test_eval_with_a_fixed_degradation_and_baselines(
    tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    assert _fit("compact-x4-psnr", tmp_path / "a", folders).exit_code == 0
    harsh = ["degrade.down_kernels=['nearest']", "degrade.down_weights=[1.0]"]
    assert _fit("compact-x4-psnr", tmp_path / "b", folders, *harsh).exit_code == 0
    runs = [tmp_path / x / "runs" / "compact-x4-psnr" for x in "ab"]

    def evaluate(run: Path, *extra: str) -> dict:
        result = CliRunner().invoke(main, ["eval", str(run), str(folders[1]), "--json", *extra])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    own = [evaluate(run) for run in runs]  # each with its recipe's degradations
    assert own[0]["baselines"]["bicubic"] != own[1]["baselines"]["bicubic"]
    recipe = tmp_path / "mix.toml"
    recipe.write_text('base = "compact-x4-psnr"\n[degrade]\nbc_prob = 1.0\n')
    fixed = [evaluate(run, "--degrade", str(recipe)) for run in runs]
    assert fixed[0]["baselines"] == fixed[1]["baselines"]  # the same inputs for both
    assert 5 < fixed[0]["baselines"]["lanczos"]["psnr_y"] < 60
    # On fit's own validation folder, eval repeats the figures fit logged last (same crops,
    # same image count, same seeded inputs, the same EMA weights).
    logged = _records(runs[0], "val")[-1]
    assert own[0]["crop_size"] == 16 and own[0]["images"] == 2  # the tiny recipe's [val]
    for key in ("psnr_y", "seam_error"):
        assert own[0][key] == pytest.approx(logged[key], abs=1e-4), key
    table = CliRunner().invoke(main, ["eval", str(runs[0]), str(folders[1])])
    assert "model     bicubic     lanczos" in table.output
    assert "low-res made with its own recipe" in table.output
    bad = CliRunner().invoke(main, ["eval", str(runs[0]), str(folders[1]), "--degrade", "nope"])
    assert bad.exit_code == 2 and "nope: no such config file or recipe" in bad.output


def test_ema_warms_up_and_moves_only_with_g(tmp_path: Path, folders: tuple[Path, Path]) -> None:
    live = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(live.weight)
    warm, cold = ModelEMA(live, 0.999), ModelEMA(live, 0.999, warmup=False)
    live.weight.data.fill_(1.0)
    warm.update(live)
    cold.update(live)
    assert warm.module.weight.item() == pytest.approx(0.9)  # decay (1 + 0) / (10 + 0)
    assert cold.module.weight.item() == pytest.approx(0.001)
    for _ in range(20_000):
        warm.updates += 1
    assert warm.current_decay() == 0.999
    config = load_config(
        "compact-x4-gan", [*tiny_overrides("compact-x4-gan", tmp_path, *folders), "optim.d_steps=2"]
    )
    trainer = Trainer(config, log=lambda _m: None)
    batches = iter(build_loader(config, trainer.dist, 0, print))
    trainer.train_step(next(batches))  # G and D
    before = [p.clone() for p in trainer.state.ema.module.parameters()]
    trainer.train_step(next(batches))  # D only: the average must not move
    after = list(trainer.state.ema.module.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert trainer.state.ema.updates == 1


def test_export_either_weights(tmp_path: Path, folders: tuple[Path, Path]) -> None:
    from safetensors.torch import load_file

    assert _fit("compact-x4-psnr", tmp_path, folders).exit_code == 0
    run = tmp_path / "runs" / "compact-x4-psnr"
    state = ckpt.latest_checkpoint(run / "checkpoints")
    for weights, key in (("ema", "ema"), ("live", "generator")):
        out = tmp_path / f"{weights}.safetensors"
        result = CliRunner().invoke(main, ["export", str(run), str(out), "--weights", weights])
        assert result.exit_code == 0 and f"{weights} weights" in result.output
        saved = load_file(str(out))
        assert all(torch.equal(saved[k], v) for k, v in state[key].items())
    assert not torch.equal(state["ema"]["body.0.weight"], state["generator"]["body.0.weight"])


def test_tensorboard_gets_the_sample_grids(tmp_path: Path, folders: tuple[Path, Path]) -> None:
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    assert _fit("compact-x4-psnr", tmp_path, folders).exit_code == 0
    events = accumulator.EventAccumulator(
        str(tmp_path / "runs" / "compact-x4-psnr" / "tensorboard"), size_guidance={"images": 0}
    )
    events.Reload()
    assert "val/samples" in events.Tags()["images"]
    grids = events.Images("val/samples")
    assert [g.step for g in grids] == [0, 2] and grids[0].width == 3 * 16
    assert "train/loss_pixel" in events.Tags()["scalars"]


class IgnoresInput(torch.nn.Module):
    """A collapsed generator: one learned picture, whatever the input."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.picture = torch.nn.Parameter(torch.rand(1, 3, size, size))

    def forward(self, lq: torch.Tensor) -> torch.Tensor:
        return self.picture.expand(len(lq), -1, -1, -1)


def test_diversity_flags_a_generator_that_ignores_its_input(
    tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    from training.metrics import diversity
    from training.monitor import HEALTH_PATIENCE, Health
    from upscaler.texture.resample import resize

    config = load_config(
        "compact-x4-psnr",
        [*tiny_overrides("compact-x4-psnr", tmp_path, *folders), "data.batch_size=4"],
    )
    batch = next(iter(build_loader(config, Trainer(config, log=print).dist, 0, print)))
    gt, lq = batch["gt"].float() / 255, batch["lq"].float() / 255
    collapsed = diversity(IgnoresInput(16)(lq), gt)
    follows = diversity(resize(lq, (16, 16), "bicubic"), gt)
    assert collapsed == 0.0 and follows > 0.25  # a generator that follows: far from 0
    health = Health()
    warned = [health.check({"diversity": collapsed}) for _ in range(HEALTH_PATIENCE)]
    assert warned[-1] and warned[-1][0][0] == "diversity"


def test_a_generator_exploiting_a_frozen_d_is_warned_about_in_the_log_and_metrics(
    tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    exploit = [
        "run.max_steps=16",
        "run.log_every=2",
        "val.folder=''",
        "data.batch_size=4",
        "data.crop_size=32",
        "model.init_from=''",
        "loss.pixel_weight=0",
        "loss.colour_weight=0",
        "loss.feature_match_weight=0",
        "loss.gan_weight=1.0",
        "optim.learning_rate=1e-2",
        "optim.d_learning_rate=1e-12",  # D frozen in all but name
        "model.num_blocks=2",
    ]
    result = _fit("compact-x4-gan", tmp_path, folders, *exploit)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "compact-x4-gan"
    warnings = {r["check"]: r for r in _records(run, "warning")}
    assert {"out_of_range", "g_fools_d"} <= set(warnings)
    assert "fools the discriminator outright" in warnings["g_fools_d"]["message"]
    assert f"warning: step {warnings['g_fools_d']['step']}: the generator fools" in result.output
    train = _records(run, "train")
    assert all("grad_adv" in r for r in train)  # measured on every logged step


def test_a_gan_mix_nothing_constrains_is_warned_about_at_start(
    tmp_path: Path, folders: tuple[Path, Path]
) -> None:
    unconstrained = ["loss.gan_type=hinge", "discriminator.spectral_norm=false", "run.max_steps=1"]
    result = _fit("compact-x4-gan", tmp_path, folders, *unconstrained)
    assert result.exit_code == 0, result.output
    assert "warning: nothing constrains D (hinge without spectral norm or R1)" in result.output
    (record,) = _records(tmp_path / "runs" / "compact-x4-gan", "warning")
    assert record["check"] == "gan_contract" and record["step"] == 0
