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

from vladapter.data.records import DATASET_TASK

MODALITIES = ("image", "video")

# dataset -> the feature source its records refer to (VQAv2 asks about COCO images)
FEATURE_SOURCE = {
    "vqav2": "coco", "coco": "coco", "gqa": "gqa", "nlvr2": "nlvr2", "pretrain": "pretrain",
    "tvqa": "tvqa", "how2qa": "how2qa", "tvc": "tvc", "yc2c": "yc2c",
}


def name_key(name: str) -> str:
    """The path-safe key of a model name, as in feature file names (features.backbones):
    its last path component (facebook/bart-base -> bart-base, models/toyclip -> toyclip),
    the model of an open_clip name (open_clip:RN101@openai -> RN101)."""
    if name.startswith("open_clip:"):
        return name.split(":", 1)[1].split("@")[0]
    return name.rstrip("/").split("/")[-1]


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


def parse_run_name(name: str) -> tuple[str, str, bool]:
    """``image-single_adapter-nopt`` -> (``image``, ``single_adapter``, False)."""
    modality, _, rest = name.partition("-")
    if modality not in MODALITIES or not rest:
        raise ValueError(f"not a run name: {name!r} (expected <image|video>-<preset>[-nopt])")
    nopt = rest.endswith("-nopt")
    return modality, rest[: -len("-nopt")] if nopt else rest, not nopt


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


VIDEO_CAPTION_TASKS = ("tvc", "yc2c")


def video_pretraining(config: Mapping[str, Any]) -> list[str]:
    """Task keys of the video pre-training stage: the config's video captioning datasets
    (all its video datasets when it has none of those); [] when there is no such stage
    (it needs ``pretrain.enabled`` and ``pretrain.video.enabled``)."""
    pre = config.get("pretrain") or {}
    if not (pre.get("enabled") and (pre.get("video") or {}).get("enabled")):
        return []
    video = tasks(config, "video")
    return [t for t in video if t in VIDEO_CAPTION_TASKS] or video


def train_settings(config: Mapping[str, Any], run: Run) -> dict[str, Any]:
    """The training settings of one run: the ``train`` section with the modality's
    overrides applied and ``lr`` resolved to this run's preset."""
    section = dict(config["train"])
    overrides = section.pop("video", None) or {}
    if run.modality == "video":
        section.update(overrides)
    lr = section["lr"]
    section["lr"] = lr.get(run.method, lr["default"]) if isinstance(lr, Mapping) else lr
    section["seeds"] = list(run.seeds)
    return section
