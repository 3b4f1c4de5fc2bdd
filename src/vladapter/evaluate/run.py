"""Generate and score a trained run with the official metrics (`vladapter evaluate`).

    vladapter evaluate --model models/tiny-t5/single_adapter          # metrics + predictions
    vladapter evaluate --majority --datasets vqav2,gqa,nlvr2,coco --out metrics/majority.json

Writes the metrics JSON (default metrics/<lm>/<run>.json):

    {"run", "lm", "method", "split", "params": {trainable, total, percent},
     "tasks": {task: {metric: value, ..., "n": examples}},
     "scores": {task: headline metric}, "average": mean of the headline metrics}

(percentages; CIDEr x 100) and the predictions in each benchmark's submission format
under --predictions: vqa.json [{question_id, answer}], gqa.json [{questionId,
prediction}], nlvr.csv (identifier,prediction), caption.json [{image_id, caption}],
tvqa/how2qa.jsonl {qid, answer_idx}, tvc/yc2c.jsonl {clip_id, vid_name, ts, descs}.
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
from vladapter.train.config import EvaluateConfig, add_config_flags, load_section, overrides_from


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
        metrics = evaluate_run(model_dir, cfg, out, predictions, device=args.device, seeds=args.seeds)
    for task, score in metrics["scores"].items():
        print(f"{task:>8}: {score:7.2f}")
    print(f" average: {metrics['average']:7.2f}")
    return 0


def _with_run_defaults(cfg: EvaluateConfig, train_cfg: dict) -> EvaluateConfig:
    import dataclasses

    fill = {k: train_cfg.get(k) for k in ("prepared", "features", "backbone", "tokenizer", "n_image_tokens",
                                           "n_video_frames") if getattr(cfg, k) is None}
    return dataclasses.replace(cfg, **fill, tasks=cfg.tasks or list(train_cfg["tasks"]))


def evaluate_run(model_dir: str | Path, cfg: EvaluateConfig, out: str | Path, predictions_dir: str | Path,
                 device: str | None = None, seeds: list[int] | None = None) -> dict:
    """Score the trained run in ``model_dir`` on ``cfg.split``; writes metrics and predictions.
    With ``seeds``: the model of each seed (``model_dir/seed-<n>``), on data loaded once."""
    import torch

    from vladapter.experiments import seed_dir
    from vladapter.train.config import task_options
    from vladapter.train.data import Features, load_task_data
    from vladapter.train.model import load_run_tokenizer, load_trained
    from vladapter.utils.io import ensure_writable, write_json

    from vladapter.evaluate.predict import predict

    # generating takes long: a folder that cannot be written must stop us before, not after
    ensure_writable(Path(out).parent)
    ensure_writable(predictions_dir)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    folders = {None: str(model_dir)} if seeds is None else {s: seed_dir(str(model_dir), s) for s in seeds}
    per_seed, data = {}, None
    for seed, folder in folders.items():
        model, info = load_trained(folder, dev)
        if data is None:  # every seed of a run has the same data settings
            train_cfg = info["config"]
            cfg = _with_run_defaults(cfg, train_cfg)
            tokenizer = load_run_tokenizer(cfg.tokenizer, train_cfg["lm"])
            features = Features(cfg.features, cfg.backbone, cfg.n_image_tokens, cfg.n_video_frames)
            options = {**task_options(train_cfg), "vqa_evaluator": cfg.vqa_evaluator}
            data = load_task_data(cfg.prepared, cfg.tasks, cfg.split, cfg.max_examples, options)
        predictions = Path(predictions_dir if seed is None else seed_dir(str(predictions_dir), seed))
        per_task = {}
        for name, td in data.items():
            preds = predict(model, td.task, td.records, tokenizer, features, prefix=info["task_prefix"],
                            batch_size=cfg.batch_size, num_beams=cfg.num_beams, max_new_tokens=cfg.max_new_tokens,
                            device=dev, desc=f"evaluate {name}" + ("" if seed is None else f" (seed {seed})"))
            per_task[name] = {**td.task.score(preds, td.records), "n": len(td.records)}
            td.task.write_submission(predictions / name, preds, td.records)
        per_seed[seed] = _summary(per_task, data)
    metrics = {"run": Path(model_dir).name, "lm": train_cfg["lm"], "method": train_cfg["method"],
               "split": cfg.split, "params": info.get("params")}
    if seeds is None:
        metrics.update(per_seed[None])
    else:
        scores = {t: mean(m["scores"][t] for m in per_seed.values()) for t in per_seed[seeds[0]]["scores"]}
        metrics.update(seeds={str(s): m for s, m in per_seed.items()}, scores=scores,
                       average=mean(m["average"] for m in per_seed.values()))
    write_json(out, metrics)
    return metrics


def majority_baseline(tasks: list[str], cfg: EvaluateConfig, out: str | Path) -> dict:
    """Each task's train-majority answer, scored on ``cfg.split`` with the task's metric."""
    from vladapter.train.data import load_task_data
    from vladapter.utils.io import ensure_writable, write_json

    ensure_writable(Path(out).parent)
    prepared = cfg.prepared or "data/prepared"
    train = load_task_data(prepared, tasks, "train")
    test = load_task_data(prepared, tasks, cfg.split, cfg.max_examples, {"vqa_evaluator": cfg.vqa_evaluator})
    per_task, answers = {}, {}
    for name, td in test.items():
        answers[name], scores = td.task.majority_baseline(train[name].records, td.records)
        per_task[name] = {**scores, "n": len(td.records)}
    metrics = {"run": "majority", "split": cfg.split, "answers": answers, **_summary(per_task, test)}
    write_json(out, metrics)
    return metrics


def _summary(per_task: dict, data: dict) -> dict:
    scores = {name: per_task[name][data[name].task.metric] for name in per_task}
    return {"tasks": per_task, "scores": scores, "average": sum(scores.values()) / max(1, len(scores))}
