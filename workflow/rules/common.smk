# Config validation, the experiment matrix and path helpers shared by every rule file.

import os
import re

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from vladapter import experiments as X
from vladapter.config_schema import config_problems
from vladapter.errors import ConfigError
from vladapter.core.config import canonical
from vladapter.train import launch


# Before any job: a wrong key or value stops here with a message naming it.
if problems := config_problems(config, f"{workflow.basedir}/workflow/schemas/config.schema.yaml", workflow.configfiles):
    raise WorkflowError(problems)
validate(config, "../schemas/config.schema.yaml")

TOY = config["world"]["kind"] == "toy"
IMAGE_DATASETS = config["datasets"]["image"]
VIDEO_DATASETS = config["datasets"]["video"]
PRETRAIN = config["pretrain"]["enabled"]
VIDEO_PRETRAIN = X.video_pretraining(config)  # task keys of the video pre-training stage, or []
# the image-text matching stage before pre-training's objectives (rule pretrain_matching)
MATCHING = PRETRAIN and config["pretrain"].get("matching", {}).get("enabled", False)
SPLITS = ["train", "val", "test"]
LMS = {X.name_key(lm): lm for lm in config["lms"]}
RUNS = {(r.lm, r.name): r for r in X.runs(config)}
BACKBONES = {X.name_key(config["backbone"][m]): config["backbone"][m] for m in X.MODALITIES}
ENV = "../envs/vladapter.yaml"
# the tiny CLIPs the toy world trains (rule train_toy_clip) when the config names them,
# folder -> vision tower: a ViT (the default backbone) and a ResNet (RN101 in miniature)
TOY_CLIPS = {"models/toyclip": "vit", "models/toyclip-resnet": "resnet"}
TOY_CLIP_NAMES = "|".join(map(re.escape, map(os.path.basename, TOY_CLIPS)))
# What the schema cannot check, also before any job (vladapter.experiments.check_config).
# Nothing here writes a file: each job receives its own settings on its command line.
try:
    X.check_config(config, built=tuple(TOY_CLIPS) if TOY else ())
except ConfigError as e:  # the message names the key and the fix; its traceback would not help
    raise WorkflowError(f"config: {e}") from None


def _alternatives(names):
    return "|".join(map(re.escape, sorted(names))) or "(?!)"


def res(kind):
    """Resources of a job class (config `resources`): threads come separately."""
    return {k: v for k, v in config["resources"][kind].items() if k not in ("threads", "nodes")}


def threads(kind):
    return config["resources"][kind]["threads"]


TRAIN_NODES = config["resources"]["train"].get("nodes", 1)
TRAIN_GPUS = config["resources"]["train"]["gpu"]  # per node


# SLURM warns a training job this long before its time limit (SIGTERM, which torchrun
# passes to its workers): the job checkpoints and stops, the next submission resumes
STOP_WARNING_S = 300


def train_resources():
    """A training job's resources. Across nodes (SLURM): one task per node that runs the
    job's own srun (`mpi`), the GPUs per node as a generic resource (SLURM's --gpus counts
    the whole job). On SLURM the job is signalled before its time limit."""
    r = {**res("train"), "slurm_extra": f"--signal=TERM@{STOP_WARNING_S}"}
    if TRAIN_NODES > 1:
        del r["gpu"]
        r.update(nodes=TRAIN_NODES, tasks=TRAIN_NODES, tasks_per_gpu=0, mpi="srun", gres=f"gpu:{TRAIN_GPUS}")
    return r


def train_threads():
    """CPUs of a training job per node: the configured threads for each of its GPU processes."""
    return threads("train") * max(1, TRAIN_GPUS)


def eval_resources():
    """Evaluation is one process: at most one GPU, one node."""
    return {**res("train"), "gpu": min(1, TRAIN_GPUS)}


