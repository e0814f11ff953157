"""Shared fixtures: tiny random-init models of every family, built locally (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

from organfed.shared.tiny import FAMILIES, write_tiny_model


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny 6-layer model directory per family: ``{"gpt2": path, "llama": path, "gpt-oss": path}``."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {family: write_tiny_model(family, root / family, seed=1) for family in FAMILIES}


@pytest.fixture(params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return request.param
