"""Shared fixtures: tiny real models on disk, and every test's caches and state kept out of the
user's home. The plain helpers they use live in ``helpers.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import write_blur, write_compact, write_rrdb


@pytest.fixture(autouse=True, scope="session")
def _contract_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Measured model contracts go to a temporary cache, never the user's (subprocesses too)."""
    import os

    os.environ["UPSCALE_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(autouse=True)
def _state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Resume state of every test's runs in a fresh folder (not the user's cache); subprocesses
    inherit it through the environment."""
    folder = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("UPSCALE_STATE_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_x4(models_dir: Path) -> Path:
    return write_compact(models_dir / "tiny-x4.safetensors", scale=4)


@pytest.fixture(scope="session")
def tiny_x2(models_dir: Path) -> Path:
    return write_compact(models_dir / "tiny-x2.safetensors", scale=2)


@pytest.fixture(scope="session")
def tiny_rrdb_x2(models_dir: Path) -> Path:
    return write_rrdb(models_dir / "tiny-rrdb-x2.safetensors", scale=2)


@pytest.fixture(scope="session")
def blur_x2(models_dir: Path) -> Path:
    return write_blur(models_dir / "blur-x2.safetensors", scale=2)
