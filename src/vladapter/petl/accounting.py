"""Trainable / total parameters of every PETL preset, counted the paper's way.

The model counted is the whole VL model: the language model with its 200 added
``<vis_extra_id_i>`` token rows, the visual embedding and the method's modules (not
CLIP). Image tasks use 2048-d CLIP RN101 grid features, video tasks 512-d CLIP ViT-B/32
frame vectors; 4 tasks each. Models are built on the meta device (no memory, no weights).
"""

from __future__ import annotations

import argparse
import json

from vladapter.errors import ConfigError

# The paper's setups as its Table 1 counts them: feature size, visual tokens and its four
# tasks per modality. Fixed here, not the registered datasets (vladapter.data.datasets):
# a dataset added to this repository must not change the paper's % column.
PAPER_TASKS = {"image": ("vqa", "gqa", "nlvr", "caption"), "video": ("tvqa", "how2qa", "tvc", "yc2c")}
MODALITIES = {"image": (2048, 36, PAPER_TASKS["image"]), "video": (512, 64, PAPER_TASKS["video"])}
BYTES_PER_PARAM = 4  # checkpoints hold float32 tensors


def parameter_table(lm: str = "bart-base", modality: str = "image", presets=None) -> list[dict]:
    """One row per preset: trainable, total, percent, the paper's % (VL-BART; VL-T5 where a
    later method's paper gives one) where it has one, and the size of the checkpoint ``petl.save`` writes (MB, float32)."""
    from vladapter import petl
    from vladapter.models import build_vl_model

    if modality not in MODALITIES:
        raise ConfigError(f"unknown --tasks {modality!r}; choose from {', '.join(MODALITIES)}")
    feat_dim, n_tokens, tasks = MODALITIES[modality]
    rows = []
    for name in presets or petl.PRESETS:
        preset = petl.PRESETS[name]
        model = build_vl_model(lm, feat_dim=feat_dim, n_vis_tokens=n_tokens, device="meta")
        petl.apply(model, name, tasks=tasks)
        n = petl.count(model)
        paper = ((preset.paper_percent if model.family == "bart" else preset.paper_percent_t5) or {}).get(modality)
        rows.append({
            "method": name, "row": preset.row, "trainable": n.trainable, "total": n.total,
            "percent": round(n.percent, 4), "paper_percent": paper,
            "checkpoint_mb": round(n.trainable * BYTES_PER_PARAM / 2**20, 2),
        })
    return rows


def format_table(rows: list[dict], lm: str, modality: str) -> str:
    lines = [f"# {lm}, {modality} tasks",
             f"{'method':<22} {'trainable':>13} {'total':>13} {'%':>8} {'paper %':>8} {'ckpt MB':>9}",
             "-" * 78]
    for r in rows:
        paper = "" if r["paper_percent"] is None else f"{r['paper_percent']:.2f}"
        lines.append(f"{r['method']:<22} {r['trainable']:>13,} {r['total']:>13,} {r['percent']:>8.2f} "
                     f"{paper:>8} {r['checkpoint_mb']:>9.1f}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lm", default="bart-base",
                        help="architecture: bart-base, t5-base, tiny-bart, tiny-t5 (default: %(default)s)")
    parser.add_argument("--tasks", default="image", choices=sorted(MODALITIES),
                        help="image (2048-d grid features) or video (512-d frame features) (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--out", default=None, help="also write the JSON to this file")


def run(args: argparse.Namespace) -> int:
    from vladapter.utils.io import write_json

    rows = parameter_table(args.lm, args.tasks)
    result = {"lm": args.lm, "tasks": args.tasks, "methods": rows}
    if args.out:
        write_json(args.out, result)
    print(json.dumps(result, indent=2) if args.json else format_table(rows, args.lm, args.tasks))
    return 0
