"""`vladapter report`: Table 1 layout, scores CSV, figures, from metrics files."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from vladapter import experiments
from vladapter.cli import main

SMOKE = Path(__file__).resolve().parents[1] / "config" / "smoke.yaml"


def _config() -> dict:
    """The smoke config with a pre-training comparison run (image-single_adapter-nopt),
    image runs of three seeds and video runs of one."""
    config = yaml.safe_load(SMOKE.read_text())
    config["pretrain"].update(enabled=True, compare=["single_adapter"])
    config["train"].update(seeds=[0, 1, 2])
    config["train"]["video"].update(seeds=[0])
    return config


# the spread of each run's seeds: each score is the run's mean -s, +0, +s over three seeds
SPREAD = {"image-full_finetuning": 9.0, "image-single_adapter": 2.0, "image-single_adapter-nopt": 4.0}


def _write_metrics(root: Path, config: dict) -> dict[str, dict]:
    """Metrics of every run as `vladapter evaluate --seeds` writes them: distinct means per
    run (10 (i + 1) + the task's index), the spread of SPREAD."""
    written = {}
    for i, run in enumerate(experiments.runs(config)):
        tasks = experiments.tasks(config, run.modality)
        scores = {t: 10.0 * (i + 1) + j for j, t in enumerate(tasks)}
        offsets = [-SPREAD[run.name], 0.0, SPREAD[run.name]] if len(run.seeds) == 3 else [0.0]
        seeds = {}
        for seed, offset in zip(run.seeds, offsets):
            own = {t: v + offset for t, v in scores.items()}
            seeds[str(seed)] = {"tasks": {t: {"accuracy": v, "n": 8} for t, v in own.items()}, "scores": own,
                                "average": sum(own.values()) / len(own)}
        m = {"run": run.name, "lm": run.lm, "method": run.method, "split": "test",
             "params": {"trainable": 1000 * (i + 1), "total": 100000, "percent": (i + 1) * 1.0},
             "seeds": seeds, "scores": scores, "average": sum(scores.values()) / len(scores)}
        path = root / run.metrics_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(m))
        curve = root / run.seed_dir(run.seeds[0]) / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv"
        curve.parent.mkdir(parents=True, exist_ok=True)
        curve.write_text("step\tloss\n1\t5.0\n2\t4.0\n3\t3.5\n")
        written[run.name] = m
    majority = {"vqa": 12.5, "nlvr": 50.0, "tvqa": 20.0}
    (root / "metrics" / "majority.json").write_text(json.dumps({"run": "majority", "scores": majority}))
    return written


@pytest.fixture()
def smoke_results(tmp_path):
    config = _config()
    written = _write_metrics(tmp_path, config)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    rc = main(["report", "--config", str(cfg), "--root", str(tmp_path), "--out", str(tmp_path / "results")])
    assert rc == 0
    return tmp_path / "results", config, written


def test_table_has_paper_layout_and_numbers(smoke_results):
    out, config, written = smoke_results
    table = (out / "table.md").read_text()
    assert "## Image-text tasks, tiny-t5" in table and "## Video-text tasks, tiny-t5" in table
    header = next(line for line in table.splitlines() if line.startswith("| Method"))
    assert header.split("|")[1:-1] == [" Method ", " % params ", " VQAv2 (VQA score) ", " NLVR2 (acc.) ", " Avg. "]
    # mean ± sample sd over the seeds; single adapter (image, pre-trained): 2nd run, 2.00 %
    assert "| full fine-tuning | 1.00 | 10.0 ± 9.0 | 11.0 ± 9.0 | 10.5 ± 9.0 |" in table
    assert "| single adapter | 2.00 | 20.0 ± 2.0 | 21.0 ± 2.0 | 20.5 ± 2.0 |" in table
    assert "| single adapter (no VL pre-training) | 4.00 | 40.0 ± 4.0 | 41.0 ± 4.0 | 40.5 ± 4.0 |" in table
    assert "| single adapter (1 seed) | 3.00 | 30.0 | 30.0 |" in table  # the video run: one seed, marked
    # the majority baseline closes each modality's table, averaged over its own tasks
    assert "| majority answer (baseline) | - | 12.5 | 50.0 | 31.2 |" in table
    assert "| majority answer (baseline) | - | 20.0 | 20.0 |" in table


