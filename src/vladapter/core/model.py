"""The model a run trains or evaluates: its tokenizer, building it, loading a trained run,
and the autocast precision it computes in (one place for train, pretrain and evaluate)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from vladapter.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where used: commands' --help stays fast
    import torch

    from vladapter.core.inputs import Features, TaskData

log = logging.getLogger(__name__)

TRAIN_INFO = "train.json"
ADAPTER_FILE = "adapter.safetensors"


def load_run_tokenizer(tokenizer: str | None, lm: str):
    """The tokenizer folder/name, or the language model's own tokenizer when empty."""
    from vladapter.models import lm_spec, load_tokenizer

    name = tokenizer or lm_spec(lm).checkpoint
    if not name:
        raise ConfigError(f"{lm} has no tokenizer of its own; pass --tokenizer models/tokenizer")
    return load_tokenizer(name)


def feature_dim(features: Features, data: dict[str, TaskData], expected: int | None = None) -> int | None:
    """The visual feature size of the records' feature files, read from one record of each
    feature source. Files of different sizes (features of two backbones), or of another size
    than ``expected`` (the trained model's), are a DataError naming each file and its size:
    a model reads one size. None when there are no records (and no ``expected``)."""
    from vladapter.errors import DataError

    first = {}
    for td in data.values():
        for record in td.records:
            first.setdefault(record.source, record)
    sizes = {}
    for source, record in first.items():
        feats, _, _ = features.visual(record)
        sizes[features.path(source)] = int(feats.shape[-1])
    listed = ", ".join(f"{path}: {dim}" for path, dim in sizes.items())
    if len(set(sizes.values())) > 1:
        raise DataError(f"the feature files of this run's records have different sizes ({listed}); one model "
                        "reads features of one size", path=features.features,
                        fix="extract every source with the same backbone and name it (--backbone NAME reads "
                            "<source>.NAME.h5), or train on the tasks of one backbone's features")
    dim = next(iter(sizes.values()), expected)
    if expected is not None and dim != expected:
        raise DataError(f"the model was trained on {expected}-d features, these are {dim}-d ({listed})",
                        path=features.features,
                        fix="evaluate on features of the backbone the run was trained on (--features, --backbone)")
    return dim


def n_visual_tokens(features: Features, tasks) -> int:
    from vladapter.data.records import VIDEO_TASKS

    return features.n_video_frames if all(t in VIDEO_TASKS for t in tasks) else features.n_image_tokens


def build_model(lm: str, init: str | None, feat_dim: int, n_vis_tokens: int, vocab_size: int,
                random_init: bool = False):
    """The VL-pre-trained backbone in ``init``, else a VL model of ``lm`` with the weights of
    its checkpoint (any LM but the toy architectures), or fresh ones when ``random_init``."""
    from vladapter.models import VLModel, build_vl_model, lm_spec

    if init:
        model = VLModel.from_pretrained(init)
        if model.vl_config["text_vocab"] != vocab_size:
            raise ConfigError(f"pre-trained backbone {init} has a vocabulary of {model.vl_config['text_vocab']} "
                              f"tokens, the tokenizer {vocab_size}; pre-train again with this tokenizer")
        if model.vl_config["feat_dim"] != feat_dim:
            # e.g. image pre-training on RN101 grids (2048) then video runs on ViT-B/32 frames (512):
            # the visual embedding (which always trains) starts afresh, the language model is kept
            log.warning("pre-trained backbone %s has feat_dim %d, the features %d: the visual embedding is "
                        "re-initialised for %d-d features (the language model keeps its pre-trained weights)",
                        init, model.vl_config["feat_dim"], feat_dim, feat_dim)
            model.reset_visual(feat_dim)
        return model
    pretrained = lm_spec(lm).checkpoint is not None and not random_init
    return build_vl_model(lm, feat_dim=feat_dim, n_vis_tokens=n_vis_tokens, vocab_size=vocab_size,
                          pretrained=pretrained)


def set_dropout(model: torch.nn.Module, p: float) -> None:
    """Set every dropout probability of the model (nn.Dropout modules and HF float attributes)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p
        for attr in ("dropout", "attention_dropout", "activation_dropout"):
            if isinstance(getattr(module, attr, None), float):
                setattr(module, attr, p)


def read_train_info(run_dir: str | Path) -> dict:
    path = Path(run_dir) / TRAIN_INFO
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a finished training run (no {TRAIN_INFO}); run `vladapter train` first")
    return json.loads(path.read_text())


def load_trained(run_dir: str | Path, device: torch.device | str = "cpu", base: str | Path | None = None):
    """(model, train info) of a finished run: the base model rebuilt (from ``base`` when given: where the
    VL pre-trained backbone it was trained on lives on this machine), the trained weights loaded."""
    from vladapter import petl

    import torch

    from vladapter.utils.digest import state_digest

    run_dir = Path(run_dir)
    info = read_train_info(run_dir)
    cfg = info["config"]
    # seeded as training seeds it (train/job.py): a base of fresh weights (a toy LM, a run
    # without VL pre-training, random_init) is the same base only when drawn alike
    torch.manual_seed(cfg.get("seed", 0))
    init = str(base) if base is not None else cfg.get("init")
    model = build_model(cfg["lm"], init, info["feat_dim"], info["n_vis_tokens"], info["vocab_size"],
                        cfg.get("random_init", False))
    petl.load(model, run_dir / ADAPTER_FILE)
    expected = info.get("base_state")
    if expected and state_digest(model, frozen_only=True) != expected:
        raise ConfigError(f"{run_dir} was trained on other frozen weights than the ones rebuilt now from "
                          f"{init or cfg['lm']} (train.json base_state): the checkpoint or backbone "
                          "folder changed since training; train the run again, or point it at the weights it "
                          "was trained on (vladapter evaluate --base DIR)")
    return model.to(device).eval(), info


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device`` (None: float32, no autocast).

    auto: bf16 on a GPU that computes it natively, fp16 (with a GradScaler) on one that does
    not (V100, T4), fp32 on CPU (vladapter.utils.precision).
    """
    import torch

    from vladapter.utils.precision import auto_dtype

    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    return auto_dtype(device)
