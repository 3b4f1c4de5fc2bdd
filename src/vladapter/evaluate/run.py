"""Generate and score a trained run with the official metrics (`vladapter evaluate`).

    vladapter evaluate --model models/tiny-t5/single_adapter          # metrics + predictions
    vladapter evaluate --majority --datasets vqav2,gqa,nlvr2,coco --out metrics/majority.json

Writes the metrics JSON (default metrics/<lm>/<run>.json):

    {"run", "lm", "method", "split", "params": {trainable, total, percent},
     "tasks": {task: {metric: value, ..., "n": examples}},
     "scores": {task: headline metric}, "average": mean of the headline metrics,
     "submission_only": [tasks whose split has no labels], "submissions": {split: {task: file}}}

(percentages; CIDEr x 100) and the predictions in each benchmark's submission format
under --predictions: vqa.json [{question_id, answer}], gqa.json [{questionId,
prediction}], nlvr.csv (identifier,prediction), caption.json [{image_id, caption}],
tvqa/how2qa.json {"<qid>": answer_idx}, tvc/yc2c.jsonl {clip_id, vid_name, ts, descs}.
The submission is written first, for every task: a split whose labels are withheld (the
public TVQA / TVC test sets) or that is empty is *submission-only*: no metric, listed in
``submission_only``, left out of ``scores`` and the average. ``evaluate.submit`` names
further splits that are only predicted, into <predictions>/<split>/.
--majority scores the train-majority answer of each task with the same metrics.

With --seeds, --model holds one trained model per seed (seed-<n>/, `vladapter train
--seeds`): each is scored in this process, predictions go to <predictions>/seed-<n>/, and
the metrics JSON holds every seed's {"tasks", "scores", "average"} under "seeds" and
their means as "scores" and "average" (the report adds the spread).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from statistics import mean

from vladapter.data.records import DATASET_TASK
from vladapter.errors import ConfigError
from vladapter.core.config import EvaluateConfig, add_config_flags, load_section, overrides_from


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML config; its `evaluate` section is read (flags override it)")
    parser.add_argument("--settings", help="the `evaluate` settings as one JSON object, taken as they are (what a "
                        "workflow job receives; instead of --config)")
    parser.add_argument("--model", help="trained run folder (models/<lm>/<run>)")
    parser.add_argument("--out", help="metrics JSON (default: metrics/<lm>/<run>.json)")
    parser.add_argument("--predictions", help="folder for submission files (default: predictions/<lm>/<run>)")
    parser.add_argument("--majority", action="store_true",
                        help="score the train-majority answer baseline instead of a model")
    parser.add_argument("--datasets", nargs="+",
                        help="datasets of the majority baseline, e.g. vqav2,gqa,nlvr2,coco (default: all)")
    parser.add_argument("--device", help="cpu | cuda (default: cuda when available)")
    parser.add_argument("--base", help="folder of the base weights the run was trained on, when not where train.json "
                        "says (an exported run on another machine); its frozen weights must match the recorded sha256")
    parser.add_argument("--seeds", nargs="+", type=int,
                        help="score the model of each seed in --model/seed-<n> (vladapter train --seeds)")
    add_config_flags(parser, EvaluateConfig)


def run(args: argparse.Namespace) -> int:
    cfg = load_section(args.config, "evaluate", EvaluateConfig, overrides_from(args, EvaluateConfig),
                       settings=args.settings)
    if args.majority:
        datasets = [d for item in (args.datasets or list(DATASET_TASK)) for d in item.split(",") if d]
        unknown = [d for d in datasets if d not in DATASET_TASK or d == "pretrain"]
        if unknown:
            raise ConfigError(f"unknown datasets {unknown} (known: {', '.join(k for k in DATASET_TASK if k != 'pretrain')})")
        metrics = majority_baseline([DATASET_TASK[d] for d in datasets], cfg, Path(args.out or "metrics/majority.json"))
    else:
        if not args.model:
            raise ConfigError("give --model <run folder> (or --majority)")
        model_dir = Path(args.model)
        run_name, lm_name = model_dir.name, model_dir.parent.name
        out = Path(args.out or f"metrics/{lm_name}/{run_name}.json")
        predictions = Path(args.predictions or f"predictions/{lm_name}/{run_name}")
        metrics = evaluate_run(model_dir, cfg, out, predictions, device=args.device, seeds=args.seeds,
                               base=args.base)
    for task, score in metrics["scores"].items():
        print(f"{task:>8}: {score:7.2f}")
    for task in metrics["submission_only"]:
        print(f"{task:>8}: submission only (the {metrics['split']} split has no labels)")
    if metrics["average"] is not None:
        print(f" average: {metrics['average']:7.2f}")
    for split, files in metrics.get("submissions", {}).items():
        print(f"submissions ({split}): {', '.join(files.values())}")
    return 0


def _with_run_defaults(cfg: EvaluateConfig, train_cfg: dict) -> EvaluateConfig:
    import dataclasses

    fill = {k: train_cfg.get(k) for k in ("prepared", "features", "backbone", "tokenizer", "n_image_tokens",
                                           "n_video_frames") if getattr(cfg, k) is None}
    return dataclasses.replace(cfg, **fill, tasks=cfg.tasks or list(train_cfg["tasks"]))


def evaluate_run(model_dir: str | Path, cfg: EvaluateConfig, out: str | Path, predictions_dir: str | Path,
                 device: str | None = None, seeds: list[int] | None = None, base: str | None = None) -> dict:
    """Predict ``cfg.split`` (and every ``cfg.submit`` split) with the trained run in
    ``model_dir``; writes each task's submission file, then the metrics of the tasks whose
    split has labels (the others are listed as submission-only). With ``seeds``: the model
    of each seed (``model_dir/seed-<n>``, predictions in ``predictions_dir/seed-<n>``), each
    seed's metrics under "seeds" and their means as "scores" and "average". An exported run
    (``vladapter export``) is checked against its manifest and scores the seeds it holds;
    ``base`` names where its base weights live when not where its train.json says."""
    import torch

    from vladapter.evaluate.export import read_export, verify_export

    from vladapter.experiments import seed_dir
    from vladapter.core.model import load_trained
    from vladapter.utils.io import ensure_writable, write_json

    # generating takes long: a folder that cannot be written must stop us before, not after
    ensure_writable(Path(out).parent)
    ensure_writable(predictions_dir)
    exported = read_export(model_dir)
    if exported is not None:
        verify_export(model_dir, exported)
        seeds = seeds if seeds is not None else exported["seeds"]
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    folders = {None: str(model_dir)} if seeds is None else {s: seed_dir(str(model_dir), s) for s in seeds}
    per_seed = {}
    for seed, folder in folders.items():
        model, info = load_trained(folder, dev, base=base)
        predictions = Path(predictions_dir if seed is None else seed_dir(str(predictions_dir), seed))
        per_seed[seed] = _evaluate_model(model, info, _with_run_defaults(cfg, info["config"]), predictions, dev,
                                         "" if seed is None else f", seed {seed}")
    train_cfg = info["config"]
    metrics = {"run": Path(model_dir).name, "lm": train_cfg["lm"], "method": train_cfg["method"],
               "split": cfg.split, "params": info.get("params")}
    if seeds is None:
        metrics.update(per_seed[None])
    else:
        first = per_seed[seeds[0]]  # every seed has the same tasks and splits
        scores = {t: mean(m["scores"][t] for m in per_seed.values()) for t in first["scores"]}
        average = None if first["average"] is None else mean(m["average"] for m in per_seed.values())
        metrics.update(seeds={str(s): m for s, m in per_seed.items()}, scores=scores, average=average,
                       submission_only=first["submission_only"])
    write_json(out, metrics)
    return metrics


def _evaluate_model(model, info: dict, cfg: EvaluateConfig, predictions_dir: Path, dev, label: str = "") -> dict:
    """One trained model's submissions (written) and metrics (returned: tasks, scores,
    average, submission_only, submissions)."""
    from vladapter.core.config import task_options
    from vladapter.core.inputs import Features, load_task_data
    from vladapter.core.model import feature_dim, load_run_tokenizer

    from vladapter.evaluate.predict import predict

    train_cfg = info["config"]
    tokenizer = load_run_tokenizer(cfg.tokenizer, train_cfg["lm"])
    features = Features(cfg.features, cfg.backbone, cfg.n_image_tokens, cfg.n_video_frames)
    options = {**task_options(train_cfg), "vqa_evaluator": cfg.vqa_evaluator}
    per_task, submissions, data = {}, {}, {}
    for split in dict.fromkeys([cfg.split, *cfg.submit]):
        scored = split == cfg.split
        folder = predictions_dir if scored else predictions_dir / split
        split_data = load_task_data(cfg.prepared, cfg.tasks, split, cfg.max_examples, options, allow_empty=True)
        feature_dim(features, split_data, info["feat_dim"])  # the model's size, before generating
        for name, td in split_data.items():
            preds = predict(model, td.task, td.records, tokenizer, features, prefix=info["task_prefix"],
                            batch_size=cfg.batch_size, num_beams=cfg.num_beams,
                            max_new_tokens=cfg.max_new_tokens, device=dev, desc=f"evaluate {name} ({split}{label})",
                            precision=cfg.precision)
            # the submission first: a split without labels still yields the leaderboard file
            path = td.task.write_submission(folder / name, preds, td.records)
            submissions.setdefault(split, {})[name] = str(path)
            if scored:
                per_task[name] = score_task(td, preds)
        if scored:
            data = split_data
    return {**_summary(per_task, data), "submissions": submissions}


def score_task(td, predictions: list[str]) -> dict:
    """The task's metrics on its records, or ``submission_only`` when the split has no labels
    (every record must have one: a partly labelled split is not scored either)."""
    labelled = sum(map(td.task.has_label, td.records))
    if not td.records or labelled < len(td.records):
        return {"n": len(td.records), "labelled": labelled, "submission_only": True}
    return {**td.task.score(predictions, td.records), "n": len(td.records)}


def majority_baseline(tasks: list[str], cfg: EvaluateConfig, out: str | Path) -> dict:
    """Each task's train-majority answer, scored on ``cfg.split`` with the task's metric."""
    from vladapter.core.inputs import load_task_data
    from vladapter.utils.io import ensure_writable, write_json

    ensure_writable(Path(out).parent)
    prepared = cfg.prepared or "data/prepared"
    train = load_task_data(prepared, tasks, "train")
    test = load_task_data(prepared, tasks, cfg.split, cfg.max_examples, {"vqa_evaluator": cfg.vqa_evaluator},
                           allow_empty=True)
    per_task, answers = {}, {}
    for name, td in test.items():
        answers[name] = td.task.majority(train[name].records)
        per_task[name] = score_task(td, [answers[name]] * len(td.records))
    metrics = {"run": "majority", "split": cfg.split, "answers": answers, **_summary(per_task, test)}
    write_json(out, metrics)
    return metrics


def _summary(per_task: dict, data: dict) -> dict:
    """Headline scores of the scored tasks, their mean, and the tasks that were only submitted."""
    only = [name for name, m in per_task.items() if m.get("submission_only")]
    scores = {name: m[data[name].task.metric] for name, m in per_task.items() if name not in only}
    average = sum(scores.values()) / len(scores) if scores else None
    return {"tasks": per_task, "scores": scores, "average": average, "submission_only": only}
