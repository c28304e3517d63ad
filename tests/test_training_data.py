"""Training data: the resumable sampler, datasets from folders, packs and pairs, and ``prepare``."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from helpers import make_pixels
from PIL import Image
from training_helpers import height_field, normals_from_height, tileable_pixels, write_texture_tree

from training.cli import main
from training.config import DataConfig, DegradeConfig
from training.data import PairedSet, ResumableSampler, TrainSet, make_loader
from training.maps import KINDS
from training.pack import PackError, pack_folders, read_pack
from training.recipe import degrade
from upscaler.texture.maps import kind_from_name

DATA = DataConfig(crop_size=16, batch_size=2, num_workers=0)
MIX = DegradeConfig(bc_prob=0.5, jpeg_prob=0.3, blur_prob=0.3)


def _take(sampler: ResumableSampler, n: int) -> list[tuple[int, int]]:
    return list(itertools.islice(iter(sampler), n))


def test_sampler_resumes_exactly_and_shards_the_global_batch() -> None:
    whole = _take(ResumableSampler(7, 2, seed=3), 20)
    assert [p for p, _ in whole] == list(range(20))
    assert sorted(i for _, i in whole[:7]) == list(range(7))  # an epoch is a permutation
    assert whole[:7] != whole[7:14]  # and each epoch a different one
    assert _take(ResumableSampler(7, 2, seed=3, start=6), 14) == whole[6:]
    ranks = [_take(ResumableSampler(7, 2, seed=3, rank=r, world=2), 6) for r in range(2)]
    interleaved = [x for k in range(3) for r in range(2) for x in ranks[r][2 * k : 2 * k + 2]]
    assert interleaved == whole[:12]


def test_samples_do_not_depend_on_workers_or_batch_position(tmp_path: Path) -> None:
    root = write_texture_tree(tmp_path / "train")
    dataset = TrainSet((str(root),), DATA, MIX, scale=4, seed=1, degrade_in_loader=True)

    def batches(workers: int) -> list[dict]:
        loader = make_loader(
            dataset, 2, seed=1, start=0, rank=0, world=1, num_workers=workers, pin_memory=False
        )
        return list(itertools.islice(iter(loader), 3))

    serial, parallel = batches(0), batches(2)
    for a, b in zip(serial, parallel, strict=True):
        assert torch.equal(a["gt"], b["gt"]) and torch.equal(a["lq"], b["lq"])
    again = dataset[(5, 3)]
    assert torch.equal(again["gt"], dataset[(5, 3)]["gt"])
    assert not torch.equal(again["gt"], dataset[(6, 3)]["gt"])


def test_loader_side_and_trainer_side_degradation_agree(tmp_path: Path) -> None:
    root = write_texture_tree(tmp_path / "train")
    in_loader = TrainSet((str(root),), DATA, MIX, scale=4, seed=2, degrade_in_loader=True)
    sample = in_loader[(4, 1)]
    assert sample["gt"].shape == (3, 16, 16) and sample["gt"].dtype == torch.uint8
    params = {k: v[None] for k, v in sample["params"].items()}
    lq = degrade(sample["gt"][None].float() / 255, params, 4, torch.tensor([sample["normal"]]))
    assert torch.equal((lq[0] * 255).round().to(torch.uint8), sample["lq"])


def test_normal_maps_are_recognised_by_name_and_content(tmp_path: Path) -> None:
    root = write_texture_tree(tmp_path / "train")
    dataset = TrainSet((str(root),), DATA, MIX, scale=4, seed=0, degrade_in_loader=False)
    kinds = {dataset.items[i].path.name: dataset[(i, i)]["normal"] for i in range(len(dataset))}
    assert kinds["wall_n.png"] is True and kinds["colour_0.png"] is False


def test_wrap_crops_of_a_tileable_texture_continue_across_the_seam(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    pixels = tileable_pixels(20, 20, 5)
    Image.fromarray(pixels).save(tmp_path / "t" / "tile.png")
    data = DataConfig(crop_size=16, wrap_prob=1.0, flip=False, rotate=False)
    dataset = TrainSet(
        (str(tmp_path / "t"),), data, DegradeConfig(), scale=4, seed=0, degrade_in_loader=False
    )
    tiled = np.tile(pixels, (2, 2, 1))
    straddling = 0
    for position in range(30):
        crop = dataset[(position, 0)]["gt"].permute(1, 2, 0).numpy()
        hits = [
            (y, x)
            for y in range(20)
            for x in range(20)
            if np.array_equal(tiled[y : y + 16, x : x + 16], crop)
        ]
        assert hits, "every crop is a window of the tiled texture"
        straddling += all(y + 16 > 20 or x + 16 > 20 for y, x in hits)
    assert straddling > 5


def test_pack_round_trip_skips_data_maps_and_small_and_loads_fast(tmp_path: Path) -> None:
    root = write_texture_tree(tmp_path / "train", size=40)
    Image.fromarray(make_pixels(40, 40, 3, seed=9)).save(root / "crate_spec.png")
    Image.fromarray(make_pixels(10, 12, 3)).save(root / "tiny.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    messages: list[str] = []
    packed = pack_folders(
        [root],
        tmp_path / "crops.safetensors",
        crop_size=24,
        per_image=3,
        min_std=0.0,
        report=messages.append,
    )
    pack = read_pack(tmp_path / "crops.safetensors")
    assert packed.crops == len(pack) == 7 * 3
    assert packed.textures == 10 and packed.too_small == 1  # tiny.png
    assert pack.crops.shape == (21, 24, 24, 3) and pack.crops.dtype == np.uint8
    assert KINDS[int(pack.kinds[-1])] in ("color", "normal")
    assert sum(KINDS[int(k)] == "normal" for k in pack.kinds) == 3
    assert any("crate_spec.png" in m and "data map" in m for m in messages)
    assert any("tiny.png" in m for m in messages) and any("broken.png" in m for m in messages)
    from safetensors.numpy import load_file  # a plain safetensors file for other tools too

    assert np.array_equal(load_file(tmp_path / "crops.safetensors")["crops"], pack.crops)
    dataset = TrainSet(
        (str(tmp_path / "crops.safetensors"),), DATA, MIX, scale=4, seed=0, degrade_in_loader=True
    )
    assert len(dataset) == 21 and dataset[(0, 5)]["lq"].shape == (3, 4, 4)


def test_a_pack_of_only_small_textures_says_how_many_and_what_to_do(tmp_path: Path) -> None:
    for i in range(3):
        Image.fromarray(make_pixels(64, 96, 3, seed=i)).save(tmp_path / f"old{i}.png")
    with pytest.raises(PackError, match=r"3 of 3 textures are smaller than the 256 px crop: .*64"):
        pack_folders([tmp_path], tmp_path / "p.safetensors")


def test_truncated_pack_is_refused_by_name(tmp_path: Path) -> None:
    root = write_texture_tree(tmp_path / "train")
    path = tmp_path / "crops.safetensors"
    pack_folders([root], path, crop_size=16, per_image=2)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(PackError, match="crops.safetensors.*truncated"):
        read_pack(path)


def test_paired_folders_report_scale_mismatches_per_file(tmp_path: Path) -> None:
    hr, lq = tmp_path / "hr", tmp_path / "lq"
    hr.mkdir()
    lq.mkdir()
    for name, (h, w) in {"good": (32, 24), "bad": (32, 24)}.items():
        Image.fromarray(make_pixels(h, w, 3)).save(hr / f"{name}.png")
    Image.fromarray(make_pixels(8, 6, 3)).save(lq / "good.png")
    Image.fromarray(make_pixels(10, 6, 3)).save(lq / "bad.jpg")  # any extension matches
    Image.fromarray(make_pixels(32, 24, 3)).save(hr / "lonely.png")
    paired = PairedSet(str(hr), str(lq), DATA, scale=4, seed=0)
    assert [p[0].name for p in paired.pairs] == ["good.png"]
    assert any("bad.jpg: scale mismatch" in p and "24x32" in p for p in paired.problems)
    assert any("lonely.png" in p for p in paired.problems)
    sample = paired[(0, 0)]
    assert sample["gt"].shape == (3, 16, 16) and sample["lq"].shape == (3, 4, 4)


def _prepare_source(src: Path) -> None:
    (src / "models" / "crate").mkdir(parents=True)
    (src / "world").mkdir()
    Image.fromarray(make_pixels(40, 48, 3, seed=1)).save(src / "models" / "crate" / "diffuse.png")
    Image.fromarray(make_pixels(40, 48, 3, seed=1)).save(src / "world" / "crate_copy.png")  # dup
    Image.fromarray(make_pixels(40, 40, 3, seed=2)).save(
        src / "models" / "crate" / "crate_spec.png"
    )
    Image.fromarray(np.full((40, 40, 3), (90, 60, 30), np.uint8)).save(src / "world" / "flat.png")
    Image.fromarray(make_pixels(12, 40, 3, seed=3)).save(src / "world" / "small.png")
    gray = make_pixels(40, 40, 1, seed=4)[:, :, 0]
    Image.fromarray(gray, "L").save(src / "world" / "gray.png")
    normal = (normals_from_height(height_field(40, 40, 6), 3) * 255).round().astype(np.uint8)
    Image.fromarray(normal).save(src / "world" / "bumps.png")  # a normal map by content only
    Image.fromarray(make_pixels(90, 80, 3, seed=5)).save(src / "world" / "photo.jpg", quality=95)
    rgba = make_pixels(40, 40, 4, seed=6)
    rgba[:, :20, 3] = 0
    Image.fromarray(rgba, "RGBA").save(src / "world" / "leaves.png")
    (src / "world" / "broken.tga").write_bytes(b"\x00" * 10)


def test_prepare_sorts_filters_and_records_sources(tmp_path: Path) -> None:
    src, out = tmp_path / "dump", tmp_path / "set"
    _prepare_source(src)
    result = CliRunner().invoke(
        main, ["prepare", str(src), str(out), "--min-size", "32", "--workers", "2"]
    )
    assert result.exit_code == 0, result.output
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    dropped = {d["source"]: d["reason"] for d in map(json.loads, (out / "dropped.jsonl").open())}
    kept = {m["source"]: m for m in manifest}
    assert set(kept) == {
        "models/crate/diffuse.png",
        "world/bumps.png",
        "world/photo.jpg",
        "world/leaves.png",
    }
    assert (
        kept["world/bumps.png"]["kind"] == "normal" and kept["world/leaves.png"]["kind"] == "alpha"
    )
    assert kept["world/photo.jpg"]["size"] == [40, 45]  # JPEG sources are halved
    assert "near-duplicate of" in dropped["world/crate_copy.png"]
    assert "data map" in dropped["models/crate/crate_spec.png"]
    assert "flat" in dropped["world/flat.png"] and "too small" in dropped["world/small.png"]
    assert dropped["world/gray.png"] == "grayscale" and "unreadable" in dropped["world/broken.tga"]
    for entry in manifest:
        with Image.open(out / entry["file"]) as im:
            assert list(im.size) == entry["size"] and im.format == "PNG"
    with Image.open(out / kept["world/bumps.png"]["file"]) as im:
        vectors = np.asarray(im, dtype=np.float64) / 255 * 2 - 1
    assert np.abs(np.linalg.norm(vectors, axis=-1) - 1).max() < 0.02


def test_prepare_with_pack_writes_a_pack(tmp_path: Path) -> None:
    src, out = tmp_path / "dump", tmp_path / "set"
    _prepare_source(src)
    result = CliRunner().invoke(
        main,
        [
            "prepare",
            str(src),
            str(out),
            "--min-size",
            "32",
            "--pack",
            str(tmp_path / "p.safetensors"),
            "--crop",
            "32",
            "--per-image",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    pack = read_pack(tmp_path / "p.safetensors")
    assert len(pack) == 8  # 2 crops of each of the colour, normal and alpha maps kept
    assert sorted(KINDS[k] for k in set(pack.kinds.tolist())) == ["alpha", "color", "normal"]
    assert any("leaves" in source for source in pack.source_paths)


def test_prepare_holds_out_validation_textures_and_counts_what_the_pack_left_out(
    tmp_path: Path,
) -> None:
    """The README's first training command: --val makes the folder fit's val.folder names, and
    the textures smaller than the crop are counted, with what to do about them."""
    src, out, val, pack = tmp_path / "dump", tmp_path / "set", tmp_path / "val", tmp_path / "p"
    src.mkdir()
    for i in range(12):  # as an old game's: most of them smaller than the default crop
        side = 256 if i % 3 == 0 else 64 + 16 * (i % 3)
        Image.fromarray(make_pixels(side, side, 3, seed=i)).save(src / f"wall{i:02d}.png")
    args = ["prepare", str(src), str(out), "--val", str(val), "--pack", f"{pack}.safetensors"]
    result = CliRunner().invoke(main, [*args, "--val-count", "2", "--per-image", "1"])
    assert result.exit_code == 0, result.output
    held = sorted(p.name for p in val.iterdir())
    assert len(held) == 2 and not {p.name for p in (out / "color").iterdir()} & set(held)
    assert "10 color, 0 normal, 0 alpha, 2 held out for validation, 0 dropped" in result.output
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").open()]
    assert sorted(m["file"] for m in manifest if m["file"].startswith("../val/")) == [
        f"../val/{name}" for name in held
    ]
    packed = read_pack(f"{pack}.safetensors")
    assert not any(Path(s).name in held for s in packed.source_paths)
    small = 10 - len(packed.source_paths)
    assert small > 0 and (
        f"left out of the pack: {small} of 10 textures, smaller than the 256 px crop"
        in result.output
    )
    assert "--set data.crop_size=64" in result.output
    inside = CliRunner().invoke(main, [*args[:4], str(out / "val")])
    assert inside.exit_code == 2 and "keep it out of OUT" in inside.output


def test_prepare_defaults_keep_old_game_texture_sizes(tmp_path: Path) -> None:
    """64-128 px is what old games' textures are; the default used to drop everything < 256."""
    src, out = tmp_path / "dump", tmp_path / "set"
    src.mkdir()
    for name, (h, w), seed in (
        ("wall", (64, 64), 1),
        ("floor", (128, 96), 2),
        ("tiny", (48, 64), 3),
    ):
        Image.fromarray(make_pixels(h, w, 3, seed=seed)).save(src / f"{name}.png")
    result = CliRunner().invoke(main, ["prepare", str(src), str(out)])
    assert result.exit_code == 0, result.output
    kept = {json.loads(line)["source"] for line in (out / "manifest.jsonl").open()}
    dropped = {
        json.loads(line)["source"]: json.loads(line)["reason"]
        for line in (out / "dropped.jsonl").open()
    }
    assert kept == {"wall.png", "floor.png"}
    assert dropped["tiny.png"].startswith("too small (64x48 after resizing < 64)")


