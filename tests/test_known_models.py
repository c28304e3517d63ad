"""Known community models by name: the registry, and the download path against a real HTTP server
on loopback (good file, wrong hash, truncated, oversized, 404, server down, already cached,
downloads off), then the real model file through the restricted reader and the CLI. No network."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import make_pixels
from PIL import Image

from upscaler import load_model
from upscaler.cli import main
from upscaler.models import RRDBConfig, RRDBNet, known, sources
from upscaler.models.known import KnownModel, ModelUnavailableError

ROOT = Path(__file__).resolve().parents[1]
PEERS = next(
    (
        p
        for p in (ROOT.parent / "shared" / "peers", ROOT.parents[1] / "shared" / "peers")
        if p.is_dir()
    ),
    None,
)


class Server:
    """A real HTTP server on 127.0.0.1 in a thread. ``files`` maps a URL path to its bytes;
    ``mode`` per path: "ok", "truncate" (announces the full length, sends half, hangs up),
    "unsized" (no Content-Length) or "drip" (one byte every 50 ms, until the client hangs up or
    the server closes). Every request is recorded."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.mode: dict[str, str] = {}
        self.requests: list[str] = []
        self.closing = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                outer.requests.append(self.path)
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                mode = outer.mode.get(self.path, "ok")
                self.send_response(200)
                if mode != "unsized":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.close_connection = True
                with contextlib.suppress(ConnectionError):  # the client may hang up first
                    if mode == "drip":
                        for i in range(len(data)):
                            if outer.closing.wait(0.05):
                                return
                            self.wfile.write(data[i : i + 1])
                            self.wfile.flush()
                        return
                    self.wfile.write(data[: len(data) // 2] if mode == "truncate" else data)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture()
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private torch hub cache; downloads allowed, no mirror, no extra registry."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for name in (known.NO_DOWNLOAD_ENV, known.MIRROR_ENV, known.EXTRA_ENV):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "torch" / "hub" / "checkpoints"


def realesrgan_pth(seed: int = 0) -> bytes:
    """A real tiny RRDB .pth in Real-ESRGAN's own layout (``params_ema`` wrapper, zip format)."""
    torch.manual_seed(seed)
    net = RRDBNet(RRDBConfig(num_features=8, num_blocks=1, growth_channels=4, scale=4))
    buffer = io.BytesIO()
    torch.save({"params_ema": net.state_dict()}, buffer)
    return buffer.getvalue()


def entry(data: bytes, url: str = "", **changes: object) -> KnownModel:
    model = KnownModel(
        name="tiny-esrgan",
        scale=4,
        architecture="ESRGAN (RRDB) 8nf 1nb",
        licence="CC0-1.0",
        summary="test",
        file="tiny_esrgan.pth",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        source="made by the test",
        url=url,
    )
    return replace(model, **changes)  # type: ignore[arg-type]


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.is_dir() else []


# --- the registry -----------------------------------------------------------------------------


def test_registry_has_the_well_known_models_with_sourced_facts() -> None:
    models = known.known_models()
    for name in (
        "realesrgan-x4plus",
        "realesrgan-x2plus",
        "realesrgan-x4plus-anime-6b",
        "realesr-animevideov3",
        "realesr-general-x4v3",
        "4x-UltraSharp",
        "4x-NMKD-Siax-CX",
    ):
        assert name in models, name
    assert any(m.architecture == "SPAN" for m in models.values())
    files = [m.file for m in models.values()]
    assert len(set(files)) == len(files)
    for model in models.values():
        assert "OpenModelDB" in model.source, model.name
        assert model.url.startswith("https://") or (not model.url and model.page), model.name
        assert model.licence and model.size > 100_000 and model.scale in (2, 4)
    assert known.find("RealESRGAN_x4PLUS") is models["realesrgan-x4plus"]  # alias, any case
    assert known.find("4x-ultrasharp") is models["4x-UltraSharp"]
    assert known.find("texture-x4") is None


def test_registry_rejects_bad_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = entry(b"x" * 10)
    base = (
        f'name = "{good.name}"\nscale = 4\narchitecture = "a"\nlicence = "MIT"\nsummary = "s"\n'
        f'size = 10\nsha256 = "{good.sha256}"\nsource = "t"\nurl = "https://example.invalid/f"\n'
    )
    extra = tmp_path / "extra.toml"
    monkeypatch.setenv(known.EXTRA_ENV, str(extra))
    for bad, message in [
        ('file = "../escape.pth"', "plain file name"),
        ('file = "ok.pth"\nsha = "x"', "unknown keys"),
        (
            'file = "ok.pth"\n[[model.copy]]\nfile = "c.pth"\nsha256 = "ABC"\nsource = "t"',
            "SHA-256",
        ),
    ]:
        extra.write_text("[[model]]\n" + base + bad + "\n")
        with pytest.raises(ValueError, match=message):
            known.known_models()
    extra.write_text(
        "[[model]]\n" + base.replace(good.name, "UltraSharp-copy") + 'file = "a.pth"\n'
        'aliases = ["4X-ULTRASHARP"]\n'
    )
    with pytest.raises(ValueError, match="already taken"):
        known.known_models()


# --- the download path ------------------------------------------------------------------------


def test_download_verifies_caches_and_loads_through_the_safe_reader(
    hub: Path, server: Server
) -> None:
    data = realesrgan_pth()
    server.files["/tiny_esrgan.pth"] = data
    model = entry(data, url=server.url + "/tiny_esrgan.pth")
    seen: list[tuple[int, int]] = []
    path = known.fetch(model, progress=lambda done, total: seen.append((done, total)))
    assert path == hub / "tiny_esrgan.pth" and path.read_bytes() == data
    assert seen[0] == (0, len(data)) and seen[-1] == (len(data), len(data))
    assert leftovers(hub) == ["tiny_esrgan.pth"]  # no temporaries left
    upscaler = load_model(path)
    assert upscaler.scale == 4 and upscaler.info.arch == "rrdb"
    # Already cached: no second request.
    assert known.fetch(model) == path
    assert server.requests == ["/tiny_esrgan.pth"]


def test_wrong_hash_deletes_the_download_and_says_so(hub: Path, server: Server) -> None:
    data = realesrgan_pth()
    server.files["/tiny_esrgan.pth"] = realesrgan_pth(seed=1)  # same size, other weights
    model = entry(data, url=server.url + "/tiny_esrgan.pth")
    assert len(server.files["/tiny_esrgan.pth"]) == len(data)
    with pytest.raises(
        ModelUnavailableError, match="SHA-256 .* expected .*the download was deleted"
    ) as caught:
        known.fetch(model)
    assert "\n" not in str(caught.value)
    assert leftovers(hub) == []


def test_truncated_transfer_keeps_nothing(hub: Path, server: Server) -> None:
    data = realesrgan_pth()
    server.files["/tiny_esrgan.pth"] = data
    server.mode["/tiny_esrgan.pth"] = "truncate"
    model = entry(data, url=server.url + "/tiny_esrgan.pth")
    with pytest.raises(
        ModelUnavailableError,
        match=f"stopped after {len(data) // 2:,} of .* partial download was deleted",
    ):
        known.fetch(model)
    assert leftovers(hub) == []


def test_a_dripping_server_is_given_up_at_the_deadline(hub: Path, server: Server) -> None:
    """One byte every 50 ms never trips the per-read timeout; the whole transfer's deadline
    (1 s here, minutes by default) ends it, and the partial file goes."""
    data = realesrgan_pth()
    server.files["/tiny_esrgan.pth"] = data
    server.mode["/tiny_esrgan.pth"] = "drip"
    model = entry(data, url=server.url + "/tiny_esrgan.pth")
    start = time.monotonic()
    with pytest.raises(ModelUnavailableError, match="not done within the 1 s allowed") as caught:
        known.fetch(model, deadline_s=1.0)
    assert time.monotonic() - start < 5
    assert "stopped after" in str(caught.value) and "partial download was deleted" in str(
        caught.value
    )
    assert leftovers(hub) == []
    assert known.deadline_for(67_040_989) < 3600  # the largest shipped model: under an hour


def test_ctrl_c_in_a_download_leaves_no_temporary(hub: Path, server: Server) -> None:
    data = realesrgan_pth()
    server.files["/tiny_esrgan.pth"] = data
    server.mode["/tiny_esrgan.pth"] = "drip"
    model = entry(data, url=server.url + "/tiny_esrgan.pth")

    def interrupt(done: int, total: int) -> None:
        if done >= 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        known.fetch(model, progress=interrupt, deadline_s=10.0)
    assert leftovers(hub) == []


def test_more_bytes_than_registered_are_refused(hub: Path, server: Server) -> None:
    data = realesrgan_pth()
    server.files["/tiny_esrgan.pth"] = data + b"\0" * (3 << 20)
    server.mode["/tiny_esrgan.pth"] = "unsized"  # nothing to refuse up front: the cap must hold
    model = entry(data, url=server.url + "/tiny_esrgan.pth")
    with pytest.raises(ModelUnavailableError, match="more than the expected"):
        known.fetch(model)
    server.mode["/tiny_esrgan.pth"] = "ok"
    with pytest.raises(ModelUnavailableError, match="offers .* bytes, expected"):
        known.fetch(model)
    assert leftovers(hub) == []


def test_http_error_names_the_status_and_where_to_put_the_file(hub: Path, server: Server) -> None:
    model = entry(b"abc", url=server.url + "/missing.pth")
    with pytest.raises(ModelUnavailableError, match="HTTP 404") as caught:
        known.fetch(model)
    assert f"save it as {hub / 'tiny_esrgan.pth'}" in str(caught.value)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_offline_says_in_one_line_what_to_do(hub: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/tiny_esrgan.pth"
    model = entry(b"abc", url=url)
    with pytest.raises(ModelUnavailableError) as caught:
        known.fetch(model)
    message = str(caught.value)
    assert "\n" not in message and "could not be downloaded" in message
    assert f"download {url} and save it as {hub / 'tiny_esrgan.pth'}" in message
    assert leftovers(hub) == []


def test_downloads_off_makes_no_request(
    hub: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = realesrgan_pth()
    server.files["/tiny_esrgan.pth"] = data
    model = entry(data, url=server.url + "/tiny_esrgan.pth")
    with pytest.raises(ModelUnavailableError, match="downloads are off"):
        known.fetch(model, download=False)
    monkeypatch.setenv(known.NO_DOWNLOAD_ENV, "1")
    with pytest.raises(ModelUnavailableError, match=f"save it as {hub / 'tiny_esrgan.pth'}"):
        known.fetch(model)
    manual = entry(data, page="https://example.invalid/page")
    with pytest.raises(ModelUnavailableError, match="get it from https://example.invalid/page"):
        known.fetch(manual, download=True)
    assert server.requests == []


def test_a_different_file_in_the_cache_is_reported_not_replaced(hub: Path, server: Server) -> None:
    data = realesrgan_pth()
    server.files["/tiny_esrgan.pth"] = data
    model = entry(data, url=server.url + "/tiny_esrgan.pth")
    hub.mkdir(parents=True)
    (hub / "tiny_esrgan.pth").write_bytes(b"someone else's file")
    with pytest.raises(ModelUnavailableError, match="is not this model .* delete it"):
        known.fetch(model)
    assert (hub / "tiny_esrgan.pth").read_bytes() == b"someone else's file"
    assert server.requests == []


def test_mirror_replaces_the_official_url(
    hub: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = realesrgan_pth()
    server.files["/mirror/tiny_esrgan.pth"] = data
    monkeypatch.setenv(known.MIRROR_ENV, server.url + "/mirror/")
    model = entry(data, page="https://example.invalid/no-direct-link")
    assert known.fetch(model).read_bytes() == data
    assert server.requests == ["/mirror/tiny_esrgan.pth"]


# --- recognised local copies (Real-ESRGAN's weights in ../shared/peers) -----------------------


@pytest.mark.skipif(PEERS is None, reason="../shared/peers is not here")
def test_peer_conversions_in_the_cache_are_recognised(hub: Path, tmp_path: Path) -> None:
    assert PEERS is not None
    hub.mkdir(parents=True)
    for name in ("realesr-animevideov3-x4.safetensors", "RealESRGAN_x4plus.safetensors"):
        shutil.copy(PEERS / name, hub)
    path = sources.resolve("realesr-animevideov3").path
    assert path == hub / "realesr-animevideov3-x4.safetensors"
    assert sources.resolve("realesrgan-x4plus").path == hub / "RealESRGAN_x4plus.safetensors"
    Image.fromarray(make_pixels(13, 9)).save(tmp_path / "in.png")
    result = CliRunner().invoke(
        main,
        [
            str(tmp_path / "in.png"),
            "-o",
            str(tmp_path / "out"),
            "-q",
            "--no-download",
            "--model",
            "realesr-animevideov3",
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "in.png") as im:
        assert im.size == (36, 52)
    listing = CliRunner().invoke(main, ["--list-models"]).output
    line = next(ln for ln in listing.splitlines() if "realesr-animevideov3" in ln)
    assert "present (a copy)" in line and "BSD-3-Clause" in line
    # A changed byte is no longer that model: not recognised, and never loaded.
    copy = hub / "realesr-animevideov3-x4.safetensors"
    copy.write_bytes(copy.read_bytes()[:-1] + b"\1")
    with pytest.raises(ModelUnavailableError, match="downloads are off"):
        sources.resolve("realesr-animevideov3").fetch(download=False)


# --- the command ------------------------------------------------------------------------------


def _registry(tmp_path: Path, data: bytes, url: str) -> Path:
    model = entry(data)
    path = tmp_path / "team-models.toml"
    path.write_text(
        "[[model]]\n"
        f'name = "{model.name}"\nscale = 4\narchitecture = "ESRGAN"\nlicence = "CC0-1.0"\n'
        f'summary = "a tiny test model"\nfile = "{model.file}"\nsize = {model.size}\n'
        f'sha256 = "{model.sha256}"\nurl = "{url}"\nsource = "the test"\n'
    )
    return path


def test_cli_downloads_once_then_runs_from_the_cache(
    hub: Path, tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The installed command in a real subprocess downloads; a second run uses the cache."""
    data = realesrgan_pth()
    server.files["/tiny_esrgan.pth"] = data
    Image.fromarray(make_pixels(17, 11)).save(tmp_path / "a.png")
    monkeypatch.setenv(
        known.EXTRA_ENV, str(_registry(tmp_path, data, server.url + "/tiny_esrgan.pth"))
    )
    args = [str(tmp_path / "a.png"), "--model", "TINY-esrgan", "--seamless", "off", "-o"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "upscaler", *args, str(tmp_path / "out1")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "downloading tiny-esrgan" in proc.stderr and str(hub / "tiny_esrgan.pth") in proc.stderr
    assert server.requests == ["/tiny_esrgan.pth"]
    result = CliRunner().invoke(main, [*args, str(tmp_path / "out2")], catch_exceptions=False)
    assert result.exit_code == 0 and "downloading" not in result.output
    assert server.requests == ["/tiny_esrgan.pth"]
    for out in ("out1", "out2"):
        with Image.open(tmp_path / out / "a.png") as im:
            assert im.size == (44, 68)
    listing = CliRunner().invoke(main, ["--list-models"]).output
    line = next(ln for ln in listing.splitlines() if "tiny-esrgan" in ln)
    assert "present" in line and "CC0-1.0" in line
    assert "realesrgan-x4plus" in listing and "texture-x4" in listing


def test_cli_offline_is_one_line_with_the_url_and_the_path(hub: Path, tmp_path: Path) -> None:
    Image.fromarray(make_pixels(9, 7)).save(tmp_path / "a.png")
    result = CliRunner().invoke(
        main,
        [
            str(tmp_path / "a.png"),
            "-o",
            str(tmp_path / "out"),
            "--model",
            "realesrgan-x4plus",
            "--no-download",
        ],
    )
    assert result.exit_code == 3
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    model = known.find("realesrgan-x4plus")
    assert model is not None
    assert model.url in lines[0] and str(hub / "RealESRGAN_x4plus.pth") in lines[0]
    assert not (tmp_path / "out").exists()


def test_cli_checks_the_scale_before_downloading(
    hub: Path, tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(known.MIRROR_ENV, server.url)
    Image.fromarray(make_pixels(9, 7)).save(tmp_path / "a.png")
    result = CliRunner().invoke(
        main,
        [str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "-m", "realesrgan-x4plus", "-s", "2"],
    )
    assert result.exit_code == 2 and "x4" in result.output
    assert server.requests == []


def test_a_missing_file_named_like_a_known_model_points_to_the_name(hub: Path) -> None:
    with pytest.raises(known.ModelFileError, match="--model realesrgan-x4plus"):
        sources.resolve("weights/RealESRGAN_x4plus.pth").file()


def test_a_mistyped_model_name_gets_the_closest_names(hub: Path, tmp_path: Path) -> None:
    Image.fromarray(make_pixels(9, 7, 3)).save(tmp_path / "a.png")
    args = [str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--dry-run", "-m"]
    result = CliRunner().invoke(main, [*args, "realesrgan-x4pls"])
    assert result.exit_code == 3
    assert result.output.rstrip().endswith("did you mean realesrgan-x4plus or realesrgan-x2plus?")
    alias = CliRunner().invoke(main, [*args, "RealESRGAN_x4PLS"])  # an alias suggests the name
    assert "did you mean realesrgan-x4plus or" in alias.output
    assert (
        "did you mean texture-x4 or texture-x2?"
        in CliRunner().invoke(main, [*args, "texture-x3"]).output
    )
    assert "did you mean" not in CliRunner().invoke(main, [*args, "gibberish"]).output
