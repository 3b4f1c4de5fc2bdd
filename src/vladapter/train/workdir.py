"""Where an unfinished run keeps its state: a work folder beside the run folder.

    models/tiny-t5/.image-single_adapter.partial/
        lock                 held (flock) by the one process writing this run
        checkpoints/step-N/  resumable state (vladapter.train.checkpoint)
        dvclive/             the training log so far

The run folder itself (``models/tiny-t5/image-single_adapter``) is written only when the
run has finished. Snakemake deletes a job's declared outputs before it runs the job and
after the job fails; the work folder is no output, so the checkpoints of a killed run
survive and the rerun (the rules pass ``--resume``) continues from them. A checkpoint is
resumed only when its producer (settings, world size, the initial weights' content, the
input files) is the one of the new run; otherwise the run starts over.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import time
from pathlib import Path
from typing import Iterable, Iterator

import torch

from vladapter.errors import TrainingError
from vladapter.utils.digest import state_digest

WORK_SUFFIX = ".partial"
LOCK_FILE = "lock"
# settings that change how a run is carried out, not what it computes
RUNTIME_KEYS = ("num_workers", "checkpoint_every", "keep_checkpoints", "log_every")


def work_dir(out: str | Path) -> Path:
    """The work folder of the run folder ``out``: a hidden sibling, on the same file system.
    A seed's folder (``<run>/seed-<n>``, vladapter.experiments.seed_dir) lies inside the
    run folder, which Snakemake deletes before the job: its work folder is the run
    folder's sibling ``.<run>.seed-<n>.partial``."""
    out = Path(out)
    if re.fullmatch(r"seed-\d+", out.name):
        return out.parent.parent / f".{out.parent.name}.{out.name}{WORK_SUFFIX}"
    return out.parent / f".{out.name}{WORK_SUFFIX}"


def run_name(work: Path) -> str:
    """The run folder's name of a work folder."""
    return work.name.removeprefix(".").removesuffix(WORK_SUFFIX)


class RunLockedError(TrainingError):
    """Another process is writing the same run."""


@contextlib.contextmanager
def run_lock(work: Path) -> Iterator[None]:
    """Hold the run's lock while the block runs; raise RunLockedError if another process holds it.

    The lock is an flock on ``<work>/lock``: the kernel releases it when its holder dies,
    so a killed run never leaves a stale lock behind. When the block ends (finished,
    refused or failed) the lock file goes, and so does the work folder if nothing else is
    in it (no checkpoint, no log): a refused run leaves nothing behind. A process that
    locked a file removed meanwhile takes the lock again on the path's new file.
    """
    path = work / LOCK_FILE
    handle = _lock(work, path)
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n")
        handle.flush()
        yield
    finally:
        if _same_file(path, handle):
            path.unlink()
        with contextlib.suppress(OSError):  # not empty (checkpoints to resume from), or gone
            work.rmdir()
        handle.close()


def _same_file(path: Path, handle) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


def _lock(work: Path, path: Path):
    """The open lock file ``path``, flocked by this process (RunLockedError when another holds it)."""
    while True:
        work.mkdir(parents=True, exist_ok=True)
        try:
            handle = open(path, "a+")
        except FileNotFoundError:  # the folder was removed by the holder that just finished
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise RunLockedError(
                f"{work.parent / run_name(work)} is being written by {holder} (lock: {path}); "
                "a second writer would corrupt it: wait for that process to finish, or end it "
                "(e.g. a job left running after snakemake was killed), then rerun") from None
        if _same_file(path, handle):
            return handle
        handle.close()  # locked a file its holder removed on finishing: lock the one there now


def setting_differences(before: dict, now: dict) -> list[str]:
    """What differs between two runs' settings (``key: before -> now``), leaving out those that
    only change how a run is carried out (RUNTIME_KEYS)."""
    now = json.loads(json.dumps(now))  # as an info file gives it back
    keys = sorted((set(before) | set(now)) - set(RUNTIME_KEYS))
    return [f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in keys if before.get(k) != now.get(k)]


def file_stamps(paths: Iterable[Path]) -> dict[str, list[int]]:
    """Size and modification time of each existing file (written atomically: a rewrite changes both or the time)."""
    stamps = {}
    for p in sorted({Path(p) for p in paths}):
        if p.is_file():
            st = p.stat()
            stamps[str(p)] = [st.st_size, st.st_mtime_ns]
    return stamps


def producer(config: dict, world_size: int, model: torch.nn.Module, inputs: Iterable[Path]) -> dict:
    """What a checkpoint's state depends on; a checkpoint is resumed only when this is equal."""
    settings = {k: v for k, v in config.items() if k not in RUNTIME_KEYS}
    made = {"settings": settings, "world_size": world_size, "initial_state": state_digest(model),
            "inputs": file_stamps(inputs)}
    return json.loads(json.dumps(made))  # as a checkpoint's state.json gives it back


def input_files(cfg) -> list[Path]:
    """The files a training run reads besides its initial weights: its tasks' prepared
    records, the feature files, the tokenizer (a TrainConfig or PretrainConfig)."""
    from vladapter.core.inputs import records_path

    files = [records_path(cfg.prepared, task, cfg.split) for task in cfg.tasks]
    files += sorted(Path(cfg.features).glob(f"*.{cfg.backbone}.h5" if cfg.backbone else "*.h5"))
    tokenizer = Path(cfg.tokenizer or "")
    if cfg.tokenizer and tokenizer.is_dir():
        files += sorted(p for p in tokenizer.rglob("*") if p.is_file())
    return files


@contextlib.contextmanager
def writing(out: Path, is_main: bool, resume: bool) -> Iterator[Path]:
    """The work folder of run folder ``out``, locked by the main rank while the block runs.

    Without ``resume`` an earlier attempt's state is removed first (a fresh run does not
    mix with it). Other ranks only read from the folder and take no lock.
    """
    work = work_dir(out)
    if not is_main:
        yield work
        return
    with run_lock(work):
        if not resume:
            for stale in ("checkpoints", "dvclive"):
                shutil.rmtree(work / stale, ignore_errors=True)
        yield work


def publish_log(work: Path, out: Path) -> None:
    """Copy the training log into the finished run folder (the work folder keeps its own
    until ``discard``, so a kill in between loses nothing)."""
    if (work / "dvclive").is_dir():
        shutil.copytree(work / "dvclive", out / "dvclive", dirs_exist_ok=True)


def discard(work: Path) -> None:
    """Remove the work folder of a finished run (its result is in the run folder)."""
    shutil.rmtree(work, ignore_errors=True)