def test_table_says_which_differences_exceed_the_spread(smoke_results):
    out, _, _ = smoke_results
    table = (out / "table.md").read_text()
    # 40.5 - 4 > 20.5 + 2 and > 10.5 + 9; 20.5 - 2 < 10.5 + 9: single adapter vs full FT overlaps
    assert "2 of 3 pairs of runs with several seeds" in table
    assert "- single adapter (no VL pre-training) > single adapter: 40.5 ± 4.0 vs 20.5 ± 2.0" in table
    assert "- single adapter (no VL pre-training) > full fine-tuning: 40.5 ± 4.0 vs 10.5 ± 9.0" in table
    assert "- single adapter > full fine-tuning" not in table
    assert "Fewer than two runs with several seeds" in table  # the video table: one run of one seed


def test_scores_csv_rows_match_metrics(smoke_results):
    out, config, written = smoke_results
    rows = list(csv.DictReader(io.StringIO((out / "scores.csv").read_text())))
    assert len(rows) == len(written) + 2  # every run + a majority row per modality
    by_key = {(r["modality"], r["method"], r["pretrained"]): r for r in rows}
    video = by_key[("video", "single_adapter", "1")]
    assert float(video["tvqa"]) == written["video-single_adapter"]["scores"]["tvqa"]
    assert video["seeds"] == "1" and video["tvqa_sd"] == "" and video["average_sd"] == ""  # no spread
    assert video["vqa"] == ""  # other modality's tasks stay empty
    image = by_key[("image", "single_adapter", "1")]
    assert image["seeds"] == "3"
    assert (float(image["vqa"]), float(image["vqa_sd"])) == (20.0, 2.0)
    assert (float(image["average"]), float(image["average_sd"])) == (20.5, 2.0)
    assert float(by_key[("image", "majority", "")]["average"]) == pytest.approx(31.25)


def test_figures_are_pngs(smoke_results):
    out, _, _ = smoke_results
    for name in ("params_vs_score.png", "curves.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.width > 300


def test_missing_metrics_is_a_clear_error(tmp_path, capsys):
    config = _config()
    _write_metrics(tmp_path, config)
    missing = tmp_path / "metrics" / "tiny-t5" / "image-single_adapter.json"
    missing.unlink()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    rc = main(["report", "--config", str(cfg), "--root", str(tmp_path), "--out", str(tmp_path / "results")])
    err = capsys.readouterr().err
    assert rc == 2
    assert str(missing) in err and "snakemake metrics/tiny-t5/image-single_adapter.json" in err
    assert not (tmp_path / "results" / "table.md").exists()


def test_submission_only_tasks_are_named_not_scored(tmp_path):
    """A run evaluated on a split without labels for TVQA: the table shows "-" there and
    says that TVQA is submission-only; the plot averages over the scored tasks."""
    config = _config()
    written = _write_metrics(tmp_path, config)
    for run in experiments.runs(config):
        if run.modality == "video":
            m = written[run.name]
            for seed in m["seeds"].values():
                seed["tasks"]["tvqa"] = {"n": 8, "labelled": 0, "submission_only": True}
                del seed["scores"]["tvqa"]
                seed["submission_only"] = ["tvqa"]
            del m["scores"]["tvqa"]
            m["submission_only"] = ["tvqa"]
            (tmp_path / run.metrics_path).write_text(json.dumps(m))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    assert main(["report", "--config", str(cfg), "--root", str(tmp_path), "--out", str(tmp_path / "results")]) == 0
    table = (tmp_path / "results" / "table.md").read_text()
    video = table[table.index("## Video-text"):]
    assert "Submission only (the test split has no labels): TVQA" in video
    assert "Submission only" not in table[:table.index("## Video-text")]
    row = next(line for line in video.splitlines() if line.startswith("| single adapter"))
    assert row.split("|")[3].strip() == "-"
