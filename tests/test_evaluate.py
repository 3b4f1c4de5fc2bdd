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
from vladapter.core.config import TrainConfig


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
    from vladapter.core.inputs import Features, encode_sources
    from vladapter.core.model import load_run_tokenizer, load_trained

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
    assert len(json.loads((preds / "tvqa.json").read_text())) == 16
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
    submitted = json.loads((preds / "tvqa.json").read_text())
    assert len(submitted) == len(test) and all(0 <= submitted[r.uid] < len(r.choices) for r in test)
    accuracy = 100 * sum(submitted[r.uid] == r.answer_idx for r in test) / len(test)
    assert json.loads(metrics.read_text())["scores"]["tvqa"] == pytest.approx(accuracy)


def test_splits_without_labels_get_submissions_in_the_published_format(world, trained, tmp_path, real_fixtures):
    """The public TVQA test has no answer_idx, the public TVC test no descriptions, and YC2C
    has no test split: evaluate writes each submission (the formats the VALUE scorers read),
    scores none of them and says so; the labelled tasks are still scored."""
    import shutil

    import h5py
    import numpy as np

    from vladapter.data.readers.common import Problems
    from vladapter.data.readers.tvqa import read_jsonl
    from vladapter.data.readers.value_captions import read_value_jsonl
    from vladapter.utils.io import write_jsonl

    prepared, features = tmp_path / "prepared", tmp_path / "features"
    shutil.copytree(world["prepared"], prepared)
    shutil.copytree(world["features"], features)
    tvqa = read_jsonl(real_fixtures / "tvqa" / "tvqa_test_public.jsonl", Problems(), "test")[:6]
    tvc = read_value_jsonl(real_fixtures / "tvc" / "tvc_test_public_release.jsonl", Problems(), "tvc", "test")[:5]
    write_jsonl(prepared / "tvqa" / "test.jsonl", (r.to_dict() for r in tvqa))
    write_jsonl(prepared / "tvc" / "test.jsonl", (r.to_dict() for r in tvc))
    write_jsonl(prepared / "yc2c" / "test.jsonl", [])
    rng = np.random.default_rng(0)
    for source, recs in (("tvqa", tvqa), ("tvc", tvc), ("yc2c", [])):
        with h5py.File(features / f"{source}.testclip.h5", "a") as f:
            f.attrs.update(backbone="testclip", kind="frames", dim=16, config="{}", preprocessing="{}")
            for r in recs:
                if r.video not in f:
                    ds = f.create_dataset(r.video, data=rng.normal(size=(8, 16)).astype(np.float16))
                    ds.attrs["timestamps"] = np.arange(8, dtype=np.float32) * 12
    out, preds = tmp_path / "metrics.json", tmp_path / "predictions"
    rc = main(["evaluate", "--model", str(trained), "--out", str(out), "--predictions", str(preds),
               "--prepared", str(prepared), "--features", str(features), "--tasks", "vqa", "tvqa", "tvc", "yc2c",
               "--split", "test", "--num-beams", "1", "--max-new-tokens", "5"])
    assert rc == 0
    metrics = json.loads(out.read_text())
    assert metrics["submission_only"] == ["tvqa", "tvc", "yc2c"]
    assert list(metrics["scores"]) == ["vqa"] and metrics["average"] == metrics["scores"]["vqa"]
    assert metrics["tasks"]["tvqa"] == {"n": 6, "labelled": 0, "submission_only": True}
    assert metrics["tasks"]["yc2c"]["n"] == 0

    # TVQA / VALUE QA: one JSON object {"<qid>": answer index} over exactly the public test qids
    published = [json.loads(line) for line in (real_fixtures / "tvqa" / "tvqa_test_public.jsonl").open()][:6]
    submitted = json.loads((preds / "tvqa.json").read_text())
    assert sorted(submitted) == sorted(str(q["qid"]) for q in published)
    assert all(isinstance(v, int) and 0 <= v < 5 for v in submitted.values())
    # TVC: one line per test moment, the keys and types of the published sample predictions
    sample = json.loads((real_fixtures / "tvc" / "sample_val_predictions.jsonl").open().readline())
    lines = [json.loads(line) for line in (preds / "tvc.jsonl").read_text().splitlines()]
    public = [json.loads(line) for line in (real_fixtures / "tvc" / "tvc_test_public_release.jsonl").open()][:5]
    assert [(x["clip_id"], x["vid_name"], x["ts"]) for x in lines] == [
        (p["clip_id"], p["vid_name"], p["ts"]) for p in public]
    for line in lines:
        assert set(line) == set(sample) and {type(v) for v in line.values()} <= {int, str, list}
        assert [set(d) for d in line["descs"]] == [{"desc"}] and isinstance(line["descs"][0]["desc"], str)
    assert (preds / "yc2c.jsonl").read_text() == ""


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
        submitted = json.loads((preds / f"seed-{s}" / "tvqa.json").read_text())
        assert len(submitted) == metrics["seeds"][s]["tasks"]["tvqa"]["n"] > 0


