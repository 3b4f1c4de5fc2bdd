"""`vladapter params` reproduces the paper's % column (VL-BART) with the paper's accounting."""

from __future__ import annotations

import json

import pytest

from vladapter import petl
from vladapter.cli import main
from vladapter.models import build_vl_model
from vladapter.petl.accounting import parameter_table

# PAPER.md, VL-BART, image-text (4 tasks) and video-text
PAPER_IMAGE = {
    "multiple_adapters": 12.22, "half_shared_adapters": 8.36, "single_adapter": 4.18, "hyperformer": 5.79,
    "multiple_compacters": 7.05, "single_compacter": 2.70, "multiple_lora": 17.72, "single_lora": 5.93,
    "multiple_prompts": 4.53, "single_prompt": 2.00, "visual_projection": 1.14, "layernorms": 1.18,
    "full_finetuning": 100.0,
}
PAPER_VIDEO = {"single_adapter": 3.39, "single_lora": 5.17}
# later methods on the benchmark: VL-PET's Table 2 (VL-BART and VL-T5), DoRA's VL table (VL-BART)
LATER_IMAGE = {"bart-base": {"vl_pet_large": 4.16, "vl_pet_small": 2.98, "vl_pet_middle_x": 2.98,
                             "vl_pet_middle_y": 2.98, "dora": 5.96},
               "t5-base": {"vl_pet_large": 7.31, "vl_pet_small": 4.51, "vl_pet_middle_x": 4.50,
                           "vl_pet_middle_y": 4.50}}
LATER_VIDEO = {"dora": 5.19}


@pytest.fixture(scope="module")
def bart_image():
    return {r["method"]: r for r in parameter_table("bart-base", "image")}


@pytest.mark.parametrize("method", sorted(PAPER_IMAGE))
def test_bart_image_percentages_match_the_paper(bart_image, method):
    assert bart_image[method]["percent"] == pytest.approx(PAPER_IMAGE[method], abs=0.05)


def test_bart_video_percentages_match_the_paper():
    rows = {r["method"]: r for r in parameter_table("bart-base", "video", presets=list(PAPER_VIDEO))}
    for method, paper in PAPER_VIDEO.items():
        assert rows[method]["percent"] == pytest.approx(paper, abs=0.05)


@pytest.mark.parametrize("lm", sorted(LATER_IMAGE))
def test_later_methods_match_their_papers(lm):
    rows = {r["method"]: r for r in parameter_table(lm, "image", presets=list(LATER_IMAGE[lm]))}
    for method, paper in LATER_IMAGE[lm].items():
        assert rows[method]["paper_percent"] == paper
        assert rows[method]["percent"] == pytest.approx(paper, abs=0.05), method
    if lm == "bart-base":
        # VL-PET-middleY by hand: visual embedding + 12 encoder adapters (768x96+96 + 96x768+768)
        # + 6 value adapters (same size) + 13 encoder LayerNorms (1,536) + 12 vectors of 768
        assert rows["vl_pet_middle_y"]["trainable"] == 1_582_848 + 18 * 148_320 + 13 * 1_536 + 12 * 768
        # DoRA: visual embedding + 36 x (LoRA 2x128x768 + magnitude 768) + every bias + LN weights
        dora = 36 * (2 * 128 * 768 + 768)
        assert rows["dora"]["trainable"] == 1_582_848 + dora + 125_952 + 32 * 768
        assert rows["dora"]["total"] == 141_156_864 + dora


def test_dora_video_matches_its_paper():
    rows = {r["method"]: r for r in parameter_table("bart-base", "video", presets=list(LATER_VIDEO))}
    for method, paper in LATER_VIDEO.items():
        assert rows[method]["percent"] == pytest.approx(paper, abs=0.05)


