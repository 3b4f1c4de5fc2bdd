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
def smoke_workflow(tmp_path_factory):
    """The smoke workflow (config/smoke.yaml as the default config), run once per test
    session and shared by the workflow, DVC and SLURM tests: (folder, output). Tests that
    change the folder work on a copy (workflow_helpers.copy_run)."""
    from workflow_helpers import run_smoke

    return run_smoke(tmp_path_factory.mktemp("smoke"))
