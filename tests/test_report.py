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
    """The smoke config with a pre-training comparison run (image-single_adapter-nopt)."""
    config = yaml.safe_load(SMOKE.read_text())
    config["pretrain"].update(enabled=True, compare=["single_adapter"])
    return config


def _write_metrics(root: Path, config: dict) -> dict[str, dict]:
    """Metrics of every run as `vladapter evaluate` writes them; distinct scores per run."""
    written = {}
    for i, run in enumerate(experiments.runs(config)):
        tasks = experiments.tasks(config, run.modality)
        scores = {t: 10.0 * (i + 1) + j for j, t in enumerate(tasks)}
        m = {"run": run.name, "lm": run.lm, "method": run.method, "split": "test",
             "params": {"trainable": 1000 * (i + 1), "total": 100000, "percent": (i + 1) * 1.0},
             "tasks": {t: {"accuracy": s, "n": 8} for t, s in scores.items()},
             "scores": scores, "average": sum(scores.values()) / len(scores)}
        path = root / run.metrics_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(m))
        curve = root / run.model_dir / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv"
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
    # single adapter (image, pre-trained): 2nd run -> scores 20, 21, avg 20.5, 2.00 %
    assert "| single adapter | 2.00 | 20.0 | 21.0 | 20.5 |" in table
    assert "| single adapter (no VL pre-training) | 4.00 | 40.0 | 41.0 | 40.5 |" in table
    # the majority baseline closes each modality's table, averaged over its own tasks
    assert "| majority answer (baseline) | - | 12.5 | 50.0 | 31.2 |" in table
    assert "| majority answer (baseline) | - | 20.0 | 20.0 |" in table


def test_scores_csv_rows_match_metrics(smoke_results):
    out, config, written = smoke_results
    rows = list(csv.DictReader(io.StringIO((out / "scores.csv").read_text())))
    assert len(rows) == len(written) + 2  # every run + a majority row per modality
    by_key = {(r["modality"], r["method"], r["pretrained"]): r for r in rows}
    video = by_key[("video", "single_adapter", "1")]
    assert float(video["tvqa"]) == written["video-single_adapter"]["scores"]["tvqa"]
    assert video["vqa"] == ""  # other modality's tasks stay empty
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
            m["tasks"]["tvqa"] = {"n": 8, "labelled": 0, "submission_only": True}
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
