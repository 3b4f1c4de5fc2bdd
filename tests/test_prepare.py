"""`vladapter prepare` on the toy world: prepared splits, summary, bad records, missing media."""

from __future__ import annotations

import json
import shutil

import pytest

from vladapter.cli import main
from vladapter.data.prepare import prepare
from vladapter.data.readers import DATASETS, read_dataset
from vladapter.data.records import DATASET_TASK, Record
from vladapter.data.toyworld import generate
from vladapter.errors import DataError


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy") / "raw"
    generate(root, seed=0, scale="smoke", stats=False)
    return root


@pytest.mark.parametrize("dataset", DATASETS)
def test_prepare_writes_normalised_splits(toy, tmp_path, dataset):
    summary = prepare(dataset, toy, tmp_path)
    out = tmp_path / dataset
    assert json.loads((out / "summary.json").read_text()) == summary
    assert summary["skipped"] == 0 and summary["media_checked"]
    for split in ("train", "val", "test"):
        rows = [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]
        assert len(rows) == summary["counts"][split]
        for row in rows:
            r = Record.from_dict(row)
            assert r.split == split and r.task == DATASET_TASK[dataset]
            assert r.images or r.video
            assert r.targets or dataset == "pretrain" and split == "test"
    assert summary["counts"]["train"] > 0 and summary["counts"]["val"] > 0


def test_prepared_records_carry_what_tasks_need(toy, tmp_path):
    tvqa = read_dataset("tvqa", toy)["test"]
    assert all(len(r.choices) == 5 and r.answer_idx is not None and r.span and r.context for r in tvqa)
    nlvr = read_dataset("nlvr2", toy)["train"]
    assert all(len(r.images) == 2 and r.group for r in nlvr)
    vqa = read_dataset("vqav2", toy)["val"]
    assert all(len(r.references) == 10 and max(r.targets.values()) == 1.0 for r in vqa)
    tvc = read_dataset("tvc", toy)["test"]
    assert all(len(r.references) == 3 and r.span[1] > r.span[0] for r in tvc)


def _corrupt_copy(toy, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(toy / "nlvr2", raw / "nlvr2")
    dev = raw / "nlvr2/dev.json"
    lines = dev.read_text().splitlines()
    lines[1] = json.dumps({**json.loads(lines[1]), "label": "Maybe"})
    dev.write_text("\n".join(lines) + "\n")
    return raw, dev


def test_bad_record_raises_naming_file_record_and_fix(toy, tmp_path):
    raw, dev = _corrupt_copy(toy, tmp_path)
    with pytest.raises(DataError) as err:
        prepare("nlvr2", raw, tmp_path / "prepared")
    msg = str(err.value)
    assert str(dev) in msg and "line 2" in msg and "label True/False" in msg and "fix:" in msg
    assert not (tmp_path / "prepared" / "nlvr2" / "train.jsonl").exists()  # nothing half-written


def test_skip_counts_and_reports(toy, tmp_path, capsys):
    raw, dev = _corrupt_copy(toy, tmp_path)
    next(raw.glob("nlvr2/images/train/*.png")).unlink()
    rc = main(["prepare", "--dataset", "nlvr2", "--raw", str(raw), "--out", str(tmp_path / "p"), "--on-error", "skip"])
    assert rc == 0
    summary = json.loads((tmp_path / "p/nlvr2/summary.json").read_text())
    assert summary["skipped"] == 2
    assert any("missing media file" in reason for reason in summary["skipped_by_reason"])
    assert summary["counts"]["val"] == len(read_dataset("nlvr2", toy)["val"]) - 1
    assert "skipped 2 bad records" in capsys.readouterr().out


def test_cli_missing_raw_exits_2(tmp_path, capsys):
    assert main(["prepare", "--dataset", "tvc", "--raw", str(tmp_path), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert "missing subtitles file" in err and "tvc_subtitles.jsonl" in err and "VALUE release" in err


def test_help_lists_options(capsys):
    with pytest.raises(SystemExit):
        main(["prepare", "--help"])
    out = capsys.readouterr().out
    assert "--on-error" in out and "--no-media-check" in out and "data/prepared" in out
