"""Helpers of the workflow tests: a private copy of the workflow, the environment to run it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKFLOW_FILES = ["Snakefile", "workflow", "config", "profiles"]


def copy_workflow(dest: Path, extra: tuple[str, ...] = ()) -> Path:
    """Copy the workflow definition (not its outputs) into ``dest``/work and return it."""
    work = dest / "work"
    work.mkdir()
    for name in WORKFLOW_FILES + list(extra):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, work / name)
    return work


# the HF cache the tests started with; a test that sets another one (stand-in checkpoints) keeps it
SESSION_HF_HOME = os.environ.get("HF_HOME")
_published_configs: Path | None = None


def published_configs_home() -> Path:
    """An HF_HOME (built once per process, in a temporary folder) holding the published LMs'
    config.json files only: what the workflow's config check looks for offline before
    planning a run of facebook/bart-base or t5-base (the weights are the rehearsals' business)."""
    global _published_configs
    if _published_configs is None:
        import json
        import tempfile

        import stand_ins

        home = Path(tempfile.mkdtemp(prefix="vladapter-published-configs."))
        for repo, model_type, config in ((stand_ins.BART, "bart", stand_ins.BART_CONFIG),
                                         (stand_ins.T5, "t5", stand_ins.T5_CONFIG)):
            files = home / "files" / model_type
            files.mkdir(parents=True)
            (files / "config.json").write_text(json.dumps({"model_type": model_type, **config}))
            stand_ins.save_in_cache(home, repo, files)
        _published_configs = home
    return _published_configs


def snakemake_env(base: dict | None = None) -> dict:
    """The environment jobs need: this interpreter's bin (vladapter, snakemake) first on PATH,
    few threads, no network for models, and (unless a test chose its own cache) an HF cache
    that knows the published LMs (published_configs_home), as a user's has offline."""
    env = dict(base if base is not None else os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    if env.get("HF_HOME") == SESSION_HF_HOME:
        env["HF_HOME"] = str(published_configs_home())
    return env


def snakemake(workdir: Path, *args: str, timeout: int = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run snakemake in ``workdir`` with the local profile; output captured."""
    cmd = [sys.executable, "-m", "snakemake", "--profile", "profiles/default", *args]
    proc = subprocess.run(cmd, cwd=workdir, env=snakemake_env(), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{(proc.stdout + proc.stderr)[-6000:]}")
    return proc


def planned_jobs(workdir: Path, *args: str) -> dict[str, int]:
    """Rule -> number of jobs a dry run plans (empty when there is nothing to do)."""
    out = snakemake(workdir, "-n", "--quiet", "rules", *args).stdout
    jobs: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit() and parts[0] not in ("total", "job"):
            jobs[parts[0]] = int(parts[1])
    return jobs


def planned_commands(workdir: Path, *args: str) -> list[str]:
    """The shell commands of the jobs a dry run plans (`snakemake -n -p`)."""
    out = snakemake(workdir, "-n", "-p", *args).stdout
    return [line.split("Shell command:", 1)[1].strip() for line in out.splitlines() if "Shell command:" in line]


def run_smoke(dest: Path) -> tuple[Path, str]:
    """The smoke workflow run once, in ``dest``/work: a git repository whose default config
    (config/config.yaml) is the smoke one, so snakemake, DVC's stages and the SLURM profile
    all see the same settings. Returns the folder and the run's output."""
    work = copy_workflow(dest)
    shutil.copy(work / "config" / "smoke.yaml", work / "config" / "config.yaml")
    proc = snakemake(work, timeout=900)
    return work, proc.stdout + proc.stderr


def copy_run(src: Path, dest: Path) -> Path:
    """A copy of a workflow folder with its outputs, modification times and Snakemake
    records kept (a copy plans what the original plans); ``dest`` must not exist."""
    shutil.copytree(src, dest, symlinks=True, copy_function=shutil.copy2)
    return dest


# config/paper-video.yaml reads VALUE's release (annotations, subtitles, released features);
# the same setup from the videos a user has instead: its `data` section replaced by this one
PAPER_VIDEO_FROM_VIDEOS = {
    "videos": {
        "tvqa": {"folder": "data/raw/tvqa/frames_hq", "fps": 3},              # released 3-fps frame folders
        "tvc": {"folder": "data/raw/tvqa/frames_hq", "fps": 3, "share": "tvqa"},
        "how2qa": {"folder": "data/raw/how2qa/videos"},                      # the user's clips
        "yc2c": {"folder": "data/raw/yc2c/videos"},
    },
    "on_missing_video": "stop",
    "max_missing_videos": 0.01,
}


def paper_video_from_videos(work: Path, name: str = "paper-video-videos.yaml") -> str:
    """Write config/paper-video.yaml with the videos as its source (PAPER_VIDEO_FROM_VIDEOS)
    into ``work``; returns its name for --configfile."""
    import yaml

    config = yaml.safe_load((work / "config" / "paper-video.yaml").read_text())
    config["data"] = PAPER_VIDEO_FROM_VIDEOS
    (work / name).write_text(yaml.safe_dump(config, sort_keys=False))
    return name


def value_release_folders(work: Path, config: dict) -> None:
    """Create the (empty) folders a config reads VALUE's release from, as a user who ran
    VALUE's DataRelease scripts has them: data.paths and data.videos.<dataset>.features."""
    data = config.get("data") or {}
    folders = list((data.get("paths") or {}).values())
    folders += [v["features"] for v in (data.get("videos") or {}).values() if "features" in v]
    for folder in folders:
        (work / folder).mkdir(parents=True, exist_ok=True)


def kill_at_checkpoint(cmd: list[str], env: dict, run_dir: Path, step: int = 8, timeout: float = 120) -> None:
    """Start the training ``cmd``, SIGKILL it once its work folder holds the checkpoint of
    ``step`` (or later), and check that it had not finished: a run to resume."""
    import signal
    import time

    from vladapter.train.checkpoint import list_checkpoints
    from vladapter.train.workdir import work_dir

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while time.time() < deadline and not any(c.name >= f"step-{step:07d}" for c in list_checkpoints(work_dir(run_dir))):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (Path(run_dir) / "train.json").exists(), "the run finished before it could be killed"