def test_a_run_on_fresh_base_weights_is_evaluated_on_the_base_it_trained_on(world, tmp_path, capsys):
    """A PETL run without VL pre-training trains on a base of fresh weights, which its file
    does not hold: evaluation rebuilds that very base, whatever the process drew before (it
    rebuilt another one, and the run scored like an untrained model). A base that cannot be
    rebuilt any more is refused, naming the run."""
    from vladapter.core.model import load_trained
    from vladapter.utils.digest import state_digest

    torch.set_num_threads(1)
    run = tmp_path / "tiny-t5" / "image-single_adapter-nopt"
    assert main(["train", "--method", "single_adapter", "--tasks", "vqa", "--steps", "2", "--batch-size", "4",
                 "--checkpoint-every", "0", "--seed", "3", "--prepared", str(world["prepared"]),
                 "--features", str(world["features"]), "--tokenizer", str(world["tokenizer"]),
                 "--out", str(run)]) == 0
    info = json.loads((run / "train.json").read_text())
    torch.manual_seed(12345)
    torch.rand(7)  # another process state than training's
    model, _ = load_trained(run)
    assert state_digest(model, frozen_only=True) == info["base_state"]

    info["config"]["seed"] = 4  # as if the base were another draw
    (run / "train.json").write_text(json.dumps(info))
    capsys.readouterr()
    assert main(["evaluate", "--model", str(run), "--out", str(tmp_path / "m.json"),
                 "--predictions", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert str(run) in err and "base_state" in err and "Traceback" not in err
    assert not (tmp_path / "m.json").exists()


def test_an_exported_run_reloads_and_evaluates_to_identical_metrics(world, trained, tmp_path):
    """`vladapter export` writes a self-contained folder (tensors, model card, base sha256) that
    `vladapter evaluate` scores exactly as it scores the run it came from; a changed file is refused."""
    def evaluate(model, name):
        out = tmp_path / f"{name}.json"
        assert main(["evaluate", "--model", str(model), "--out", str(out), "--predictions",
                     str(tmp_path / f"pred-{name}"), "--num-beams", "1", "--batch-size", "16"]) == 0
        return json.loads(out.read_text())

    original = evaluate(trained, "original")
    metrics = tmp_path / "original.json"
    export = tmp_path / "shared" / "tiny-t5-full_finetuning"
    assert main(["export", "--model", str(trained), "--metrics", str(metrics), "--out", str(export)]) == 0
    manifest = json.loads((export / "export.json").read_text())
    info = json.loads((trained / "train.json").read_text())
    assert manifest["base"]["sha256"] == info["base_state"] and manifest["method"] == "full_finetuning"
    assert sorted(manifest["files"]) == ["adapter.safetensors", "method.json", "metrics.json", "train.json"]
    card = (export / "README.md").read_text()
    assert "full_finetuning" in card and f"{original['average']:.2f}" in card and "vladapter evaluate" in card
    again = evaluate(export, "again")
    assert again["tasks"] == original["tasks"] and again["scores"] == original["scores"]
    for task in ("vqa.json", "nlvr.csv", "caption.json"):
        assert (tmp_path / "pred-again" / task).read_bytes() == (tmp_path / "pred-original" / task).read_bytes()

    (export / "adapter.safetensors").write_bytes((export / "adapter.safetensors").read_bytes()[:-8])
    rc = main(["evaluate", "--model", str(export), "--out", str(tmp_path / "x.json"), "--predictions",
               str(tmp_path / "x"), "--num-beams", "1"])
    assert rc == 2 and not (tmp_path / "x.json").exists()
