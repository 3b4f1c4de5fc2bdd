"""The bad-input suite: every bad input a user can hand vladapter, tried against the real
component (the CLI in a subprocess, Snakemake, HDF5, a read-only folder, a file-size
limit as the full disk). Each must end in a clear error naming the file, record or key
and the fix, exit status 2, no Python traceback, nothing already done lost and nothing
half written under a final name; inputs that already worked are tried too, so they keep
working. `test_the_suite_counts_its_bad_inputs` checks the number docs/DEVELOPING.md states.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

import vl_world
from workflow_helpers import BIN, REPO, copy_workflow, snakemake, snakemake_env
from vladapter.cli import COMMANDS, main

pytestmark = pytest.mark.badinput

REAL = REPO / "tests" / "fixtures" / "real"
TRACEBACK = "Traceback (most recent call last)"
# a real read-only folder for root too: without the capability that lets root write anywhere
NO_ROOT_OVERRIDE = (["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
                    if os.geteuid() == 0 else [])


def vladapter(*args: str, cwd: Path | None = None, prefix: list[str] = (), timeout: int = 300,
              preexec_fn=None) -> subprocess.CompletedProcess:
    """The `vladapter` command (as a user runs it) in a subprocess, output captured."""
    return subprocess.run([*prefix, str(BIN / "vladapter"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=snakemake_env(), preexec_fn=preexec_fn)


def assert_clean_error(rc: int, err: str, *named: str) -> None:
    """Exit 2, no traceback, and the message names each of ``named``."""
    assert rc == 2, err[-3000:]
    assert TRACEBACK not in err, err[-3000:]
    for text in named:
        assert text in err, f"{text!r} not in:\n{err[-3000:]}"


def read_only(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    return folder


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def raw_nlvr2(tmp_path) -> Path:
    """A raw NLVR2 layout from the real samples (dev doubles as train)."""
    folder = tmp_path / "raw" / "nlvr2"
    folder.mkdir(parents=True)
    shutil.copy(REAL / "nlvr2" / "dev.json", folder / "train.json")
    shutil.copy(REAL / "nlvr2" / "dev.json", folder / "dev.json")
    shutil.copy(REAL / "nlvr2" / "test1.json", folder / "test1.json")
    return tmp_path / "raw"


def replace_in_line(path: Path, lineno: int, old: bytes, new: bytes) -> None:
    lines = path.read_bytes().split(b"\n")
    assert old in lines[lineno - 1]
    lines[lineno - 1] = lines[lineno - 1].replace(old, new, 1)
    path.write_bytes(b"\n".join(lines))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return vl_world.build(tmp_path_factory.mktemp("world"), n_train=16, n_test=8, tasks=("vqa",))


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    """A few steps of training on the tiny world: a run folder evaluate can load (seconds)."""
    import torch

    from vladapter.core.config import TrainConfig
    from vladapter.train.run import train

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("models") / "tiny-t5" / "single_adapter"
    train(TrainConfig(tasks=["vqa"], steps=2, batch_size=4, prepared=str(world["prepared"]),
                      features=str(world["features"]), tokenizer=str(world["tokenizer"]), checkpoint_every=0), out)
    return out


def copy_features(world, tmp_path) -> Path:
    broken = tmp_path / "features"
    shutil.copytree(world["features"], broken)
    return broken


def evaluate(trained, features: Path, tmp_path: Path, capsys) -> tuple[int, str]:
    rc = main(["evaluate", "--model", str(trained), "--features", str(features), "--out", str(tmp_path / "m.json"),
               "--predictions", str(tmp_path / "predictions"), "--num-beams", "1", "--device", "cpu"])
    return rc, capsys.readouterr().err


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny CLIPModel (32 px, 4x4 grid) saved like a real checkpoint."""
    import torch
    from transformers import CLIPModel

    from vladapter.features.toy_clip import tiny_clip_config

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clip") / "tinyclip"
    CLIPModel(tiny_clip_config(40, image_size=32, patch_size=8, width=64, layers=2, text_width=32, text_layers=1,
                               projection_dim=24)).save_pretrained(path)
    return path


def images(folder: Path, n: int) -> Path:
    from vladapter.features.synthetic import write_image

    for i in range(n):
        write_image(folder / f"img{i}.png", width=40, height=36, seed=i)
    return folder


# --- 1. text that is not UTF-8 ---------------------------------------------------------------


