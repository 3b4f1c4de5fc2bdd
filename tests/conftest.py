"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL = REPO / "tests" / "fixtures" / "real"

# tests never reach the network for models
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def real_fixtures() -> Path:
    """Small real samples of the published dataset formats (see each SOURCE.txt)."""
    return REAL


@pytest.fixture(scope="session")
def stand_in_hf_home(request) -> Path:
    """An ``HF_HOME`` holding the published checkpoints' stand-ins (real architectures, random
    weights; tests/stand_ins.py): built once, kept in pytest's cache folder keyed by content."""
    import stand_ins

    return stand_ins.cached_hf_home(request.config.cache.mkdir("stand-ins"))
