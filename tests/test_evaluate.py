"""Evaluation: candidate scoring, the evaluate command's outputs, the majority baseline."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest
import torch

import vl_world
from vladapter.cli import main
from vladapter.data.records import Record
from vladapter.metrics import vqa_accuracy
from vladapter.train.config import TrainConfig


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return vl_world.build(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    """A full fine-tuning run on the tiny world (about 10 s)."""
    from vladapter.train.run import train

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("models") / "tiny-t5" / "full_finetuning"
    cfg = TrainConfig(method="full_finetuning", tasks=["vqa", "nlvr", "caption", "tvqa"], lr=1e-3, steps=90,
                      batch_size=8, prepared=str(world["prepared"]), features=str(world["features"]),
                      tokenizer=str(world["tokenizer"]), n_video_frames=8, checkpoint_every=0)
    train(cfg, out)
    return out


def records(world, dataset, split):
    lines = (world["prepared"] / dataset / f"{split}.jsonl").read_text().splitlines()
    return [Record.from_dict(json.loads(line)) for line in lines]


def test_candidate_scores_are_the_sequence_log_likelihoods(world, trained):
    from vladapter.evaluate.predict import candidate_log_likelihoods
    from vladapter.tasks import get_task
    from vladapter.train.data import Features, encode_sources
    from vladapter.train.model import load_run_tokenizer, load_trained

    model, info = load_trained(trained)
    tok = load_run_tokenizer(str(world["tokenizer"]), "tiny-t5")
    feats = Features(world["features"], None, 16, 8)
    recs = records(world, "tvqa", "test")[:3]
    task = get_task("tvqa")
    batch = encode_sources(tok, task, recs, feats, prefix=info["task_prefix"])
    cands = [task.candidates(r) for r in recs]
    scores = candidate_log_likelihoods(model, batch, cands, tok)
    assert scores.shape == (3, 5)
    with torch.no_grad():  # the same number from the model's own mean token loss
        for i, r in enumerate(recs):
            for j, c in enumerate(cands[i]):
                labels = torch.tensor([tok(c)["input_ids"]])
                out = model(**{k: batch[k][i:i + 1] for k in ("input_ids", "attention_mask", "vis_feats",
                                                              "vis_mask", "img_order")}, labels=labels, task="tvqa")
                assert scores[i, j].item() == pytest.approx(-out.loss.item() * labels.shape[1], rel=1e-4)


def test_evaluate_command_writes_metrics_and_submissions(world, trained, tmp_path):
    out, preds = tmp_path / "metrics.json", tmp_path / "predictions"
    rc = main(["evaluate", "--model", str(trained), "--out", str(out), "--predictions", str(preds),
               "--num-beams", "1", "--batch-size", "16"])
    assert rc == 0
    metrics = json.loads(out.read_text())
    assert metrics["run"] == "full_finetuning" and metrics["method"] == "full_finetuning"
    assert set(metrics["scores"]) == {"vqa", "nlvr", "caption", "tvqa"}
    assert metrics["average"] == pytest.approx(sum(metrics["scores"].values()) / 4)
    assert metrics["tasks"]["nlvr"].keys() == {"accuracy", "consistency", "n"}
    assert metrics["params"]["percent"] == pytest.approx(100.0)
    assert metrics["tasks"]["vqa"]["n"] == 16

    vqa = json.loads((preds / "vqa.json").read_text())
    assert [set(v) for v in vqa] == [{"question_id", "answer"}] * 16
    # the written answers give the reported score
    refs = {r.uid: r.references for r in records(world, "vqav2", "test")}
    mean = sum(vqa_accuracy(v["answer"], refs[v["question_id"]]) for v in vqa) / len(vqa)
    assert metrics["scores"]["vqa"] == pytest.approx(100 * mean)
    rows = list(csv.reader((preds / "nlvr.csv").open()))
    assert len(rows) == 16 and {r[1] for r in rows} <= {"True", "False"}
    assert len((preds / "tvqa.jsonl").read_text().splitlines()) == 16
    assert {"image_id", "caption"} == set(json.loads((preds / "caption.json").read_text())[0])

    # the colour is in the features: a trained model is far above the majority baseline
    majority = tmp_path / "majority.json"
    assert main(["evaluate", "--majority", "--datasets", "vqav2,coco", "--prepared", str(world["prepared"]),
                 "--out", str(majority)]) == 0
    base = json.loads(majority.read_text())["scores"]
    assert metrics["scores"]["vqa"] > base["vqa"] + 40
    assert metrics["scores"]["caption"] > base["caption"] + 30


def test_majority_baseline_matches_hand_count(world, tmp_path):
    out = tmp_path / "majority.json"
    assert main(["evaluate", "--majority", "--datasets", "vqav2,nlvr2,tvqa", "--prepared", str(world["prepared"]),
                 "--split", "test", "--out", str(out)]) == 0
    result = json.loads(out.read_text())

    train_vqa = Counter(max(r.targets, key=r.targets.get) for r in records(world, "vqav2", "train"))
    answer = max(train_vqa.items(), key=lambda kv: (kv[1], kv[0]))[0]
    assert result["answers"]["vqa"] == answer
    test_vqa = records(world, "vqav2", "test")
    assert result["scores"]["vqa"] == pytest.approx(100 * sum(vqa_accuracy(answer, r.references) for r in test_vqa)
                                                    / len(test_vqa))
    label = Counter(next(iter(r.targets)) for r in records(world, "nlvr2", "train")).most_common(1)[0][0]
    test_nlvr = records(world, "nlvr2", "test")
    assert result["scores"]["nlvr"] == pytest.approx(100 * sum(next(iter(r.targets)) == label for r in test_nlvr)
                                                     / len(test_nlvr))
    assert result["answers"]["tvqa"].startswith("a")


def test_unknown_majority_dataset_is_an_error(tmp_path, capsys):
    assert main(["evaluate", "--majority", "--datasets", "vqa3", "--out", str(tmp_path / "m.json")]) == 2
    assert "vqa3" in capsys.readouterr().err


def test_text_target_video_qa_trains_and_evaluates_by_choice_words(world, tmp_path):
    """qa_target=text: the run learns the choices' words; evaluate reads the target from the
    run's train.json, scores the choices' texts and still submits their indices."""
    from vladapter.train.run import train

    torch.set_num_threads(1)
    out = tmp_path / "tiny-t5" / "video-text"
    cfg = TrainConfig(method="full_finetuning", tasks=["tvqa"], lr=1e-3, steps=10, batch_size=8,
                      prepared=str(world["prepared"]), features=str(world["features"]),
                      tokenizer=str(world["tokenizer"]), n_video_frames=8, checkpoint_every=0, qa_target="text")
    train(cfg, out)
    assert json.loads((out / "train.json").read_text())["config"]["qa_target"] == "text"
    metrics, preds = tmp_path / "m.json", tmp_path / "p"
    assert main(["evaluate", "--model", str(out), "--out", str(metrics), "--predictions", str(preds)]) == 0
    test = records(world, "tvqa", "test")
    submitted = [json.loads(line) for line in (preds / "tvqa.jsonl").read_text().splitlines()]
    assert len(submitted) == len(test) and all(0 <= s["answer_idx"] < len(r.choices) for s, r in zip(submitted, test))
    accuracy = 100 * sum(s["answer_idx"] == r.answer_idx for s, r in zip(submitted, test)) / len(test)
    assert json.loads(metrics.read_text())["scores"]["tvqa"] == pytest.approx(accuracy)


def test_seeds_train_and_evaluate_in_one_process_each(world, tmp_path):
    """train --seeds: one model per seed (seed-<n>/); the same seed again gives the same
    bytes; evaluate --seeds: every seed's scores and their mean, predictions per seed."""
    torch.set_num_threads(1)
    data = ["--prepared", str(world["prepared"]), "--features", str(world["features"]),
            "--tokenizer", str(world["tokenizer"]), "--n-video-frames", "8"]
    common = ["train", "--method", "single_adapter", "--tasks", "tvqa", "--steps", "6", "--batch-size", "8",
              "--lr", "1e-3", "--checkpoint-every", "0", *data]
    run, again = tmp_path / "tiny-t5" / "video-single_adapter", tmp_path / "again"
    assert main([*common, "--out", str(run), "--seeds", "0", "1"]) == 0
    assert main([*common, "--out", str(again), "--seeds", "1"]) == 0
    weights = {s: (run / f"seed-{s}" / "adapter.safetensors").read_bytes() for s in (0, 1)}
    assert weights[0] != weights[1]
    for name in ("adapter.safetensors", "method.json", "train.json"):  # no timing in the run folder
        assert (again / "seed-1" / name).read_bytes() == (run / "seed-1" / name).read_bytes()
    assert [json.loads((run / f"seed-{s}" / "train.json").read_text())["config"]["seed"] for s in (0, 1)] == [0, 1]

    out, preds = tmp_path / "metrics.json", tmp_path / "predictions"
    assert main(["evaluate", "--model", str(run), "--seeds", "0", "1", "--out", str(out),
                 "--predictions", str(preds)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["run"] == "video-single_adapter" and set(metrics["seeds"]) == {"0", "1"}
    per_seed = [metrics["seeds"][s]["scores"]["tvqa"] for s in ("0", "1")]
    assert metrics["scores"]["tvqa"] == pytest.approx(sum(per_seed) / 2)
    for s in ("0", "1"):
        submitted = (preds / f"seed-{s}" / "tvqa.jsonl").read_text().splitlines()
        assert len(submitted) == metrics["seeds"][s]["tasks"]["tvqa"]["n"] > 0
