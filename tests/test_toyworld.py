"""The toy world: layout, determinism, readable media, balanced answers, honest subtitles."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import Counter
from pathlib import Path

import decord
import numpy as np
import pytest
from PIL import Image

from vladapter.cli import main
from vladapter.data.readers import DATASETS, read_dataset
from vladapter.data.toyworld import SCALES, generate
from vladapter.data.toyworld import datasets as ds
from vladapter.data.toyworld.scene import COLOURS, SHAPES, SIZES, Shape, render
from vladapter.data.toyworld.video import DIRECTIONS, FPS, frames, write_mp4
from vladapter.errors import ConfigError

LAYOUT = [
    "coco/dataset_coco.json", "coco/toy_attributes.json",
    "vqav2/v2_OpenEnded_mscoco_train2014_questions.json", "vqav2/v2_OpenEnded_mscoco_val2014_questions.json",
    "vqav2/v2_mscoco_train2014_annotations.json", "vqav2/v2_mscoco_val2014_annotations.json",
    "gqa/train_balanced_questions.json", "gqa/val_balanced_questions.json", "gqa/testdev_balanced_questions.json",
    "nlvr2/train.json", "nlvr2/dev.json", "nlvr2/test1.json",
    "tvqa/tvqa_train.jsonl", "tvqa/tvqa_val.jsonl", "tvqa/tvqa_test_public.jsonl", "tvqa/tvqa_subtitles.jsonl",
    "how2qa/how2QA_train_release.csv", "how2qa/how2QA_val_release.csv", "how2qa/how2QA_test_public_release.csv",
    "how2qa/how2qa_subtitles.jsonl",
    "tvc/tvc_train_release.jsonl", "tvc/tvc_val_release.jsonl", "tvc/tvc_test_public_release.jsonl",
    "tvc/tvc_subtitles.jsonl",
    "yc2c/yc2c_train_release.jsonl", "yc2c/yc2c_val_release.jsonl", "yc2c/yc2c_test_release.jsonl",
    "yc2c/yc2c_subtitles.jsonl",
    "pretrain/dataset_pretrain.json", "pretrain/pretrain_qa.json", "toy_stats.json",
]


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy") / "raw"
    generate(root, seed=0, scale="smoke", workers=2)
    return root


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_is_the_architecture_contract(toy):
    for rel in LAYOUT:
        assert (toy / rel).is_file(), rel
    stems = {p.stem for p in (toy / "coco/images/train2014").glob("*.jpg")}
    assert stems and all(re.fullmatch(r"COCO_train2014_\d{12}", s) for s in stems)
    assert list((toy / "coco/images/val2014").glob("COCO_val2014_*.jpg"))
    assert all(re.fullmatch(r"(train|dev|test1)-\d+-\d+-img[01]", p.stem) for p in (toy / "nlvr2/images").rglob("*.png"))
    for name in ("tvqa", "how2qa", "tvc", "yc2c"):
        assert len(list((toy / name / "videos").glob("*.mp4"))) == sum(getattr(SCALES["smoke"], name).values())


def test_same_seed_same_bytes_other_seed_differs(toy, tmp_path):
    again = tmp_path / "again"
    generate(again, seed=0, scale="smoke", workers=1, stats=False)  # serial vs the pool: same bytes
    first, second = _digests(toy), _digests(again)
    del first["toy_stats.json"], second["toy_stats.json"]
    assert first == second
    other = tmp_path / "other"
    generate(other, seed=1, scale="smoke", workers=2, stats=False)
    third = _digests(other)
    assert third["coco/dataset_coco.json"] != first["coco/dataset_coco.json"]


def test_one_clip_encoded_again_and_again_gives_the_same_bytes(tmp_path):
    # x264's macroblock-tree made about 1 in 8 encodes of this clip differ (within one process)
    clip = next(job[2] for job in ds.build_tvqa(0, SCALES["smoke"].tvqa).jobs if job[1].endswith("test_public_00000.mp4"))
    video = frames(clip)
    digests = set()
    for i in range(16):
        write_mp4(tmp_path / f"{i}.mp4", video)
        digests.add(hashlib.sha256((tmp_path / f"{i}.mp4").read_bytes()).hexdigest())
    assert len(digests) == 1


def test_images_are_64px_in_the_published_file_types(toy):
    for pattern, fmt in (("coco/images/*/*.jpg", "JPEG"), ("gqa/images/*.jpg", "JPEG"),
                         ("nlvr2/images/*/*.png", "PNG"), ("pretrain/images/*.jpg", "JPEG")):
        paths = sorted(toy.glob(pattern))[:5]
        assert paths, pattern
        for p in paths:
            with Image.open(p) as img:
                assert (img.format, img.size, img.mode) == (fmt, (64, 64), "RGB")


@pytest.mark.parametrize("shape", SHAPES)
def test_small_shapes_span_two_8px_patches(shape):
    img = np.asarray(render([Shape(shape, "red", "small", 32, 32)], (70, 70, 75)))
    ys, xs = np.nonzero((img != (70, 70, 75)).any(-1))
    assert xs.max() - xs.min() + 1 >= 13 and ys.max() - ys.min() + 1 >= 13
    assert SIZES["small"] * 2 >= 16 and SIZES["large"] * 2 >= 24


def test_videos_are_mp4_readable_by_decord(toy):
    subs = {json.loads(line)["vid_name"] for line in (toy / "tvqa/tvqa_subtitles.jsonl").read_text().splitlines()}
    for p in sorted((toy / "tvqa/videos").glob("*.mp4"))[:3]:
        vr = decord.VideoReader(str(p))
        assert vr.get_avg_fps() == pytest.approx(FPS)
        assert 6 * FPS <= len(vr) <= 12 * FPS
        assert vr[0].shape == (64, 64, 3)
        assert p.stem in subs
        frames = vr.get_batch(list(range(len(vr)))).asnumpy().astype(int)
        assert np.abs(frames[1:] - frames[:-1]).max() > 50  # something moves, appears or changes


def test_vqa_has_ten_human_answers_with_types(toy):
    anns = json.loads((toy / "vqav2/v2_mscoco_train2014_annotations.json").read_text())["annotations"]
    qs = json.loads((toy / "vqav2/v2_OpenEnded_mscoco_train2014_questions.json").read_text())["questions"]
    assert {a["question_id"] for a in anns} == {q["question_id"] for q in qs}
    assert all(q["question_id"] // 1000 == q["image_id"] for q in qs)
    for a in anns:
        answers = [x["answer"] for x in a["answers"]]
        assert len(answers) == 10 and [x["answer_id"] for x in a["answers"]] == list(range(1, 11))
        assert Counter(answers)[a["multiple_choice_answer"]] >= 6
        assert a["answer_type"] in ("yes/no", "number", "other") and a["question_type"]
    assert sum(len(set(x["answer"] for x in a["answers"])) > 1 for a in anns) > len(anns) // 3  # disagreement


def test_nlvr2_groups_several_pairs_with_balanced_labels():
    built = ds.build_nlvr2(3, {"train": 400}, 4)
    rows = [json.loads(line) for line in built.files["nlvr2/train.json"].splitlines()]
    by_sentence = Counter(r["identifier"].rsplit("-", 2)[0] for r in rows)
    assert len(rows) == 400 and set(by_sentence.values()) == {4}
    labels = Counter(r["label"] for r in rows)
    assert labels["True"] == labels["False"] == 200


def test_multiple_choice_answers_are_uniform_and_subtitles_do_not_leak():
    built = ds.build_tvqa(5, {"train": 150})
    rows = [json.loads(line) for line in built.files["tvqa/tvqa_train.jsonl"].splitlines()]
    idx = Counter(r["answer_idx"] for r in rows)
    assert set(idx) == set(range(5)) and max(idx.values()) / len(rows) < 0.3
    assert all(len({r[f"a{i}"] for i in range(5)}) == 5 for r in rows)
    words = set(COLOURS) | set(SHAPES) | set(DIRECTIONS)
    for line in built.files["tvqa/tvqa_subtitles.jsonl"].splitlines():
        for sub in json.loads(line)["sub"]:
            assert not words & set(re.findall(r"[a-z]+", sub["text"].lower())), sub["text"]
    how2qa = ds.build_how2qa(5, {"val": 20}).files["how2qa/how2QA_val_release.csv"]
    assert {len(row) for row in csv.reader(io.StringIO(how2qa))} == {7}


def test_every_dataset_reads_back_and_baselines_are_low(toy):
    stats = json.loads((toy / "toy_stats.json").read_text())["datasets"]
    for name in DATASETS:
        splits = read_dataset(name, toy, check_media=True)
        assert splits["train"] and splits["val"], name
        assert stats[name]["counts"] == {s: len(r) for s, r in splits.items()}
    assert stats["vqav2"]["majority_baseline"] < 35
    assert stats["tvqa"]["majority_baseline"] < 50
    assert 0.4 <= stats["nlvr2"]["true_fraction_train"] <= 0.6


def test_cli_writes_toy_world(tmp_path, capsys):
    assert main(["toyworld", "--out", str(tmp_path), "--scale", "smoke", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "vqav2" in out and "majority baseline" in out
    assert json.loads((tmp_path / "toy_stats.json").read_text())["seed"] == 2
    attrs = json.loads((tmp_path / "gqa/toy_attributes.json").read_text())
    one = next(iter(attrs.values()))
    assert {"colour", "shape", "size", "count", "position"} <= set(one)


def test_regenerating_removes_stale_media_and_spares_real_data(tmp_path):
    generate(tmp_path / "raw", seed=0, scale="smoke", stats=False)
    stale = tmp_path / "raw/tvqa/videos/old_clip.mp4"
    stale.write_bytes(b"x")
    generate(tmp_path / "raw", seed=0, scale="smoke", stats=False)
    assert not stale.exists() and (tmp_path / "raw/toy_stats.json").exists()
    real = tmp_path / "real"
    (real / "gqa/images").mkdir(parents=True)
    (real / "gqa/images/n1.jpg").write_bytes(b"real")
    with pytest.raises(ConfigError, match="not a toy world"):
        generate(real, seed=0, scale="smoke")
    assert (real / "gqa/images/n1.jpg").read_bytes() == b"real"