def launcher(wildcards):
    """Multi-GPU jobs run under torchrun (DDP), one process per GPU, on every node of the
    job (vladapter.train.launch); others run directly. `exec`: the job's shell becomes the
    training (or torchrun) process, so a stop signal reaches it and nothing ends before it."""
    return f"exec {launch.launcher(TRAIN_NODES, TRAIN_GPUS)}"


# --- raw data: downloads, or the folders the user already has (config `data`) ---------
# Real runs read each dataset from data.paths.<dataset>, else <data.raw_dir>/<dataset>.
# A folder that exists is read where it lies: no rule writes it (download only produces
# the absent ones), so the workflow never re-downloads, modifies or deletes it.
RAW_DIR = (config.get("data") or {}).get("raw_dir", "data/raw")
RAW_PATHS = (config.get("data") or {}).get("paths") or {}
# the pre-training corpus (real world: built by `prepare` from these downloads, reusing
# their features): the datasets whose spec says so (vladapter.data.datasets)
PRETRAIN_CORPUS = X.pretrain_corpus(IMAGE_DATASETS)


def raw_folder(dataset):
    return RAW_PATHS.get(dataset, f"{RAW_DIR}/{dataset}")


for _dataset, _folder in RAW_PATHS.items():
    if not TOY and not os.path.isdir(_folder):
        raise WorkflowError(f"config data.paths.{_dataset}: folder {_folder} not found; point it at the unpacked "
                         f"dataset, or remove the key to download it under data.raw_dir")


def downloaded_here(dataset):
    """Whether <raw_dir>/<dataset> is (or is to be) this workflow's download: no folder yet,
    or one with a download's list of verified files or a partial download to resume. Any
    other folder is the user's data."""
    folder = raw_folder(dataset)
    return (not os.path.isdir(folder) or os.path.exists(f"{RAW_DIR}/{dataset}.download.json")
            or any(name.endswith(".part") for name in os.listdir(folder)))


# the real datasets the download rule may fetch; the others are read where they lie
TO_DOWNLOAD = [] if TOY else [d for d in IMAGE_DATASETS + VIDEO_DATASETS + (PRETRAIN_CORPUS if PRETRAIN else [])
                              if d not in RAW_PATHS and downloaded_here(d)]


def raw(dataset):
    """What marks a dataset's raw files as present: the toy world; a folder that is there
    (the user's, read where it lies: no rule writes it); else its download's list of verified
    files (the folder itself is no output: Snakemake never deletes it)."""
    if TOY:
        return "data/raw/toy_stats.json"
    if dataset in TO_DOWNLOAD:
        return f"{RAW_DIR}/{dataset}.download.json"
    return raw_folder(dataset)


def raw_needs(dataset):
    """The datasets whose raw files preparing ``dataset`` reads (the real pre-training
    split: the corpus it is built from)."""
    if dataset == X.PRETRAIN and not TOY:
        return list(PRETRAIN_CORPUS)
    return list(X.RAW_NEEDS.get(dataset, [dataset]))


def raw_inputs(wildcards):
    return sorted({raw(d) for d in raw_needs(wildcards.dataset)})


def raw_args(wildcards):
    """--raw and one --path per dataset folder `prepare` reads (a list: {params.raw:q})."""
    args = ["--raw", RAW_DIR]
    for d in raw_needs(wildcards.dataset):
        if d in RAW_PATHS:
            args += ["--path", f"{d}={RAW_PATHS[d]}"]
    return args


def images_folder(source):
    """A real source's images: <folder>/images (downloads), or the folder itself when the
    user unpacked the archives there (COCO's train2014/, val2014/)."""
    folder = raw_folder(source)
    inner = f"{folder}/images"
    return inner if os.path.isdir(inner) or not os.path.isdir(folder) else folder


def prepared(dataset, splits=SPLITS):
    return [f"data/prepared/{dataset}/{split}.jsonl" for split in splits]


def feature_source(dataset):
    """The feature source of a dataset's records (TVC's is TVQA's when config shares them)."""
    return X.feature_source(config, dataset)