def test_non_utf8_nlvr2_sentence_names_file_and_line(raw_nlvr2, tmp_path):
    replace_in_line(raw_nlvr2 / "nlvr2" / "dev.json", 3, b'"sentence": "', b'"sentence": "\xff')
    proc = vladapter("prepare", "--dataset", "nlvr2", "--raw", str(raw_nlvr2), "--out", str(tmp_path / "out"),
                     "--no-media-check")
    assert_clean_error(proc.returncode, proc.stderr, "dev.json", "line 3", "UTF-8")
    assert not (tmp_path / "out" / "nlvr2" / "val.jsonl").exists()


def test_non_utf8_line_is_skipped_with_on_error_skip(raw_nlvr2, tmp_path):
    dev = raw_nlvr2 / "nlvr2" / "dev.json"
    n_lines = len(dev.read_bytes().splitlines())
    replace_in_line(dev, 3, b'"sentence": "', b'"sentence": "\xff')
    proc = vladapter("prepare", "--dataset", "nlvr2", "--raw", str(raw_nlvr2), "--out", str(tmp_path / "out"),
                     "--no-media-check", "--on-error", "skip")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out" / "nlvr2" / "summary.json").read_text())
    assert summary["skipped"] == 1 and "line 3" in summary["problems"][0]
    assert summary["counts"]["val"] == n_lines - 1


def test_non_utf8_karpathy_json_names_file_and_line(tmp_path):
    raw = tmp_path / "raw"
    (raw / "coco").mkdir(parents=True)
    text = (REAL / "karpathy_flickr8k" / "dataset_flickr8k.json").read_bytes()
    (raw / "coco" / "dataset_coco.json").write_bytes(text.replace(b'"raw": "A ', b'"raw": "Caf\xe9 ', 1))
    proc = vladapter("prepare", "--dataset", "coco", "--raw", str(raw), "--out", str(tmp_path / "out"),
                     "--no-media-check", "--on-error", "skip")
    assert_clean_error(proc.returncode, proc.stderr, "dataset_coco.json", "line 1", "\\xe9", "UTF-8")


@pytest.mark.parametrize("flag, value, named", [
    ("--lr", "nan", "train.lr of single_adapter: nan"),
    ("--lr", "-1", "train.lr of single_adapter: -1.0"),
    ("--lr", "1e38", "AdamW's step overflows float32"),  # was a RuntimeError from inside AdamW
    ("--dropout", "1.5", "train.dropout: 1.5"),
])
def test_a_number_that_cannot_train_is_refused_before_training(world, tmp_path, flag, value, named):
    proc = vladapter("train", "--method", "single_adapter", "--tasks", "vqa", "--steps", "2", f"{flag}={value}",
                     "--prepared", str(world["prepared"]), "--features", str(world["features"]),
                     "--tokenizer", str(world["tokenizer"]), "--out", str(tmp_path / "run"))
    assert_clean_error(proc.returncode, proc.stderr, named)
    assert not (tmp_path / "run").exists() and not list(tmp_path.glob(".run*"))


def test_non_utf8_prepared_jsonl_names_file_and_line(world, tmp_path):
    prepared = tmp_path / "prepared"
    shutil.copytree(world["prepared"], prepared)
    replace_in_line(prepared / "vqav2" / "train.jsonl", 2, b'"text": "', b'"text": "\xff')
    proc = vladapter("build-tokenizer", "--prepared", str(prepared), "--out", str(tmp_path / "tok"))
    assert_clean_error(proc.returncode, proc.stderr, "train.jsonl", "line 2", "UTF-8")
    assert not (tmp_path / "tok").exists()


# --- 2. prepared records are validated -------------------------------------------------------


@pytest.mark.parametrize("change,named", [
    (lambda r: r.pop("text"), "missing fields ['text']"),
    (lambda r: r.update(images=5), "field 'images' is a number"),
    (lambda r: r.update(targets=["yes"]), "field 'targets' is a list"),
], ids=["no-text", "images-a-number", "targets-a-list"])
def test_malformed_prepared_record_is_refused_before_training(world, tmp_path, capsys, change, named):
    prepared = tmp_path / "prepared"
    shutil.copytree(world["prepared"], prepared)
    path = prepared / "vqav2" / "train.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    change(rows[4])
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rc = main(["train", "--prepared", str(prepared), "--features", str(world["features"]), "--tasks", "vqa",
               "--tokenizer", str(world["tokenizer"]), "--steps", "1", "--out", str(tmp_path / "run")])
    assert_clean_error(rc, capsys.readouterr().err, str(path), "line 5", named, "vladapter prepare")
    assert not (tmp_path / "run").exists()


