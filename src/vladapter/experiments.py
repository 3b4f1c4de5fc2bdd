"""The experiment matrix a workflow config describes: which runs exist and where they live.

One place for run names and paths, used by the Snakemake rules (workflow/rules/*.smk)
and by `vladapter report`. A run trains one PETL preset on all tasks of one modality:

    <run> = <modality>-<preset>[-nopt]      e.g. image-single_adapter, video-single_lora,
                                                 image-full_finetuning-nopt
``-nopt`` marks the runs of the pre-training comparison that start from the backbone
without VL pre-training; with ``pretrain.enabled`` every other run starts from
``models/pretrain/<lm>``. A run is trained once per seed of ``train.seeds`` (one process,
``<model_dir>/seed-<n>/`` each) and evaluated likewise; the report gives mean ± sd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from vladapter.data.datasets import DATASETS, PRETRAIN, pretrain_corpus  # the last two: for the rules (X.*)
from vladapter.data.records import DATASET_TASK
from vladapter.utils.names import is_folder_name, name_key

MODALITIES = ("image", "video")

# dataset -> the feature source its records refer to (VQAv2 asks about COCO images)
FEATURE_SOURCE = {d.name: d.source for d in DATASETS.values()}
# dataset -> the datasets whose raw files preparing it reads (itself first)
RAW_NEEDS = {d.name: (d.name, *d.needs) for d in DATASETS.values()}


def video_settings(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """``data.videos.<dataset>`` of the config: folder, fps (frame folders), share ({} if none)."""
    return dict(((config.get("data") or {}).get("videos") or {}).get(dataset) or {})


def feature_source(config: Mapping[str, Any], dataset: str) -> str:
    """The feature source a dataset's records refer to: FEATURE_SOURCE, or for a video dataset
    whose config shares another's videos (TVC on TVQA's clips), that dataset: sampled once."""
    return video_settings(config, dataset).get("share") or FEATURE_SOURCE[dataset]


@dataclass(frozen=True)
class Run:
    lm: str          # key of the language backbone (name_key of the configured name)
    modality: str    # image | video
    method: str      # PETL preset name
    pretrained: bool  # starts from the VL-pre-trained backbone
    seeds: tuple[int, ...] = (0,)  # trained once per seed

    @property
    def name(self) -> str:
        return f"{self.modality}-{self.method}" + ("" if self.pretrained else "-nopt")

    @property
    def model_dir(self) -> str:
        """The run's folder: one trained model per seed in it (:meth:`seed_dir`)."""
        return f"models/{self.lm}/{self.name}"

    def seed_dir(self, seed: int) -> str:
        return seed_dir(self.model_dir, seed)

    @property
    def metrics_path(self) -> str:
        return f"metrics/{self.lm}/{self.name}.json"


def seed_dir(run_dir: str, seed: int) -> str:
    """Where the model (or predictions) of one seed of a run lives."""
    return f"{run_dir}/seed-{seed}"


def runs(config: Mapping[str, Any]) -> list[Run]:
    """Every run of the config, in table order: per LM, image then video, comparison last."""
    pretrain = config["pretrain"]["enabled"]
    out = []
    for lm in map(name_key, config["lms"]):
        for modality in MODALITIES:
            if config["datasets"][modality]:
                out += [Run(lm, modality, m, pretrain, seeds(config, modality)) for m in config["methods"][modality]]
        if pretrain:
            modality = "image" if config["datasets"]["image"] else "video"
            out += [Run(lm, modality, m, False, seeds(config, modality)) for m in config["pretrain"].get("compare", [])]
    return out


def seeds(config: Mapping[str, Any], modality: str) -> tuple[int, ...]:
    """The seeds a modality's runs are trained with: ``train.seeds`` (``train.video.seeds``
    for video runs), else the one ``train.seed``."""
    section = config["train"]
    value = section.get("seeds") or [section.get("seed", 0)]
    if modality == "video":
        value = (section.get("video") or {}).get("seeds") or value
    return tuple(int(s) for s in value)


def tasks(config: Mapping[str, Any], modality: str) -> list[str]:
    """Task keys of a modality's datasets, in config order (vqa, gqa, nlvr, caption ...)."""
    return [DATASET_TASK[d] for d in config["datasets"][modality]]


VIDEO_CAPTION_TASKS = tuple(d.task for d in DATASETS.values() if d.modality == "video" and d.caption)


def pretrain_feature_sources(corpus: list[str]) -> list[str]:
    """The feature sources the real pre-training corpus refers to, each once: its datasets'
    (the captioning dataset's last: the corpus is built around its images)."""
    caption = [FEATURE_SOURCE[d] for d in corpus if DATASETS[d].caption]
    return list(dict.fromkeys([FEATURE_SOURCE[d] for d in corpus if FEATURE_SOURCE[d] not in caption] + caption))


def video_pretraining(config: Mapping[str, Any]) -> list[str]:
    """Task keys of the video pre-training stage: the config's video captioning datasets
    (all its video datasets when it has none of those); [] when there is no such stage
    (it needs ``pretrain.enabled`` and ``pretrain.video.enabled``)."""
    pre = config.get("pretrain") or {}
    if not (pre.get("enabled") and (pre.get("video") or {}).get("enabled")):
        return []
    video = tasks(config, "video")
    return [t for t in video if t in VIDEO_CAPTION_TASKS] or video


