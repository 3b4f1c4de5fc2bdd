"""The Snakemake workflow: lint, config validation, the paper DAGs, the dvc.yaml sync, and
the smoke workflow end to end (slow): results, a no-op second run, targeted reruns."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from vladapter import experiments
from workflow_helpers import (REPO, copy_workflow, planned_commands, planned_jobs, snakemake, snakemake_env,
                              value_release_folders)

SMOKE = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())


def test_lint_is_clean():
    proc = snakemake(REPO, "--lint")
    assert "Congratulations, your workflow is in a good condition" in proc.stdout + proc.stderr


@pytest.mark.parametrize("edit, named", [
    (lambda c: c["train"].update(learning_rate=0.1), "learning_rate"),          # unknown key
    (lambda c: c["world"].update(kind="imaginary"), "imaginary"),               # bad enum value
    (lambda c: c["methods"]["image"].append("single_adaptor"), "single_adaptor"),  # unknown preset
    (lambda c: c["train"]["lr"].pop("default"), "default"),                     # missing required
])
def test_bad_config_is_refused_before_any_job(tmp_path, edit, named):
    work = copy_workflow(tmp_path)
    config = yaml.safe_load((work / "config" / "smoke.yaml").read_text())
    edit(config)
    (work / "bad.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake(work, "--configfile", "bad.yaml", check=False, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "invalid config (" in out and "bad.yaml" in out and named in out
    # nothing ran, nothing was written
    assert not (work / "data").exists() and not (work / "logs").exists()


@pytest.mark.parametrize("name, lms, methods, modality", [
    ("paper-image", 2, 20, "image"), ("paper-video", 2, 15, "video")])
def test_paper_configs_build_the_full_dag_offline(tmp_path, name, lms, methods, modality):
    work = copy_workflow(tmp_path)
    config = yaml.safe_load((work / "config" / f"{name}.yaml").read_text())
    value_release_folders(work, config)  # paper-video reads VALUE's release where a user downloaded it
    jobs = planned_jobs(work, "--configfile", f"config/{name}.yaml")
    datasets = config["datasets"][modality]
    pretrain = config["pretrain"]["enabled"]
    runs = methods * (2 if pretrain else 1)  # with pre-training, every method also as -nopt
    assert jobs["train"] == jobs["evaluate"] == lms * runs
    # the pre-training split is prepared from these downloads; the folders a config names are read
    paths = (config.get("data") or {}).get("paths") or {}
    assert jobs.get("download", 0) == len([d for d in datasets if d not in paths])
    assert jobs["prepare"] == len(datasets) + pretrain
    # one feature file per source (TVC's records use TVQA's clips in paper-video): extracted, or
    # converted from VALUE's released features; the pre-training split trains on its downloads'
    # features: no extraction of its own
    sources = {experiments.feature_source(config, d) for d in datasets}
    released = {s for s in sources if experiments.released_features(config, s)}
    assert released == ({"tvqa", "how2qa", "yc2c"} if modality == "video" else set())
    assert jobs.get("extract_features", 0) == len(sources - released)
    assert jobs.get("import_features", 0) == len(released) and "sample_frames" not in jobs
    assert jobs.get("pretrain", 0) == (lms if pretrain else 0)
    assert "toyworld" not in jobs and "train_toy_clip" not in jobs and "build_tokenizer" not in jobs
    assert jobs["report"] == 1
    data = work / "data"
    assert not data.exists() or not any(p.is_file() for p in data.rglob("*"))  # a plan only: nothing downloaded


def _settings_by_out(commands: list[str], command: str) -> dict[str, dict]:
    """--out -> the --settings JSON of the planned ``vladapter <command>`` jobs."""
    found = {}
    for line in commands:
        args = shlex.split(line.split(" > ")[0])
        if args[:1] == ["exec"]:  # training jobs exec their process (docs/workflow.md: time limits)
            args = args[1:]
        if args[:2] == ["vladapter", command]:
            found[args[args.index("--out") + 1]] = json.loads(args[args.index("--settings") + 1])
    return found


def test_default_config_plans_the_toy_matrix_with_the_pretraining_comparison(tmp_path):
    work = copy_workflow(tmp_path)
    commands = planned_commands(work)
    train = {out.split("/")[-1]: s for out, s in _settings_by_out(commands, "train").items()}
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    expected = {r.name for r in experiments.runs(config)}
    assert set(train) == expected
    assert len(expected) == len(config["methods"]["image"]) + len(config["methods"]["video"]) + 2
    # each seed of a run starts from the backbone pre-trained with that seed (pretrain.per_seed)
    assert (train["image-single_adapter"]["init"], train["image-single_adapter"]["init_per_seed"]) == (
        "models/pretrain/tiny-t5", True)
    assert train["image-single_adapter-nopt"]["init"] is None
    assert train["image-single_adapter-nopt"]["init_per_seed"] is False
    assert train["video-single_lora"]["tasks"] == ["tvqa", "how2qa", "tvc", "yc2c"]
    # every seed of a run in one training job and one evaluation job
    assert all(s["seeds"] == [0, 1, 2] for s in train.values())
    assert any(c.startswith("vladapter evaluate ") and "--model models/tiny-t5/image-single_lora " in c
               and "--seeds 0 1 2 " in c for c in commands)
    # video runs start from the video-pre-trained backbone, which continues the image one
    assert train["video-single_adapter"]["init"] == "models/pretrain-video/tiny-t5"
    pretrain = _settings_by_out(commands, "pretrain")
    # every stage once per seed, each continuing the stage before it of the same seed
    assert sorted(pretrain) == sorted(f"models/pretrain{stage}/tiny-t5/seed-{seed}"
                                      for stage in ("-matching", "", "-video") for seed in (0, 1, 2))
    for seed in (0, 1, 2):
        video_pretrain = pretrain[f"models/pretrain-video/tiny-t5/seed-{seed}"]
        assert (video_pretrain["tasks"], video_pretrain["init"], video_pretrain["seed"]) == (
            ["tvc", "yc2c"], f"models/pretrain/tiny-t5/seed-{seed}", seed)
        # pre-training starts from the image-text matching stage
        assert pretrain[f"models/pretrain/tiny-t5/seed-{seed}"]["init"] == f"models/pretrain-matching/tiny-t5/seed-{seed}"
        assert pretrain[f"models/pretrain-matching/tiny-t5/seed-{seed}"]["seed"] == seed
    assert any(c.startswith("exec vladapter pretrain --matching --resume ") and "models/pretrain-matching/tiny-t5/seed-0" in c
               for c in commands)


def test_runs_take_their_seeds_from_train_seeds_with_the_video_override():
    config = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    config["train"].update(seeds=[3, 1], seed=7)
    config["train"]["video"]["seeds"] = [5]
    assert {r.name: r.seeds for r in experiments.runs(config)} == {
        "image-full_finetuning": (3, 1), "image-single_adapter": (3, 1), "video-single_adapter": (5,)}
    del config["train"]["seeds"], config["train"]["video"]["seeds"]  # no list: the one train.seed
    assert {r.seeds for r in experiments.runs(config)} == {(7,)}
    run = experiments.runs(config)[0]
    assert run.seed_dir(7) == "models/tiny-t5/image-full_finetuning/seed-7"
    settings = experiments.job_settings(config, "train", lm="tiny-t5", modality="image", method=run.method,
                                        tasks=["vqa"], tokenizer="models/tokenizer")
    assert settings["seeds"] == [7]  # what the job receives, and what retrains the run when it changes
    assert "seeds" not in experiments.job_settings(config, "pretrain", lm="tiny-t5", tasks=["pretrain"])


def test_full_toy_config_is_the_default_with_every_preset_and_lsts_steps():
    from vladapter.petl.registry import PRESETS

    default = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    full = yaml.safe_load((REPO / "config" / "toy-full.yaml").read_text())
    assert full["methods"]["image"] == list(PRESETS)
    # one more difference: steps and lr entries for methods the default does not run (LST's
    # toy recipe), so a run of both files trains every method they share alike
    not_run = set(PRESETS) - set(default["methods"]["image"])
    steps = full["train"].pop("steps")
    assert steps["default"] == default["train"].pop("steps") and set(steps) - {"default"} <= not_run
    lr = full["train"]["lr"]
    assert set(lr) - set(default["train"]["lr"]) <= not_run
    full["train"]["lr"] = {k: v for k, v in lr.items() if k in default["train"]["lr"]}
    assert {**full, "methods": None} == {**default, "methods": None}
    assert set(default["methods"]["image"]) < set(PRESETS) and default["train"]["seeds"] == [0, 1, 2]


def test_dvc_yaml_is_generated_from_the_workflow():
    proc = subprocess.run([sys.executable, "workflow/scripts/dvc_yaml.py", "--check"], cwd=REPO,
                          env=snakemake_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert list(stages) == ["data", "features", "models", "metrics", "report"]
    # every run's checkpoint is a cached out of `models`, its metrics uncached metrics
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    outs = {k: v for o in stages["models"]["outs"] for k, v in o.items()}
    metrics = {k: v for o in stages["metrics"]["metrics"] for k, v in o.items()}
    for run in experiments.runs(config):
        assert outs[run.model_dir] == {"cache": True, "persist": True}
        assert metrics[run.metrics_path] == {"cache": False, "persist": True}


# --- the smoke workflow, end to end (run once per session: conftest's smoke_workflow) ----

@pytest.mark.slow
def test_smoke_workflow_produces_table_plots_and_metrics(smoke_workflow):
    work, log = smoke_workflow
    assert "results/table.md" in log  # the onsuccess message says where the results are
    runs = experiments.runs(SMOKE)
    for run in runs:
        metrics = json.loads((work / run.metrics_path).read_text())
        tasks = experiments.tasks(SMOKE, run.modality)
        assert set(metrics["scores"]) == set(tasks)
        assert set(metrics["seeds"]) == {str(s) for s in SMOKE["train"]["seeds"]}  # each seed's, one job
        assert 0 < metrics["params"]["percent"] <= 100
    rows = list(csv.DictReader(io.StringIO((work / "results" / "scores.csv").read_text())))
    assert len(rows) == len(runs) + 2  # + a majority row per modality
    table = (work / "results" / "table.md").read_text()
    assert table.count("majority answer (baseline)") == 2 and "| single adapter |" in table
    assert " ± " in table and "pairs of runs with several seeds" in table
    for png in ("params_vs_score.png", "curves.png"):
        assert (work / "results" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # every job logged and benchmarked
    assert (work / "logs" / "benchmarks" / "train" / "tiny-t5" / "image-single_adapter.tsv").exists()
    # the video run started from the video pre-training stage (on tvqa: smoke has no captions)
    # each seed from its own pre-training (pretrain.per_seed): the stages of seed n, seeded n
    for seed in SMOKE["train"]["seeds"]:
        video = json.loads((work / "models" / "tiny-t5" / "video-single_adapter" / f"seed-{seed}" / "train.json").read_text())
        assert video["config"]["init"] == f"models/pretrain-video/tiny-t5/seed-{seed}"
        image = json.loads((work / "models" / "pretrain" / "tiny-t5" / f"seed-{seed}" / "pretrain.json").read_text())
        assert (image["config"]["init"], image["config"]["seed"]) == (f"models/pretrain-matching/tiny-t5/seed-{seed}", seed)
        matching = json.loads((work / "models" / "pretrain-matching" / "tiny-t5" / f"seed-{seed}" / "pretrain.json").read_text())
        assert list(matching["objectives"]) == ["itm"] and matching["steps"] == SMOKE["pretrain"]["matching"]["steps"]
        assert json.loads((work / "models" / "pretrain-video" / "tiny-t5" / f"seed-{seed}" / "pretrain.json").read_text())[
            "objectives"] == {"tvqa": len((work / "data" / "prepared" / "tvqa" / "train.jsonl").read_text().splitlines())}
    backbones = {(work / "models" / "pretrain" / "tiny-t5" / f"seed-{seed}" / "model.safetensors").read_bytes()
                 for seed in SMOKE["train"]["seeds"]}
    assert len(backbones) == len(SMOKE["train"]["seeds"])  # different pre-trainings, not copies


@pytest.mark.slow
def test_second_run_has_nothing_to_do(smoke_workflow):
    work, _ = smoke_workflow
    assert planned_jobs(work) == {}
    assert planned_jobs(work, "--configfile", str(REPO / "config" / "smoke.yaml")) == {}


@pytest.mark.slow
def test_changing_one_learning_rate_reruns_only_that_run_and_the_report(smoke_workflow, tmp_path):
    work, _ = smoke_workflow
    config = yaml.safe_load((work / "config" / "smoke.yaml").read_text())
    config["train"]["lr"]["full_finetuning"] = 5e-4
    lr = tmp_path / "lr.yaml"
    lr.write_text(yaml.safe_dump(config))  # keys sorted: order must not matter
    jobs = planned_jobs(work, "--configfile", str(lr), "--rerun-triggers", "params")
    assert jobs == {"train": 1, "evaluate": 1, "report": 1, "all": 1}
    plan = snakemake(work, "-n", "--configfile", str(lr), "--rerun-triggers", "params").stdout
    assert re.findall(r"output: (models/\S+)", plan) == ["models/tiny-t5/image-full_finetuning"]


@pytest.mark.slow
def test_html_report_includes_results_with_captions(smoke_workflow, tmp_path):
    work, _ = smoke_workflow
    snakemake(work, "--report", str(tmp_path / "report.html"), timeout=300)
    html = (tmp_path / "report.html").read_text(errors="replace")
    for name in ("table.md", "params_vs_score.png", "curves.png"):
        assert name in html
    assert "Average score against the share of trained parameters" in html


def test_multi_gpu_training_runs_under_torchrun(tmp_path):
    work = copy_workflow(tmp_path)
    config = yaml.safe_load((work / "config" / "paper-video.yaml").read_text())
    value_release_folders(work, config)
    config["resources"]["train"]["gpu"] = 4
    (work / "gpus.yaml").write_text(yaml.safe_dump(config))
    out = snakemake(work, "-n", "-p", "--configfile", "gpus.yaml").stdout
    train = [line for line in out.splitlines() if "vladapter train " in line]
    assert train and all("exec python -m vladapter.train.launch torchrun --standalone --nproc_per_node=4 --no-python "
                         "vladapter train" in t
                         for t in train)
    assert "gpu=4" in out  # the resource the SLURM executor turns into --gpus
    assert re.search(r"vladapter evaluate .*--device cuda", out)


def test_stage_times_sums_the_job_benchmarks_per_stage(tmp_path):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for name, wall, cpu in (("toyworld.tsv", 10.0, 8.0), ("train/tiny-t5/image-a.tsv", 30.0, 20.0),
                            ("train/tiny-t5/image-b.tsv", 50.0, 40.0), ("report.tsv", 5.0, "NA")):
        path = tmp_path / "benchmarks" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + f"{wall}\t0:00:10\t1\t1\t1\t1\t0\t0\t50\t{cpu}\n")
    proc = subprocess.run([sys.executable, "workflow/scripts/stage_times.py", "--logs", str(tmp_path / "benchmarks")],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[2:] == ["| train | 2 | 80.0 | 60.0 | 30.0 | 88 % |", "| toyworld | 1 | 10.0 | 8.0 | 8.0 | 12 % |",
                         "| report | 1 | 5.0 | 0.0 | 0.0 | 0 % |", "| all | 4 | 95.0 | 68.0 | | 100 % |"]
    empty = subprocess.run([sys.executable, "workflow/scripts/stage_times.py", "--logs", str(tmp_path / "none")],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert empty.returncode == 2 and "run the workflow first" in empty.stderr