def test_a_file_that_goes_bad_mid_run_is_skipped_with_a_warning(tmp_path: Path) -> None:
    root = write_texture_tree(tmp_path / "train")
    dataset = TrainSet((str(root),), DATA, MIX, scale=4, seed=0, degrade_in_loader=False)
    victim = dataset.items[2].path
    victim.write_bytes(victim.read_bytes()[:40])  # truncated after the dataset was listed
    with pytest.warns(UserWarning, match=f"skipped in training: {victim}"):
        sample = dataset[(0, 2)]
    assert torch.equal(sample["gt"], dataset[(0, 3)]["gt"])  # the next file, same randomness


def test_folder_dataset_leaves_out_small_unreadable_and_aux_files_with_reasons(
    tmp_path: Path,
) -> None:
    root = write_texture_tree(tmp_path / "train")
    Image.fromarray(make_pixels(10, 40, 3)).save(root / "trim.png")
    Image.fromarray(make_pixels(40, 40, 3)).save(root / "rock_gloss.png")
    (root / "empty.png").write_bytes(b"")
    dataset = TrainSet((str(root),), DATA, MIX, scale=4, seed=0, degrade_in_loader=False)
    assert len(dataset) == 7
    reasons = "\n".join(dataset.left_out)
    assert "trim.png: 40x10 is smaller than data.crop_size" in reasons
    assert "rock_gloss.png: a data map" in reasons and "empty.png" in reasons