# --- 3. a truncated feature file -------------------------------------------------------------


def test_truncated_feature_file_names_it_and_the_fix(world, trained, tmp_path, capsys):
    broken = copy_features(world, tmp_path)
    path = broken / "coco.testclip.h5"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # an interrupted copy
    rc, err = evaluate(trained, broken, tmp_path, capsys)
    assert_clean_error(rc, err, str(path), "extract-features")


# --- 4. read-only output folders, a full disk -------------------------------------------------


def test_read_only_output_folder_is_named(raw_nlvr2, tmp_path):
    out = read_only(tmp_path / "out")
    proc = vladapter("prepare", "--dataset", "nlvr2", "--raw", str(raw_nlvr2), "--out", str(out),
                     "--no-media-check", prefix=NO_ROOT_OVERRIDE)
    assert_clean_error(proc.returncode, proc.stderr, str(out), "permission denied", "writable")


def test_evaluate_refuses_a_read_only_folder_before_generating(trained, world, tmp_path):
    folder = read_only(tmp_path / "ro")
    proc = vladapter("evaluate", "--model", str(trained), "--features", str(world["features"]),
                     "--out", str(tmp_path / "m.json"), "--predictions", str(folder / "predictions"),
                     "--device", "cpu", prefix=NO_ROOT_OVERRIDE)
    assert_clean_error(proc.returncode, proc.stderr, str(folder), "permission denied")
    assert "evaluate vqa" not in proc.stderr  # stopped before the first generation batch
    assert not (tmp_path / "m.json").exists()


def _file_size_limit(limit: int):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_while_writing_prepared_records(raw_nlvr2, tmp_path):
    out = tmp_path / "out"
    proc = vladapter("prepare", "--dataset", "nlvr2", "--raw", str(raw_nlvr2), "--out", str(out), "--no-media-check",
                     preexec_fn=_file_size_limit(16 << 10))  # the prepared train split is larger
    assert_clean_error(proc.returncode, proc.stderr, str(out / "nlvr2"), "file too large", "rerun")
    assert not [p for p in out.rglob("*") if p.is_file()]  # nothing half written, no temporary file left


def test_full_disk_during_extraction_keeps_completed_ids(clip_dir, tmp_path, capsys):
    """The file-size limit (ulimit -f) makes the disk full for this process, no root needed:
    the kernel refuses writes past it as it does on a full disk."""
    folder = images(tmp_path / "images", 6)
    out = tmp_path / "features" / "src.tinyclip.h5"
    args = ("extract-features", "--source", "src", "--input", str(folder), "--backbone", str(clip_dir),
            "--output", str(out), "--workers", "0", "--batch-size", "1", "--flush-every", "1", "--device", "cpu")
    proc = vladapter(*args, preexec_fn=_file_size_limit(12 << 10))  # each 1-id shard fits, the whole file not
    assert_clean_error(proc.returncode, proc.stderr, str(out), "space", "completed ids are kept")
    assert not out.exists()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    parts = out.parent / f".{out.name}.parts"
    assert len(list(parts.glob("shard-*.h5"))) == 6
    assert main(list(args)) == 0  # the rerun, with space again
    assert "0 extracted, 6 kept from before" in capsys.readouterr().out
    with h5py.File(out) as f:
        assert sorted(k for k in f if k != "pooled") == [f"img{i}" for i in range(6)]


# --- 5. non-finite features ------------------------------------------------------------------


def test_nan_features_at_evaluation_name_the_id(world, trained, tmp_path, capsys):
    broken = copy_features(world, tmp_path)
    with h5py.File(broken / "coco.testclip.h5", "a") as f:
        f["img-test-3"][0, 0] = np.nan
    rc, err = evaluate(trained, broken, tmp_path, capsys)
    assert_clean_error(rc, err, "img-test-3", "NaN", str(broken / "coco.testclip.h5"))
    assert not (tmp_path / "m.json").exists()


def test_nan_features_at_extraction_name_the_image(clip_dir, tmp_path, capsys):
    import torch
    from transformers import CLIPModel

    broken = tmp_path / "nanclip"
    model = CLIPModel.from_pretrained(clip_dir)
    with torch.no_grad():
        model.visual_projection.weight[0, 0] = float("nan")
    model.save_pretrained(broken)
    out = tmp_path / "x.h5"
    rc = main(["extract-features", "--source", "src", "--input", str(images(tmp_path / "images", 2)),
               "--backbone", str(broken), "--output", str(out), "--workers", "0", "--device", "cpu"])
    assert_clean_error(rc, capsys.readouterr().err, "img0.png", "NaN", "--on-error skip")
    assert not out.exists()


