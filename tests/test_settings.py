"""Each workflow job's settings: resolved per job by one library function, passed on its
command line (``--settings``), compared by Snakemake's params; nothing written while the
workflow is parsed; keys the schema accepts honoured or refused before any job."""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess

import pytest
import yaml

from vladapter import experiments as X
from vladapter.errors import ConfigError
from vladapter.core.config import PretrainConfig, TrainConfig, load_section
from workflow_helpers import (REPO, copy_workflow, planned_commands, published_configs_home, snakemake,
                              snakemake_env, value_release_folders)

DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
SMOKE = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())


def _files(work):
    """Every file under ``work`` outside .snakemake/, with its content."""
    return {p.relative_to(work).as_posix(): p.read_bytes() for p in sorted(work.rglob("*"))
            if p.is_file() and ".snakemake" not in p.relative_to(work).parts}


def test_a_dry_run_of_any_config_writes_nothing_outside_dot_snakemake(tmp_path):
    work = copy_workflow(tmp_path)
    for config in sorted((work / "config").glob("*.yaml")):  # VALUE's release for paper-video (folders only)
        value_release_folders(work, yaml.safe_load(config.read_text()))
    before = _files(work)
    for config in sorted((work / "config").glob("*.yaml")):
        snakemake(work, "-n", "--quiet", "rules", "--configfile", f"config/{config.name}", timeout=300)
        after = _files(work)
        assert after == before, f"a dry run of {config.name} wrote {sorted(set(after) ^ set(before))} " \
                                f"or changed {sorted(k for k in before if after.get(k) != before[k])}"


@pytest.mark.slow
def test_a_dry_run_of_another_config_does_not_change_what_a_planned_job_reads(smoke_workflow, tmp_path):
    """The race: a job planned under one config (here smoke's ``evaluate.max_examples: 8``)
    and started after a dry run of another config in the same folder must run with its
    own settings (it once read a file that the dry run rewrote)."""
    work, _ = smoke_workflow
    [command] = [c for c in planned_commands(work, "--forcerun", "metrics/majority.json")
                 if c.startswith("vladapter evaluate --majority ")]
    snakemake(work, "-n", "--quiet", "rules", "--configfile", str(REPO / "config" / "config.yaml"))
    out = tmp_path / "majority.json"  # the planned job, writing elsewhere than the shared run
    command = re.sub(r"--out \S+", f"--out {out}", command.split(" > ")[0])
    subprocess.run(["bash", "-c", command], cwd=work, env=snakemake_env(), check=True, capture_output=True,
                   timeout=300)
    assert json.loads(out.read_text())["tasks"]["vqa"]["n"] == SMOKE["evaluate"]["max_examples"]


def _settings_arg(command: str) -> dict:
    args = shlex.split(command.split(" > ")[0])
    return json.loads(args[args.index("--settings") + 1])


def test_each_job_receives_exactly_the_settings_snakemake_compares(tmp_path):
    work = copy_workflow(tmp_path)
    # training jobs exec their process (the SLURM stop signal reaches it): "exec vladapter ..."
    commands = [c.removeprefix("exec ") for c in planned_commands(work, "--configfile", "config/smoke.yaml")]
    commands = [c for c in commands if re.match(r"vladapter (train|pretrain) ", c)]
    # + matching, image and video pre-training, once per seed (pretrain.per_seed)
    assert len(commands) == len(X.runs(SMOKE)) + 3 * len(SMOKE["train"]["seeds"])
    train = {re.search(r"--out '?models/tiny-t5/([^' ]+)", c).group(1): _settings_arg(c)
             for c in commands if c.startswith("vladapter train ")}
    for run in X.runs(SMOKE):
        init = f"models/pretrain-video/{run.lm}" if run.modality == "video" else f"models/pretrain/{run.lm}"
        expected = X.job_settings(SMOKE, "train", lm="tiny-t5", modality=run.modality, method=run.method,
                                  tasks=X.tasks(SMOKE, run.modality), init=init, tokenizer="models/tokenizer")
        assert train[run.name] == json.loads(json.dumps(expected))
    assert train["image-full_finetuning"]["lr"] == SMOKE["train"]["lr"]["full_finetuning"]
    assert train["video-single_adapter"]["steps"] == SMOKE["train"]["video"]["steps"]