def test_transparent_texels_take_the_visible_colour_before_alpha_is_dropped() -> None:
    """Training sees what inference feeds the model: colour bled under alpha 0, not black."""
    from training.images import to_rgb8

    pixels = np.zeros((9, 7, 4), np.uint8)
    pixels[:4, :, :3], pixels[:4, :, 3] = (200, 120, 40), 255  # visible top, black hole below
    rgb = to_rgb8(pixels)
    assert rgb.shape == (9, 7, 3)
    assert np.abs(rgb[8].astype(int) - (200, 120, 40)).max() <= 1
    np.testing.assert_array_equal(rgb[:4], pixels[:4, :, :3])


def test_pack_refuses_to_write_over_an_image_it_reads(tmp_path: Path) -> None:
    tree = write_texture_tree(tmp_path / "tree")
    image = tree / "colour_0.png"
    before = image.read_bytes()
    for target in (image, tmp_path / "tree" / "." / "colour_0.png"):
        result = CliRunner().invoke(main, ["pack", str(tree), "-o", str(target), "--crop", "16"])
        assert result.exit_code == 2 and "would overwrite one of the images" in result.output
    assert image.read_bytes() == before


def test_prepare_does_not_follow_links_out_of_the_dump(tmp_path: Path) -> None:
    src, out, secret = tmp_path / "dump", tmp_path / "set", tmp_path / "private"
    _prepare_source(src)
    secret.mkdir()
    Image.fromarray(make_pixels(48, 40, 3, seed=9)).save(secret / "holiday.png")
    (src / "world" / "holiday.png").symlink_to(secret / "holiday.png")
    (src / "world" / "inside.png").symlink_to(src / "models" / "crate" / "diffuse.png")
    result = CliRunner().invoke(main, ["prepare", str(src), str(out), "--min-size", "32"])
    assert result.exit_code == 0, result.output
    assert "holiday.png: skipped: a link to" in result.output
    sources = [json.loads(line)["source"] for line in (out / "manifest.jsonl").open()]
    dropped = [json.loads(line)["source"] for line in (out / "dropped.jsonl").open()]
    assert "world/holiday.png" not in sources + dropped
    assert "world/inside.png" in sources + dropped  # a link that stays inside is a texture