# --- 6. config values reach shell commands quoted --------------------------------------------


@pytest.mark.slow
def test_config_value_cannot_inject_shell_commands(tmp_path):
    """A backbone path with a command substitution and a space: the job gets it as one
    literal argument (it fails: no such backbone), and nothing runs."""
    work = copy_workflow(tmp_path)
    (work / "data" / "raw" / "coco" / "images").mkdir(parents=True)
    (work / "data" / "raw" / "toy_stats.json").write_text("{}")
    images(work / "data" / "raw" / "coco" / "images", 1)
    config = yaml.safe_load((work / "config" / "smoke.yaml").read_text())  # the smallest DAG
    backbone = "models/my clip$(touch PWNED)"
    (work / backbone).mkdir(parents=True)  # present (the workflow checks that), but no CLIP in it
    config["backbone"]["image"] = backbone
    (work / "evil.yaml").write_text(yaml.safe_dump(config))
    target = f"data/features/coco.{backbone.split('/')[-1]}.h5"
    proc = snakemake(work, "--configfile", "evil.yaml", "--cores", "1", target, check=False)
    assert proc.returncode != 0
    assert not (work / "PWNED").exists()
    log = (work / "logs" / "extract_features" / f"coco.{backbone.split('/')[-1]}.log").read_text()
    # one argument, verbatim: the command's own error names the folder, whole
    assert backbone in log and "error" in log and TRACEBACK not in log


# --- 7. config messages that help ------------------------------------------------------------


def dry_run(work: Path, *args: str) -> tuple[int, str]:
    """Snakemake's exit status and everything it printed, planning the whole toy workflow."""
    proc = snakemake(work, "-n", *args, check=False)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture
def work(tmp_path) -> Path:
    return copy_workflow(tmp_path)


def test_bad_key_in_an_lr_table_is_named(work):
    rc, out = dry_run(work, "--config", "train={lr: {single_adaptr: 0.1, default: 0.001}}")
    assert rc != 0
    assert "train.lr: unknown key 'single_adaptr'" in out and "single_adapter" in out
    assert "not valid under any of the given schemas" not in out and TRACEBACK not in out


def test_two_lms_with_one_folder_name_are_refused_before_any_job(work):
    # /ckpt/a/t5-base and t5-base would train into one models/t5-base/ and overwrite each other
    rc, out = dry_run(work, "--config", "lms=[tiny-t5, models/other/tiny-t5]")
    assert rc != 0
    assert "lms: tiny-t5 and models/other/tiny-t5 would share the folders models/tiny-t5/" in out
    assert TRACEBACK not in out


def test_unknown_top_level_key_is_named_without_the_schema(work):
    (work / "extra.yaml").write_text((work / "config" / "config.yaml").read_text() + "\nbogus_key: 1\n")
    rc, out = dry_run(work, "--configfile", "extra.yaml")
    assert rc != 0
    assert "unknown key 'bogus_key'" in out and "extra.yaml" in out  # the file is named
    assert len(out.splitlines()) < 15 and "$defs" not in out and TRACEBACK not in out


def test_yaml_syntax_error_names_file_and_line(work):
    config = work / "config" / "config.yaml"
    text = config.read_text()
    assert "\n  seed: 0\n" in text
    config.write_text(text.replace("\n  seed: 0\n", "\n  seed: 0: 1\n", 1))
    line = text[: text.index("\n  seed: 0\n")].count("\n") + 2
    rc, out = dry_run(work)
    assert rc != 0
    assert f"config/config.yaml, line {line}, column" in out and TRACEBACK not in out


def test_documented_nested_config_override_is_accepted(work):
    rc, out = dry_run(work, "--config", "world={kind: toy, seed: 1}", "train={lr: {default: 1e-3}}")
    assert rc == 0, out[-3000:]


def test_a_task_batch_smaller_than_the_gpus_is_refused_before_any_job(work):
    """16 GPUs: NLVR2's batch (20/60 of train.batch_size 32) has 11 rows, and 5 processes would
    get none (pad([]) raised there, the others waited in NCCL forever)."""
    config = yaml.safe_load((work / "config" / "config.yaml").read_text())
    config["resources"]["train"]["gpu"] = 16
    (work / "gpus.yaml").write_text(yaml.safe_dump(config))
    rc, out = dry_run(work, "--configfile", "gpus.yaml")
    assert rc != 0, out[-2000:]
    assert "train.batch_size: 32 gives batches of fewer rows than the 16 processes" in out
    assert "nlvr 11" in out and "raise train.batch_size to at least 47" in out and TRACEBACK not in out