def sharing(source):
    """The video datasets whose records refer to ``source``'s sampled videos."""
    return [d for d in VIDEO_DATASETS if feature_source(d) == source]


def video_folder(dataset):
    """Where a video dataset's videos are (config data.videos.<dataset>.folder)."""
    return X.video_settings(config, dataset).get("folder", f"{raw_folder(dataset)}/videos")


def video_args(dataset):
    """--videos, and --frames-fps for released frame folders: where the videos are, as flags."""
    fps = X.video_settings(config, dataset).get("fps")
    return ["--videos", video_folder(dataset)] + (["--frames-fps", str(fps)] if fps else [])


def prepare_args(wildcards):
    """Video datasets: their videos, the missing-video policy, the feature source."""
    d = wildcards.dataset
    if d not in VIDEO_DATASETS:
        return []
    data = config.get("data", {})
    # the policy's defaults are the command's (stop above 1 %): flags only for what is set
    policy = [["--on-missing-video", data["on_missing_video"]]] if "on_missing_video" in data else []
    if "max_missing_videos" in data:
        policy.append(["--max-missing-videos", str(data["max_missing_videos"])])
    return video_args(d) + [flag for pair in policy for flag in pair] + ["--source", feature_source(d)]


def frame_quality_args():
    """--quality when the config sets features.frame_quality (else the command's default)."""
    quality = config["features"].get("frame_quality")
    return ["--quality", str(quality)] if quality is not None else []


def modality_of(source):
    return "video" if source in VIDEO_DATASETS else "image"


def features(source):
    return f"data/features/{source}.{X.name_key(config['backbone'][modality_of(source)])}.h5"


def feature_sources(dataset):
    """The feature sources a dataset's records refer to: the real pre-training corpus
    reuses its datasets' features rather than extracting its images again."""
    if dataset == X.PRETRAIN and not TOY:
        return X.pretrain_feature_sources(PRETRAIN_CORPUS)
    return [feature_source(dataset)]


def datasets_of(modality):
    return IMAGE_DATASETS if modality == "image" else VIDEO_DATASETS


def all_datasets():
    return IMAGE_DATASETS + VIDEO_DATASETS + ([X.PRETRAIN] if PRETRAIN else [])


def sources(modality=None):
    """Feature sources, each once (datasets may share one: a spec's feature_source)."""
    names = []
    for d in all_datasets():
        if modality in (None, "video" if d in VIDEO_DATASETS else "image"):
            names += feature_sources(d)
    return list(dict.fromkeys(names))


def run_of(wildcards):
    return RUNS[(wildcards.lm, wildcards.run)]


def tokenizer():
    """The tokenizer argument: the built word-level one (toy) or the LM's own."""
    return config["tokenizer"]


def all_targets():
    targets = [r.metrics_path for r in RUNS.values()]
    targets += ["results/table.md", "results/scores.csv", "results/params_vs_score.png"]
    if TOY and config["features"].get("probe", False):
        targets += [f"metrics/probe/{s}.json" for s in sources("image")]
    return targets


def success_message():
    return (
        "\nvladapter: done.\n"
        "  table:   results/table.md   (scores: results/scores.csv)\n"
        "  plot:    results/params_vs_score.png, training curves: results/curves.png\n"
        "  report:  report.html (`make run` writes it; else `snakemake --report report.html`)\n"
        "  metrics: metrics/<lm>/<run>.json; compare versions with `dvc metrics diff`\n"
    )


# --- inputs and arguments of rules ----------------------------------------------------


def extract_inputs(wildcards):
    """Sampled frames (videos) or the source's raw images, and the backbone if we train it."""
    model = BACKBONES[wildcards.backbone]
    inputs = {"model": model} if model in TOY_CLIPS else {}
    if wildcards.source in VIDEO_DATASETS:
        inputs["frames"] = f"data/frames/{wildcards.source}.h5"
    else:
        inputs["raw"] = raw(wildcards.source)
    return inputs


