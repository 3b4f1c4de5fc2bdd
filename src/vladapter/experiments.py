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
from pathlib import Path
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


def video_source(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """Where a video dataset's videos are: its own ``data.videos.<dataset>`` folder / fps /
    features, else (``share`` alone) the settings of the dataset whose videos it shares."""
    own = video_settings(config, dataset)
    if "folder" in own or "features" in own or "share" not in own:
        return own
    return {k: v for k, v in video_settings(config, own["share"]).items() if k != "share"}


def released_features(config: Mapping[str, Any], source: str) -> str | None:
    """The folder of released features (VALUE's ``<id>.npz``) a video feature source is
    converted from instead of sampled and extracted (``data.videos.<source>.features``), or None."""
    return video_source(config, source).get("features")


# VALUE's released video features are OpenAI CLIP ViT-B/32 frame embeddings: the feature files
# are named after the configured video backbone, which must then be that model
RELEASED_BACKBONE = "clip-vit-base-patch32"


def check_released_features(config: Mapping[str, Any]) -> None:
    """ConfigError for ``data.videos`` entries that cannot work: features beside a videos
    folder or fps, a dataset whose released features differ from those of the dataset whose
    videos it shares, or released features under another video backbone's name."""
    from vladapter.errors import ConfigError

    datasets = config["datasets"]["video"]
    for d in datasets:
        own = video_settings(config, d)
        if "features" in own and ({"folder", "fps"} & set(own)):
            raise ConfigError(f"data.videos.{d}: features (released feature files) replaces folder/fps (videos); "
                              "give one or the other")
        share = own.get("share")
        if share and "features" in own and released_features(config, share) != own["features"]:
            raise ConfigError(f"data.videos.{d}: shares {share}'s videos but names other released features "
                              f"({own['features']}) than data.videos.{share}.features "
                              f"({released_features(config, share)}); name the same folder in both, or drop it here")
    released = [d for d in datasets if released_features(config, feature_source(config, d))]
    backbone = name_key(config["backbone"]["video"])
    if released and backbone != RELEASED_BACKBONE:
        raise ConfigError(f"data.videos.{released[0]}.features: VALUE's released features are CLIP ViT-B/32 frame "
                          f"embeddings, but backbone.video is {config['backbone']['video']}; set backbone.video: "
                          f"openai/clip-vit-base-patch32 (the same model), or give videos instead")


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


def pretrain_per_seed(config: Mapping[str, Any]) -> bool:
    """Whether each seed of the runs has its own VL pre-training (``pretrain.per_seed``):
    a run's seed n starts from the backbone pre-trained (matching, objectives, video) with
    seed n, so the seeds' spread covers pre-training too. The toy CLIP and features stay shared."""
    pre = config.get("pretrain") or {}
    return bool(pre.get("enabled") and pre.get("per_seed"))


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
    "init_per_seed": "pretrain.per_seed (each seed of a run starts from its own pre-training)",
    "prepared": "the workflow's data/prepared", "features": "the workflow's data/features",
    "backbone": "backbone.<modality>", "n_image_tokens": "features.n_image_tokens",
    "n_video_frames": "features.n_video_frames",
}
# job stage -> (config section, sub-section over it)
STAGES = {"train": ("train", None), "pretrain": ("pretrain", None), "matching": ("pretrain", "matching"),
          "video": ("pretrain", None), "evaluate": ("evaluate", None)}