@pytest.mark.parametrize("run", X.runs(DEFAULT), ids=lambda r: r.name)
def test_job_settings_equal_what_the_command_line_of_before_resolved(tmp_path, run):
    """The values a training job receives are those the former `--config file --flag ...`
    command resolved (the default toy run's training is unchanged)."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(DEFAULT))
    modality = run.modality
    init = None if not run.pretrained else f"models/pretrain{'-video' if modality == 'video' else ''}/tiny-t5"
    flags = {"lm": "tiny-t5", "method": run.method, "tasks": X.tasks(DEFAULT, modality), "init": init,
             "init_per_seed": init is not None and X.pretrain_per_seed(DEFAULT),  # one pre-training per seed
             "tokenizer": "models/tokenizer", "prepared": "data/prepared", "features": "data/features",
             "backbone": X.name_key(DEFAULT["backbone"][modality]),
             "n_image_tokens": DEFAULT["features"]["n_image_tokens"],
             "n_video_frames": DEFAULT["features"]["n_video_frames"]}
    before = load_section(path, "train", TrainConfig, flags)
    now = TrainConfig(**X.job_settings(DEFAULT, "train", lm="tiny-t5", modality=modality, method=run.method,
                                       tasks=X.tasks(DEFAULT, modality), init=init, tokenizer="models/tokenizer"))
    assert now == before
    assert now.learning_rate() == (5e-3 if run.method != "full_finetuning" and modality == "image" else 1e-3)


def test_the_pretraining_stages_resolve_their_sub_sections():
    matching = X.job_settings(DEFAULT, "matching", lm="tiny-t5", tasks=["pretrain"], tokenizer="models/tokenizer")
    assert matching["objectives"] == ["itm"] and matching["steps"] == DEFAULT["pretrain"]["matching"]["steps"]
    video = X.job_settings(DEFAULT, "video", lm="tiny-t5", modality="video", tasks=["tvc", "yc2c"])
    assert video["steps"] == DEFAULT["pretrain"]["video"]["steps"] and video["backbone"] == "toyclip-resnet"
    image = X.job_settings(DEFAULT, "pretrain", lm="tiny-t5", tasks=["pretrain"])
    assert image["steps"] == DEFAULT["pretrain"]["steps"] and "matching" not in image and "video" not in image
    assert PretrainConfig(**image).objectives == ["span", "prefix", "itm", "qa"]


# --- keys the schema accepts: honoured or refused before any job ------------------------

def _edited(edit):
    config = copy.deepcopy(DEFAULT)
    edit(config)
    return config


@pytest.mark.parametrize("edit, named", [
    (lambda c: c["train"].update(tasks=["vqa"]), "train.tasks"),
    (lambda c: c["train"].update(method="single_lora"), "train.method"),
    (lambda c: c["train"].update(lm="tiny-bart"), "train.lm"),
    (lambda c: c["train"]["video"].update(n_video_frames=8), "train.video"),
    (lambda c: c["pretrain"].update(method_overrides={"rank": 2}), "pretrain.method_overrides"),
    (lambda c: c["train"].update(steps=None, epochs=None), "set steps > 0 or epochs > 0"),
    (lambda c: c["features"]["frames"].update(mode="count", value=2.5), "features.frames.value"),
    (lambda c: c["features"].update(n_image_tokens=10), "not a square number"),
    (lambda c: c["backbone"].update(image="models/no-such-clip"), "backbone.image: folder models/no-such-clip"),
    (lambda c: c["train"].update(method_overrides={"reduction_factr": 4}), "reduction_factr"),
    (lambda c: c["evaluate"].update(tasks=["vqa", "caption2"]), "caption2"),
    (lambda c: c["evaluate"].update(vqa_evaluator="vlt5"), "vqa_evaluator"),
])
def test_a_key_the_workflow_cannot_honour_is_refused_at_parse_time(edit, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        X.check_config(_edited(edit), built=("models/toyclip", "models/toyclip-resnet"))


def test_the_default_configs_pass_every_check():
    import stand_ins

    with stand_ins.offline_hub(published_configs_home()):  # offline, the paper's LMs in the HF cache
        for path in sorted((REPO / "config").glob("*.yaml")):
            config = yaml.safe_load(path.read_text())
            X.check_config(config, built=("models/toyclip", "models/toyclip-resnet")
                           if config["world"]["kind"] == "toy" else ())


def test_method_overrides_that_fit_every_run_are_honoured():
    config = _edited(lambda c: (c["methods"].update(image=["single_adapter", "multiple_adapters"], video=[]),
                                c["pretrain"].update(compare=[]),
                                c["train"].update(method_overrides={"reduction_factor": 4})))
    X.check_config(config, built=("models/toyclip", "models/toyclip-resnet"))
    run = X.runs(config)[0]
    settings = X.job_settings(config, "train", lm="tiny-t5", method=run.method, tasks=X.tasks(config, "image"))
    assert settings["method_overrides"] == {"reduction_factor": 4}


@pytest.mark.parametrize("edit, named", [
    (lambda c: c["train"].update(tasks=["vqa"]), "train.tasks: the workflow sets this"),
    (lambda c: c.update(tokenizer="models/tokenzer"), "models/tokenzer"),
])
def test_snakemake_refuses_it_before_any_job_with_the_message(tmp_path, edit, named):
    work = copy_workflow(tmp_path)
    (work / "bad.yaml").write_text(yaml.safe_dump(_edited(edit)))
    before = _files(work)
    proc = snakemake(work, "--configfile", "bad.yaml", check=False, timeout=120)
    assert proc.returncode != 0 and named in proc.stdout + proc.stderr
    assert _files(work) == before  # no job ran, nothing was written