# train/pretrain keys the workflow sets for each job: in the config file they would be
# overwritten without a word, so they are refused (key -> where the workflow takes it from)
SET_PER_JOB = {
    "lm": "lms", "method": "methods.<modality>", "tasks": "datasets.<modality>",
    "init": "pretrain.enabled (runs start from the pre-trained backbone)", "tokenizer": "the top-level tokenizer",
    "prepared": "the workflow's data/prepared", "features": "the workflow's data/features",
    "backbone": "backbone.<modality>", "n_image_tokens": "features.n_image_tokens",
    "n_video_frames": "features.n_video_frames",
}
# job stage -> (config section, sub-section over it)
STAGES = {"train": ("train", None), "pretrain": ("pretrain", None), "matching": ("pretrain", "matching"),
          "video": ("pretrain", None), "evaluate": ("evaluate", None)}


def job_settings(config: Mapping[str, Any], stage: str, *, lm: str | None = None, modality: str = "image",
                 method: str | None = None, tasks: list[str] | None = None, init: str | None = None,
                 tokenizer: str | None = None) -> dict[str, Any]:
    """The settings one workflow job of ``stage`` (train | pretrain | matching | video |
    evaluate) runs with, as the JSON object its command receives (``--settings``).

    The config's section resolved by vladapter.core.config.resolve_section (the one place
    sections are merged), with what the workflow decides per job: the LM's name, the
    method, the task keys, the backbone it starts from (``init``), the tokenizer, and the
    data folders and feature shapes of ``modality``. Snakemake's params compare exactly
    this value, so a job reruns when (and only when) what it receives changes.
    """
    from vladapter.core.config import EvaluateConfig, PretrainConfig, TrainConfig, resolve_section, settings_of

    section, sub = STAGES[stage]
    if stage == "evaluate":
        return settings_of(resolve_section(config[section], section, EvaluateConfig, where="config"))
    features = config["features"]
    given = {
        "lm": lm, "method": method, "tasks": tasks, "init": init, "tokenizer": tokenizer,
        "prepared": "data/prepared", "features": "data/features", "backbone": name_key(config["backbone"][modality]),
        "n_image_tokens": features["n_image_tokens"], "n_video_frames": features["n_video_frames"],
    }
    if section == "train":
        given["seeds"] = list(seeds(config, modality))  # always a list: one folder per seed
        return settings_of(resolve_section(config[section], section, TrainConfig, given, where="config"))
    resolved = settings_of(resolve_section(config[section], section, PretrainConfig, given, stage=sub, where="config"))
    return {k: v for k, v in resolved.items() if k != "seeds"}  # one backbone: no seeds of runs


def check_per_job_keys(config: Mapping[str, Any]) -> None:
    """ConfigError naming a ``train``/``pretrain`` key (or sub-section key) the workflow
    sets for each job (SET_PER_JOB), which the config file must leave out."""
    from vladapter.errors import ConfigError

    for key in ("method", "method_overrides"):
        if key in (config.get("pretrain") or {}):
            raise ConfigError(f"pretrain.{key}: pre-training trains the whole backbone, with no PETL method; "
                              "remove it from the config")
    for section in ("train", "pretrain"):
        parts = {section: config.get(section) or {}}
        for sub in ("video", "matching"):
            parts[f"{section}.{sub}"] = (config.get(section) or {}).get(sub) or {}
        for where, values in parts.items():
            for key in sorted(set(values) & set(SET_PER_JOB)):
                raise ConfigError(f"{where}.{key}: the workflow sets this for each job from {SET_PER_JOB[key]}; "
                                  f"remove it from the config")


def check_config(config: Mapping[str, Any], built: tuple[str, ...] = ()) -> None:
    """Every check of a validated workflow config that the schema cannot make, before any
    job runs (ConfigError naming the key and the fix): keys the workflow sets per job,
    each job's settings (vladapter.core.config's checks: steps or epochs, square image
    tokens, task keys, ...), PETL method options, frame sampling, backbone folders
    (``built``: folders a rule of the workflow makes)."""
    from vladapter.errors import ConfigError

    check_per_job_keys(config)
    by_key: dict[str, list[str]] = {}
    for lm in config["lms"]:
        by_key.setdefault(name_key(lm), []).append(lm)
    for key, lms in by_key.items():
        if len(lms) > 1:
            raise ConfigError(f"lms: {' and '.join(lms)} would share the folders models/{key}/, metrics/{key}/ "
                              f"(a run folder is named by the last part of the LM's name); give each checkpoint "
                              "folder its own last name, e.g. by a symlink")
    frames = config["features"]["frames"]
    if frames["mode"] == "count" and not float(frames["value"]).is_integer():
        raise ConfigError(f"features.frames.value: {frames['value']} frames per clip is not a whole number "
                          "(mode count samples that many frames; or use mode every for one frame per value seconds)")
    for modality in MODALITIES:
        spec = config["backbone"][modality]
        if config["datasets"][modality] and is_folder_name(spec) and spec.rstrip("/") not in built:
            from pathlib import Path

            if not Path(spec).is_dir():
                raise ConfigError(f"backbone.{modality}: folder {spec} not found (and no rule makes it); "
                                  f"name an existing CLIP folder or a Hugging Face CLIP checkpoint")
    for run in runs(config):
        job_settings(config, "train", lm=run.lm, modality=run.modality, method=run.method,
                     tasks=tasks(config, run.modality))
    overrides = (config.get("train") or {}).get("method_overrides") or {}
    if overrides:
        from vladapter.petl.method import resolve

        for method in sorted({run.method for run in runs(config)}):
            try:
                resolve(method, overrides)
            except ConfigError as e:
                raise ConfigError(f"train.method_overrides: {e}") from None
    if config["pretrain"]["enabled"]:
        job_settings(config, "pretrain", lm="lm", tasks=["pretrain"])
        if (config["pretrain"].get("matching") or {}).get("enabled"):
            job_settings(config, "matching", lm="lm", tasks=["pretrain"])
        if video_pretraining(config):
            job_settings(config, "video", lm="lm", modality="video", tasks=video_pretraining(config))
    job_settings(config, "evaluate")