def test_wrong_value_type_is_refused_before_any_job(work):
    """(already worked) a bad value stops the workflow before its first job."""
    rc, out = dry_run(work, "--config", "world={kind: toy, seed: -1}")
    assert rc != 0 and "world.seed: -1 is less than the minimum of 0" in out
    assert not (work / "logs" / "toyworld.log").exists() and TRACEBACK not in out


# --- 8. file modes follow the umask ----------------------------------------------------------


@pytest.mark.parametrize("umask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)])
def test_written_files_and_folders_follow_the_umask(tmp_path, umask, file_mode, dir_mode):
    from vladapter.features.h5writer import ResumableH5Writer
    from vladapter.utils.io import atomic_dir, write_json

    old = os.umask(umask)
    try:
        write_json(tmp_path / "metrics.json", {"a": 1})
        with atomic_dir(tmp_path / "run") as tmp:
            (tmp / "x").write_text("x")
        writer = ResumableH5Writer(tmp_path / "f.h5", {"kind": "grid"})
        writer.add("a", np.zeros(3))
        writer.finish()
    finally:
        os.umask(old)
    for name in ("metrics.json", "f.h5"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == file_mode, name
    assert stat.S_IMODE((tmp_path / "run").stat().st_mode) == dir_mode


# --- 9. the command line ---------------------------------------------------------------------


def test_no_arguments_is_a_usage_error():
    proc = vladapter()
    assert proc.returncode == 2 and "usage: vladapter" in proc.stderr


def test_python_m_vladapter_and_version():
    from vladapter import __version__

    proc = subprocess.run([sys.executable, "-m", "vladapter", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"vladapter {__version__}", proc.stderr


def test_every_option_of_every_command_has_a_help_text():
    from vladapter.cli import build_parser

    for command in COMMANDS:
        for action in build_parser(command)._actions:
            text = action.help or ""
            assert len(text) > 10 and text != action.dest, f"{command} {action.option_strings}: {text!r}"
            assert text.count("(") == text.count(")"), f"{command} {action.option_strings}: cut short: {text!r}"


def test_every_command_help_answers_without_importing_torch():
    # what makes --help fast (0.25-1.7 s against 10-15 s before) is that parsing never imports
    # the heavy libraries; the time itself is not asserted (it depends on the machine's load)
    code = ("import sys\nfrom vladapter.cli import COMMANDS, build_parser\n"
            "for c in COMMANDS: build_parser(c)\n"
            "print(sorted(m for m in ('torch', 'transformers', 'sklearn') if m in sys.modules))")
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert imported.stdout.strip() == "[]", imported.stderr
    for command in COMMANDS:
        proc = vladapter(command, "--help")
        assert proc.returncode == 0 and f"vladapter {command}" in proc.stdout


# --- 10. third round (issue 28): what made a user lose time or results ------------------------


def test_missing_video_stop_writes_the_report_it_names(tmp_path):
    from vladapter.data.toyworld import generate

    generate(tmp_path / "raw", seed=0, scale="smoke", workers=1, stats=False)
    videos = sorted((tmp_path / "raw" / "how2qa" / "videos").glob("*.mp4"))
    videos[0].write_bytes(b"")  # a 0-byte clip: an interrupted download
    out = tmp_path / "out"
    proc = vladapter("prepare", "--dataset", "how2qa", "--raw", str(tmp_path / "raw"), "--out", str(out))
    report = out / "how2qa" / "videos_report.json"
    assert_clean_error(proc.returncode, proc.stderr, f"(listed in {report})", "1 unreadable")
    assert list(json.loads(report.read_text())["unreadable"]) == [videos[0].stem]  # was never written
    assert not (out / "how2qa" / "train.jsonl").exists()


def _two_backbones(tmp_path) -> dict:
    """A world of two tasks whose sources were extracted with backbones of different widths:
    coco.testclip.h5 (16-d) beside nlvr2.halfclip.h5 (8-d)."""
    w = vl_world.build(tmp_path / "world", n_train=8, n_test=4, tasks=("vqa", "nlvr"))
    wide = w["features"] / "nlvr2.testclip.h5"
    narrow_copy(wide, w["features"] / "nlvr2.halfclip.h5", 8, backbone="halfclip")
    wide.unlink()
    return w


def narrow_copy(src: Path, dst: Path, width: int, **attrs) -> None:
    """A copy of the feature file ``src`` whose features keep only their first ``width`` values."""
    with h5py.File(src) as f, h5py.File(dst, "w") as out:
        out.attrs.update({**f.attrs, "dim": width, **attrs})
        names = []
        f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        for name in names:
            out.create_dataset(name, data=f[name][()][..., :width])
            out[name].attrs.update(f[name].attrs)


def test_feature_files_of_different_widths_are_refused_before_training(tmp_path, capsys):
    w = _two_backbones(tmp_path)
    run = tmp_path / "models" / "run"
    rc = main(["train", "--prepared", str(w["prepared"]), "--features", str(w["features"]), "--tasks", "vqa", "nlvr",
               "--tokenizer", str(w["tokenizer"]), "--steps", "2", "--batch-size", "4", "--out", str(run)])
    # was: RuntimeError: mat1 and mat2 shapes cannot be multiplied, naming no file
    assert_clean_error(rc, capsys.readouterr().err, f"{w['features'] / 'coco.testclip.h5'}: 16",
                       f"{w['features'] / 'nlvr2.halfclip.h5'}: 8", "same backbone")
    assert not run.exists() and not list(run.parent.glob(".run*"))  # refused: no work folder, no lock left


def test_evaluate_on_features_of_another_width_names_the_sizes(world, trained, tmp_path, capsys):
    narrow = tmp_path / "features"
    narrow.mkdir()
    narrow_copy(world["features"] / "coco.testclip.h5", narrow / "coco.testclip.h5", 8)
    rc, err = evaluate(trained, narrow, tmp_path, capsys)
    assert_clean_error(rc, err, "trained on 16-d features, these are 8-d", str(narrow / "coco.testclip.h5"))
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("flags", [[], ["--resume"]], ids=["train", "resume"])
def test_train_refuses_to_replace_a_finished_run_of_other_settings(world, trained, tmp_path, capsys, flags):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    args = ["train", "--method", "single_lora", "--tasks", "vqa", "--steps", "2", "--batch-size", "4",
            "--prepared", str(world["prepared"]), "--features", str(world["features"]),
            "--tokenizer", str(world["tokenizer"]), "--checkpoint-every", "0", "--out", str(run)]
    # was: replaced without a word (or, with --resume, "already finished", exit 0 and the old run kept)
    assert_clean_error(main(args + flags), capsys.readouterr().err, str(run), "finished run of other settings",
                       "method: 'single_adapter' -> 'single_lora'", "--replace")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert main(args + flags + ["--replace"]) == 0  # told to: the new settings train in its place
    assert json.loads((run / "train.json").read_text())["config"]["method"] == "single_lora"


def test_frame_files_not_zero_padded_are_read_in_frame_order(tmp_path):
    from PIL import Image

    from vladapter.features.frames import read_frame_folder, segment_indices

    folders = {"plain": tmp_path / "plain", "padded": tmp_path / "padded"}
    for i in range(1, 200):  # 1.jpg ... 199.jpg at 3 fps, frame k a grey of level 50 + k
        grey = Image.new("RGB", (16, 16), (50 + i,) * 3)
        for kind, folder in folders.items():
            folder.mkdir(exist_ok=True)
            grey.save(folder / (f"{i}.jpg" if kind == "plain" else f"{i:05d}.jpg"), quality=100)
    span = [[48.6, 60.0]]
    frames, times = read_frame_folder(folders["plain"], 3, "rate", 1.5, 16, segments=span)
    wanted = segment_indices(199, 3, "rate", 1.5, span)
    # frame file k+1 is frame index k (was: 50, 54, 6, 62, ... in the names' string order)
    assert (np.round(frames.reshape(len(frames), -1).mean(1)) - 51).astype(int).tolist() == wanted.tolist()
    assert np.array_equal(frames, read_frame_folder(folders["padded"], 3, "rate", 1.5, 16, segments=span)[0])


def test_frame_folder_with_an_unnumbered_file_is_refused(tmp_path):
    from PIL import Image

    clip = tmp_path / "frames" / "s01e01_clip"
    clip.mkdir(parents=True)
    for name in ("00001.jpg", "00002.jpg", "cover.jpg"):
        Image.new("RGB", (16, 16)).save(clip / name)
    proc = vladapter("sample-frames", "--dataset", "tvqa", "--videos", str(tmp_path / "frames"), "--frames-fps", "3",
                     "--output", str(tmp_path / "f.h5"), "--workers", "1", "--size", "16")
    assert_clean_error(proc.returncode, proc.stderr, "cover.jpg", str(clip), "frame number")
    assert not (tmp_path / "f.h5").exists()


@pytest.mark.parametrize("case", ["missing-folder", "offline-not-cached"])
def test_an_lm_that_cannot_be_loaded_fails_the_dry_run(work, tmp_path, case):
    """(was: planned 72 jobs; the first pre-training job failed hours later)"""
    env = snakemake_env()
    if case == "missing-folder":
        config, named = ["--config", "lms=[/nope/t5-base]"], "lms: /nope/t5-base: folder /nope/t5-base not found"
    else:  # offline, with an HF cache that does not hold the paper's LMs
        config, named = [], "lms: facebook/bart-base: checkpoint 'facebook/bart-base' not found offline"
        env["HF_HOME"] = str(tmp_path / "empty-hf-home")
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "profiles/default", "-n",
                           "--configfile", "config/paper-image.yaml", *config], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and named in out and TRACEBACK not in out
    assert not (work / "data").exists() and not (work / "logs").exists()


def test_crashed_training_leaves_no_lock_behind(world, tmp_path, capsys):
    from vladapter.train.workdir import LOCK_FILE, work_dir

    run = tmp_path / "run"
    rc = main(["train", "--prepared", str(world["prepared"]), "--features", str(world["features"]), "--tasks", "vqa",
               "--tokenizer", str(world["tokenizer"]), "--steps", "6", "--batch-size", "4", "--lr", "1e15",
               "--checkpoint-every", "2", "--out", str(run)])
    assert_clean_error(rc, capsys.readouterr().err, "non-finite loss at step")
    assert not (work_dir(run) / LOCK_FILE).exists()  # was left behind
    assert not run.exists()


def test_a_users_folder_without_a_file_says_where_the_file_comes_from(raw_nlvr2, tmp_path):
    mine = tmp_path / "my-nlvr2"
    shutil.copytree(raw_nlvr2 / "nlvr2", mine)
    (mine / "train.json").unlink()
    (mine / "images").mkdir()
    proc = vladapter("prepare", "--dataset", "nlvr2", "--path", f"nlvr2={mine}", "--out", str(tmp_path / "out"),
                     "--no-media-check")
    assert_clean_error(proc.returncode, proc.stderr, "missing NLVR2 train statements", str(mine / "train.json"),
                       "lil-lab/nlvr/", "nlvr2/data/train.json", "data.paths.nlvr2")
    assert "vladapter download" not in proc.stderr  # (was suggested; it refuses to write into the user's folder)


def test_an_error_in_a_config_flag_value_is_not_blamed_on_the_config_file(work):
    rc, out = dry_run(work, "--config", "features={n_image_tokens: 0}")
    assert rc != 0 and TRACEBACK not in out
    assert "invalid config (--config):" in out  # was: invalid config (config/config.yaml)
    assert "features.n_image_tokens: 0 is less than the minimum of 1 (given with --config)" in out
    # a mistake in a file is still the file's
    (work / "mine.yaml").write_text((work / "config" / "config.yaml").read_text() + "\nbogus_key: 1\n")
    rc, out = dry_run(work, "--configfile", "mine.yaml", "--config", "world={kind: toy, seed: 1}")
    message = out[out.index("invalid config ("):out.index("fix:")]
    assert rc != 0 and f"invalid config ({work / 'mine.yaml'}):" in message and "--config" not in message


# --- inputs that already got a clear error (kept working) ------------------------------------


def test_malformed_raw_line_names_file_and_line(raw_nlvr2, tmp_path):
    replace_in_line(raw_nlvr2 / "nlvr2" / "dev.json", 2, b'{"validation"', b'{validation')
    proc = vladapter("prepare", "--dataset", "nlvr2", "--raw", str(raw_nlvr2), "--out", str(tmp_path / "out"),
                     "--no-media-check")
    assert_clean_error(proc.returncode, proc.stderr, "dev.json", "line 2", "invalid JSON")


def test_corrupt_image_names_the_file(clip_dir, tmp_path, capsys):
    folder = images(tmp_path / "images", 2)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    rc = main(["extract-features", "--source", "src", "--input", str(folder), "--backbone", str(clip_dir),
               "--output", str(tmp_path / "x.h5"), "--workers", "0", "--device", "cpu"])
    assert_clean_error(rc, capsys.readouterr().err, "broken.jpg", "--on-error skip")
    assert not (tmp_path / "x.h5").exists()


def test_corrupt_video_names_the_file(tmp_path, capsys):
    from vladapter.features.synthetic import write_video

    videos = tmp_path / "videos"
    data = write_video(videos / "good.mp4", n_frames=10).read_bytes()
    (videos / "broken.mp4").write_bytes(data[: len(data) // 3])
    rc = main(["sample-frames", "--dataset", "toy", "--videos", str(videos), "--output", str(tmp_path / "f.h5"),
               "--workers", "1", "--size", "16"])
    assert_clean_error(rc, capsys.readouterr().err, "broken.mp4", "--on-error skip")
    assert not (tmp_path / "f.h5").exists()


def test_corrupt_released_feature_file_names_the_file(tmp_path, capsys):
    import numpy as np

    folder, prepared = tmp_path / "clip-vit", tmp_path / "prepared" / "tvqa"
    folder.mkdir()
    np.savez(folder / "good.npz", features=np.zeros((3, 512), np.float16))
    (folder / "broken.npz").write_bytes((folder / "good.npz").read_bytes()[:100])
    prepared.mkdir(parents=True)
    for split in ("train", "val", "test"):
        (prepared / f"{split}.jsonl").write_text(json.dumps({"video": "broken" if split == "val" else "good"}) + "\n")
    rc = main(["import-features", "--source", "tvqa", "--folder", str(folder), "--records", str(prepared),
               "--output", str(tmp_path / "f.h5")])
    assert_clean_error(rc, capsys.readouterr().err, "broken.npz", "download the file again")
    assert not (tmp_path / "f.h5").exists()


def test_value_submission_of_records_without_value_ids_is_refused(tmp_path, capsys):
    # How2QA read from HERO's CSV: row-numbered uids, not VALUE's qids: no leaderboard file
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "how2qa.json").write_text(json.dumps({"val-1": 0}))
    (tmp_path / "prepared" / "how2qa").mkdir(parents=True)
    (tmp_path / "prepared" / "how2qa" / "val.jsonl").write_text(json.dumps({"uid": "val-1", "meta": {}}) + "\n")
    rc = main(["value-submission", "--predictions", str(tmp_path / "run"), "--prepared", str(tmp_path / "prepared"),
               "--out", str(tmp_path / "out")])
    assert_clean_error(rc, capsys.readouterr().err, "val-1", "VALUE's release")
    assert not (tmp_path / "out").exists()


def test_nan_loss_stops_training_with_the_step(world, tmp_path, capsys):
    rc = main(["train", "--prepared", str(world["prepared"]), "--features", str(world["features"]), "--tasks", "vqa",
               "--tokenizer", str(world["tokenizer"]), "--steps", "6", "--batch-size", "4", "--lr", "1e15",
               "--out", str(tmp_path / "run")])
    assert_clean_error(rc, capsys.readouterr().err, "non-finite loss at step")
    assert not (tmp_path / "run" / "adapter.safetensors").exists()


def test_unsafe_archive_member_is_kept_out(tmp_path):
    from vladapter.data.download import extract

    archive = tmp_path / "a.tar"
    (tmp_path / "ok.txt").write_text("ok")
    with tarfile.open(archive, "w") as t:
        t.add(tmp_path / "ok.txt", arcname="data/ok.txt")
        t.add(tmp_path / "ok.txt", arcname="../escaped.txt")
    written = extract(archive, {"*": "x"}, tmp_path / "out" / "root")
    assert written == [tmp_path / "out" / "root" / "x" / "data" / "ok.txt"]
    assert not list((tmp_path / "out").rglob("escaped.txt")) and not (tmp_path / "out" / "escaped.txt").exists()


# --- the count ---------------------------------------------------------------------------------


def bad_inputs() -> int:
    """The bad inputs this module tries: one per test, one per parameter set."""
    n = 0
    for name, fn in globals().items():
        if name.startswith("test_") and name != "test_the_suite_counts_its_bad_inputs":
            cases = 1
            for mark in getattr(fn, "pytestmark", []):
                if mark.name == "parametrize":
                    cases *= len(mark.args[1])
            n += cases
    return n


def test_the_suite_counts_its_bad_inputs():
    text = (REPO / "docs" / "DEVELOPING.md").read_text()
    stated = re.search(r"bad-input suite .* tries (\d+) bad inputs", text.replace("\n", " "))
    assert stated, "docs/DEVELOPING.md must state how many bad inputs tests/test_badinput.py tries"
    assert int(stated.group(1)) == bad_inputs()
