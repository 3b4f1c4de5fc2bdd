"""Shared test fixtures."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from vladapter.utils import arithmetic

# One CPU arithmetic in every test process and the processes it starts (the level of
# VLADAPTER_CPU_ARITHMETIC, default avx2: docs/workflow.md), set before torch or numpy loads
CPU_ARITHMETIC = arithmetic.pin()

REPO = Path(__file__).resolve().parents[1]
REAL = REPO / "tests" / "fixtures" / "real"

# Ctrl-C tests send SIGINT to this process and to the commands it starts: a session started in
# the background by a non-interactive shell inherits SIGINT ignored (and its children would
# too), so Python's own handler is set again (exec gives the children the default action)
signal.signal(signal.SIGINT, signal.default_int_handler)

# tests never reach the network for models
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Under pytest-xdist, the workers share the cores: each gets its part of them for torch's
# threads (and so do the processes it starts); two processes at torch's default of every core
# run a tiny training several times slower (docs/DEVELOPING.md)
# (pinned arithmetic: one thread each, on every host)
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1 and CPU_ARITHMETIC == "native":
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // _WORKERS))

# Modules that share one session's smoke workflow or the local SLURM cluster (started and
# stopped per module) run in one pytest-xdist worker; every other module is a group of its own,
# so its module-scoped fixtures are built once (pyproject: -n 2 --dist loadgroup).
SHARED_GROUPS = {"test_workflow": "smoke", "test_dvc": "smoke", "test_settings": "smoke",
                 "test_slurm": "smoke", "test_multinode": "smoke"}


# Longest groups first (xdist hands each worker two groups at the start, in this order, then
# one at a time): the image rehearsal and the smoke group start on different workers.
FIRST = ("test_rehearsal_image", "smoke", "test_benchmarks", "test_rehearsal_video", "test_petl_lst",
         "test_arithmetic")


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    def group(item) -> str:
        module = item.module.__name__ if item.module else item.nodeid.split("::")[0]
        return SHARED_GROUPS.get(module, module)

    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))
    items.sort(key=lambda item: FIRST.index(group(item)) if group(item) in FIRST else len(FIRST))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def real_fixtures() -> Path:
    """Small real samples of the published dataset formats (see each SOURCE.txt)."""
    return REAL


@pytest.fixture(scope="session")
def stand_in_hf_home(request, tmp_path_factory) -> Path:
    """An ``HF_HOME`` holding the published checkpoints' stand-ins (real architectures, random
    weights; tests/stand_ins.py): built once, kept in pytest's cache folder keyed by content
    (in a temporary folder when the cache is off: -p no:cacheprovider)."""
    import stand_ins

    cache = getattr(request.config, "cache", None)
    root = cache.mkdir("stand-ins") if cache is not None else tmp_path_factory.mktemp("stand-ins")
    return stand_ins.cached_hf_home(root)


@pytest.fixture(scope="session")
def smoke_workflow(tmp_path_factory):
    """The smoke workflow (config/smoke.yaml as the default config), run once per test
    session and shared by the workflow, DVC and SLURM tests: (folder, output). Tests that
    change the folder work on a copy (workflow_helpers.copy_run)."""
    from workflow_helpers import run_smoke

    return run_smoke(tmp_path_factory.mktemp("smoke"))