def test_prepared_names_read_as_their_sources_do(tmp_path: Path) -> None:
    """A one-word name says nothing (FlightGear's ``.../vario/S3/S3.png``); flattened after its
    folders, its word would read as a suffix ("S3": specular), and the pack would leave a kept
    colour texture out as a data map. The prepared name keeps it saying nothing."""
    src, out = tmp_path / "dump", tmp_path / "set"
    for seed, rel in enumerate(("vario/S3/S3.png", "tiles/rock_n.png", "walls/brick.png")):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        pixels = make_pixels(40, 40, 3, seed=seed)
        if rel.endswith("_n.png"):  # a real normal map: unit vectors, bluish
            pixels[..., :2], pixels[..., 2] = 128, 255
        Image.fromarray(pixels).save(src / rel)
    result = CliRunner().invoke(main, ["prepare", str(src), str(out), "--min-size", "32"])
    assert result.exit_code == 0, result.output
    kept = {m["source"]: m for m in map(json.loads, (out / "manifest.jsonl").open())}
    assert kept["vario/S3/S3.png"]["file"] == "color/vario_S3_S3_texture.png"
    assert kept["walls/brick.png"]["file"] == "color/walls_brick.png"
    assert kind_from_name(kept["tiles/rock_n.png"]["file"]) == "normal"
    packed = pack_folders([out / "color"], tmp_path / "p.safetensors", crop_size=32, per_image=1)
    assert packed.crops == 2  # neither colour texture left out as a data map