def extract_source(wildcards, input):
    if "frames" in input.keys():
        return input.frames
    return f"data/raw/{wildcards.source}/images" if TOY else images_folder(wildcards.source)


def model_inputs(datasets):
    """Prepared records, features and tokenizer that training on ``datasets`` reads."""
    inputs = {
        "records": [p for d in datasets for p in prepared(d, ["train", "val"])],
        "features": sorted({features(s) for d in datasets for s in feature_sources(d)}),
    }
    if tokenizer() == "models/tokenizer":
        inputs["tokenizer"] = "models/tokenizer"
    return inputs


def train_init(run):
    """The backbone a run starts from: the (video) pre-trained one, or None."""
    if not run.pretrained:
        return None
    video = run.modality == "video" and VIDEO_PRETRAIN
    return f"models/pretrain-video/{run.lm}" if video else f"models/pretrain/{run.lm}"


def train_inputs(wildcards):
    run = run_of(wildcards)
    inputs = model_inputs(datasets_of(run.modality))
    if run.pretrained:
        inputs["init"] = train_init(run)
    return inputs


def pretrain_init(stage, lm):
    """The backbone a pre-training stage continues: the matching stage's, the image one's."""
    if stage == "video":
        return f"models/pretrain/{lm}"
    return f"models/pretrain-matching/{lm}" if stage == "pretrain" and MATCHING else None


def pretrain_inputs(wildcards):
    """The pre-training split's data, and the matching stage's backbone when there is one."""
    inputs = model_inputs([X.PRETRAIN])
    if MATCHING:
        inputs["init"] = pretrain_init("pretrain", wildcards.lm)
    return inputs


def pretrain_video_inputs(wildcards):
    """The image-text backbone it continues, and the video captioning data it trains on."""
    datasets = [d for d in VIDEO_DATASETS if X.DATASET_TASK[d] in VIDEO_PRETRAIN]
    return {**model_inputs(datasets), "init": pretrain_init("video", wildcards.lm)}


def settings(stage):
    """params value of a job of ``stage`` (train, pretrain, matching, video, evaluate,
    majority): the canonical JSON of the settings its command receives (``--settings``),
    from vladapter.experiments.job_settings. Snakemake's params trigger compares it, so a
    job reruns exactly when what it receives changes."""

    def value(wildcards):
        if stage in ("evaluate", "majority"):
            extra = {"prepared": "data/prepared"} if stage == "majority" else {}
            return canonical({**X.job_settings(config, "evaluate"), **extra})
        lm = LMS[wildcards.lm]
        if stage == "train":
            run = run_of(wildcards)
            return canonical(X.job_settings(
                config, "train", lm=lm, modality=run.modality, method=run.method,
                tasks=X.tasks(config, run.modality), init=train_init(run), tokenizer=tokenizer_of(lm)))
        video = stage == "video"
        return canonical(X.job_settings(
            config, stage, lm=lm, modality="video" if video else "image",
            tasks=VIDEO_PRETRAIN if video else [X.PRETRAIN], init=pretrain_init(stage, wildcards.lm),
            tokenizer=tokenizer_of(lm)))

    return value


def evaluate_inputs(wildcards):
    run = run_of(wildcards)
    datasets = datasets_of(run.modality)
    return {
        "model": run.model_dir,
        "records": [p for d in datasets for p in prepared(d)],
        "features": sorted({features(feature_source(d)) for d in datasets}),
    }


def tokenizer_of(lm):
    """A job's tokenizer: the word-level one the workflow builds (models/tokenizer), else
    the LM's own (config `tokenizer: null`)."""
    return tokenizer() or lm


def device():
    """Where training and evaluation run: the GPU when the job asks for one."""
    return "cuda" if config["resources"]["train"]["gpu"] else "cpu"