def test_the_worked_check_of_the_paper(bart_image):
    # BART-base 139,420,416 + 200 token rows x 768; single adapter: visual embedding
    # 1,582,848 + 30 adapters x 148,320 + 32 LayerNorms x 1,536 = 6.08M of 145.6M
    model = build_vl_model("bart-base", feat_dim=2048, n_vis_tokens=36, device="meta")
    assert sum(p.numel() for p in model.lm.parameters()) == 139_420_416 + 200 * 768
    assert sum(p.numel() for p in model.visual.parameters()) == 1_582_848
    row = bart_image["single_adapter"]
    assert row["trainable"] == 1_582_848 + 30 * 148_320 + 32 * 1_536
    assert row["total"] == 139_420_416 + 153_600 + 1_582_848 + 30 * 148_320
    assert row["paper_percent"] == 4.18


def test_full_finetuning_trains_everything_and_visual_projection_only_the_embedding(bart_image):
    full, visual = bart_image["full_finetuning"], bart_image["visual_projection"]
    assert full["trainable"] == full["total"] == visual["total"]
    assert visual["trainable"] == 1_582_848


def test_cli_writes_json_for_t5(tmp_path, capsys):
    out = tmp_path / "params.json"
    assert main(["params", "--lm", "t5-base", "--tasks", "image", "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads(out.read_text())
    assert printed == saved and saved["lm"] == "t5-base"
    rows = {r["method"]: r for r in saved["methods"]}
    assert set(rows) == set(petl.PRESETS)
    # t5-base: 12+12 layers -> 24 + 36 = 60 adapters of 148,320; no biases anywhere in T5
    assert rows["single_adapter"]["trainable"] - rows["layernorms"]["trainable"] == 60 * 148_320
    assert rows["bitfit"]["trainable"] == rows["visual_projection"]["trainable"]
    # the VL-Adapter paper's % is for VL-BART; VL-PET's paper gives VL-T5's too, LST's VL-T5's only
    assert {m for m, r in rows.items() if r["paper_percent"] is not None} == {*LATER_IMAGE["t5-base"], "lst"}
    assert rows["lst"]["paper_percent"] == 7.46


def test_cli_table_and_errors(capsys):
    assert main(["params", "--lm", "bart-base", "--tasks", "video"]) == 0
    table = capsys.readouterr().out
    assert "single_adapter" in table and "3.39" in table
    assert main(["params", "--lm", "bart-large-xl"]) == 2
    assert "unknown language model 'bart-large-xl'" in capsys.readouterr().err


def test_paper_configs_give_the_later_methods_their_papers_recipes(repo):
    import yaml

    from vladapter.experiments import job_settings, tasks

    def recipe(name, modality, lm, method):
        config = yaml.safe_load((repo / "config" / name).read_text())
        assert method in config["methods"][modality]
        s = job_settings(config, "train", lm=lm, modality=modality, method=method, tasks=tasks(config, modality))
        return (s["lr"], s["batch_size"]) + ((s["weight_decay"],) if method == "lst" else ())

    for gate in ("large", "small", "middle_x", "middle_y"):  # VL-PET's scripts: BART 1e-3 / 500, T5 3e-4 / 300
        assert recipe("paper-image.yaml", "image", "facebook/bart-base", f"vl_pet_{gate}") == (1e-3, 500)
        assert recipe("paper-image.yaml", "image", "t5-base", f"vl_pet_{gate}") == (3e-4, 300)
    assert recipe("paper-image.yaml", "image", "facebook/bart-base", "dora") == (1e-3, 300)  # DoRA's scripts
    assert recipe("paper-video.yaml", "video", "facebook/bart-base", "dora") == (2.4e-4, 40)
    assert recipe("paper-image.yaml", "image", "t5-base", "single_adapter") == (1e-3, 500)  # the others: unchanged
    # LST's VL script: lr 3e-3, VL-T5 batch 300 (VL-BART 500), weight decay 0.03
    assert recipe("paper-image.yaml", "image", "t5-base", "lst") == (3e-3, 300, 0.03)
    assert recipe("paper-image.yaml", "image", "facebook/bart-base", "lst") == (3e-3, 500, 0.03)
    config = yaml.safe_load((repo / "config" / "paper-image.yaml").read_text())
    assert job_settings(config, "train", lm="t5-base", modality="image", method="single_adapter",
                        tasks=tasks(config, "image"))["weight_decay"] == 0.01