def job_settings(config: Mapping[str, Any], stage: str, *, lm: str | None = None, modality: str = "image",
                 method: str | None = None, tasks: list[str] | None = None, init: str | None = None,
                 tokenizer: str | None = None, seed: int | None = None) -> dict[str, Any]:
    """The settings one workflow job of ``stage`` (train | pretrain | matching | video |
    evaluate) runs with, as the JSON object its command receives (``--settings``).
    ``seed``: a pre-training stage's seed (``pretrain.per_seed``: one backbone per seed of
    the runs); a training job with ``init`` then starts each seed from ``<init>/seed-<n>``.

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
        given["init_per_seed"] = bool(init) and pretrain_per_seed(config)
        return settings_of(resolve_section(config[section], section, TrainConfig, given, where="config"))
    if seed is not None:
        given["seed"] = seed
    resolved = settings_of(resolve_section(config[section], section, PretrainConfig, given, stage=sub, where="config"))
    return {k: v for k, v in resolved.items() if k not in ("seeds", "init_per_seed")}  # one backbone: no seeds of runs


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


def check_lms(config: Mapping[str, Any]) -> None:
    """Each of ``lms`` can be built where the jobs run (ConfigError naming it and the fix): a
    folder must hold a checkpoint (config.json), and offline (HF_HUB_OFFLINE) a checkpoint
    named by hub id must be in the local HF cache when its weights or its tokenizer are
    needed. Otherwise the first pre-training or training job fails, after the downloads and
    the feature extraction."""
    from vladapter.errors import ConfigError
    from vladapter.models.checkpoints import find_checkpoint, looks_like_path
    from vladapter.models.specs import lm_spec

    sections = ["train"] + (["pretrain"] if config["pretrain"]["enabled"] else [])
    weights = not all((config.get(s) or {}).get("random_init") for s in sections)
    needs_hub = weights or not config.get("tokenizer")
    for lm in config["lms"]:
        try:
            if (is_folder_name(lm) or looks_like_path(lm)) and not Path(lm).expanduser().is_dir():
                raise ConfigError(f"folder {lm} not found; name a checkpoint folder (written by save_pretrained, "
                                  "with a config.json) or a hub id such as t5-base")
            spec = lm_spec(lm)  # a folder: its config.json; a hub id: offline, it must be in the cache
            if spec.checkpoint and needs_hub:
                find_checkpoint(spec.checkpoint, required=True)  # offline: in the HF cache (online: downloaded)
        except ConfigError as e:
            raise ConfigError(f"lms: {lm}: {e}") from None


def check_config(config: Mapping[str, Any], built: tuple[str, ...] = ()) -> None:
    """Every check of a validated workflow config that the schema cannot make, before any
    job runs (ConfigError naming the key and the fix): keys the workflow sets per job,
    each job's settings (vladapter.core.config's checks: steps or epochs, square image
    tokens, task keys, ...), PETL method options, frame sampling, backbone folders
    (``built``: folders a rule of the workflow makes), the LMs' folders and, offline, their
    checkpoints in the HF cache (check_lms)."""
    from vladapter.errors import ConfigError

    check_per_job_keys(config)
    check_released_features(config)
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
    check_lms(config)
    jobs = [("train.video" if run.modality == "video" else "train", job_settings(config, "train", lm=run.lm, modality=run.modality,
                                                    method=run.method, tasks=tasks(config, run.modality)))
            for run in runs(config)]
    overrides = (config.get("train") or {}).get("method_overrides") or {}
    if overrides:
        from vladapter.petl.method import resolve

        for method in sorted({run.method for run in runs(config)}):
            try:
                resolve(method, overrides)
            except ConfigError as e:
                raise ConfigError(f"train.method_overrides: {e}") from None
    if config["pretrain"]["enabled"]:
        jobs.append(("pretrain", job_settings(config, "pretrain", lm="lm", tasks=["pretrain"])))
        if (config["pretrain"].get("matching") or {}).get("enabled"):
            jobs.append(("pretrain.matching", job_settings(config, "matching", lm="lm", tasks=["pretrain"])))
        if video_pretraining(config):
            jobs.append(("pretrain.video", job_settings(config, "video", lm="lm", modality="video",
                                                        tasks=video_pretraining(config))))
    job_settings(config, "evaluate")
    check_batches_fit_processes(config, jobs)


def check_batches_fit_processes(config: Mapping[str, Any], jobs: list[tuple[str, dict[str, Any]]]) -> None:
    """Every task batch of every training job (``jobs``: (config section, its settings)) has a
    row for each of its processes (resources.train: nodes x GPUs per node), else ConfigError
    naming the key and the task."""
    from vladapter.core.config import check_world_size
    from vladapter.errors import ConfigError
    from vladapter.tasks import get_task

    train = config["resources"]["train"]
    world = int(train.get("nodes", 1)) * max(1, int(train.get("gpu", 0)))
    if world == 1:
        return
    from vladapter.tasks.pretrain import batch_scales

    for job, settings in jobs:
        scales = {}
        for t in settings["tasks"]:
            scales.update(batch_scales() if t == "pretrain" else {t: get_task(t).batch_scale})
        try:
            check_world_size(scales, settings["batch_size"], world, key=f"{job}.batch_size")
        except ConfigError as e:
            raise ConfigError(f"{e} (resources.train: {world} processes)") from None
