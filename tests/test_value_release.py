"""VALUE's release as a source: its annotation layout and subtitles (real How2QA / YC2C samples,
tests/fixtures/real/value), its released CLIP features, and its submission format."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from vladapter import experiments
from vladapter.data.layout import RawLayout
from vladapter.data.readers import Problems, read_dataset
from vladapter.data.videos import VideoFolder, check_videos
from vladapter.errors import ConfigError, DataError
from vladapter.features.released import import_features
from vladapter.features.store import FeatureStore
from vladapter.tasks.value import check_submission, submission_name


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _subtitles(path: Path, names) -> None:
    """A subtitles file in VALUE's documented schema (DataRelease DATA.md), 2 lines per video."""
    _write_jsonl(path, ({"vid_name": n, "sub": [{"text": f" A : first {n}", "start": 0.5, "end": 2.0},
                                                 {"text": f"second {n}", "start": 40.0, "end": 41.5}]}
                        for n in names))


@pytest.fixture()
def value_how2qa(tmp_path, real_fixtures) -> Path:
    """VALUE's ann/ as download_how2_annotations.sh writes it: val is the real file's first 60
    lines; train and test_public are written from them (test_public without answer_idx)."""
    ann = tmp_path / "value" / "ann"
    val = _jsonl(real_fixtures / "value/ann/how2qa/how2qa_val_release.jsonl")
    shutil.copytree(real_fixtures / "value/ann/how2qa", ann / "how2qa")
    _write_jsonl(ann / "how2qa/how2qa_train_release.jsonl", [{**r, "qid": r["qid"] + 100000} for r in val[:20]])
    _write_jsonl(ann / "how2qa/how2qa_test_public_release.jsonl",
                 [{k: v for k, v in r.items() if k != "answer_idx"} | {"qid": r["qid"] + 200000} for r in val[20:40]])
    _subtitles(ann / "how2_subtitles.jsonl", sorted({r["vid_name"] for r in val}))
    return ann


def test_how2qa_from_value_keeps_its_qids_and_choice_order(value_how2qa):
    """VALUE's How2QA: the records are the file's questions, with its qids and its a0..a3 order
    (HERO's CSV puts the answer at a hashed position under row-numbered uids)."""
    splits = read_dataset("how2qa", RawLayout(value_how2qa.parent / "raw", {"how2qa": value_how2qa / "how2qa"}))
    rows = _jsonl(value_how2qa / "how2qa/how2qa_val_release.jsonl")
    val = splits["val"]
    assert [r.uid for r in val] == [str(row["qid"]) for row in rows]  # VALUE's qids, in the file's order
    assert len(val) == 60
    for r, row in zip(val, rows):
        assert r.choices == [row[f"a{i}"].strip() for i in range(4)]  # VALUE's order, not reshuffled
        assert r.answer_idx == row["answer_idx"] and r.targets == {row[f"a{row['answer_idx']}"].strip(): 1.0}
        assert r.video == row["vid_name"] and r.span == [float(x) for x in row["ts"].split("-")]
    first = val[0]  # the real first line: "What website is shown during this video?", answer a2
    assert (first.uid, first.video, first.answer_idx) == ("30351", "25848", 2)
    assert first.choices[2] == "Www.lyndaleplants.com."
    # subtitles from VALUE's ann/how2_subtitles.jsonl, cut to the span (36.58-58.52 holds the 2nd line)
    assert first.context == "second 25848"
    # positions as released: the answers are not all at one hashed place
    assert len({r.answer_idx for r in val}) == 4
    test = splits["test"]
    assert len(test) == 20 and all(r.answer_idx is None and not r.targets for r in test)
    assert len(splits["train"]) == 20


def test_tvqa_and_tvc_test_splits_read_value_test_release_and_test_public_once(tmp_path, real_fixtures):
    """VALUE merged TVQA's (and TVC's) test-public into test_release; both files may lie in
    ann/tvqa: every test question is read once; either file alone also works."""
    ann = tmp_path / "ann"
    public = _jsonl(real_fixtures / "tvqa/tvqa_test_public.jsonl")[:6]
    labelled = [{**r, "answer_idx": 1} for r in public]
    _write_jsonl(ann / "tvqa/tvqa_train.jsonl", labelled[:3])
    _write_jsonl(ann / "tvqa/tvqa_val.jsonl", labelled[3:])
    _write_jsonl(ann / "tvqa/tvqa_test_public.jsonl", public[:4])
    private = [{**r, "qid": r["qid"] + 10**6} for r in public[:3]]  # test-private questions, beside the public ones
    _write_jsonl(ann / "tvqa/tvqa_test_release.jsonl", public[:4] + private)
    _subtitles(ann / "tv_subtitles.jsonl", {r["vid_name"] for r in public})
    layout = RawLayout(tmp_path / "raw", {"tvqa": ann / "tvqa", "tvc": ann / "tvc"})
    test = read_dataset("tvqa", layout)["test"]
    assert [r.uid for r in test] == [str(r["qid"]) for r in public[:4] + private]
    # subtitles from VALUE's ann/tv_subtitles.jsonl (the lines inside each question's span)
    assert any(r.context for r in test) and all(r.video in r.context for r in test if r.context)
    (ann / "tvqa/tvqa_test_release.jsonl").unlink()
    assert [r.uid for r in read_dataset("tvqa", layout)["test"]] == [str(r["qid"]) for r in public[:4]]

    moments = _jsonl(real_fixtures / "tvc/tvc_test_public_release.jsonl")[:5]
    described = [{**m, "descs": [{"desc": "a man talks .", "desc_id": i}]} for i, m in enumerate(moments)]
    _write_jsonl(ann / "tvc/tvc_train_release.jsonl", described[:2])
    _write_jsonl(ann / "tvc/tvc_val_release.jsonl", described[2:])
    _write_jsonl(ann / "tvc/tvc_test_release.jsonl", moments + [{**moments[0], "clip_id": 1}])
    _subtitles(ann / "tv_subtitles.jsonl", {m["vid_name"] for m in moments})
    tvc = read_dataset("tvc", layout)
    assert [r.uid for r in tvc["test"]] == [str(m["clip_id"]) for m in moments] + ["1"]
    assert tvc["val"][0].references == ["a man talks ."]


def test_yc2c_from_value_real_annotations_and_subtitles(tmp_path, real_fixtures):
    """VALUE's YC2C: one segment clip per vid_name, no ts (the whole clip), clip_id as uid;
    subtitles from ann/yc2_subtitles.jsonl."""
    ann = tmp_path / "ann"
    rows = _jsonl(real_fixtures / "value/ann/yc2c/yc2c_val_release.jsonl")
    shutil.copytree(real_fixtures / "value/ann/yc2c", ann / "yc2c")
    _write_jsonl(ann / "yc2c/yc2c_train_release.jsonl", rows[:10])
    _write_jsonl(ann / "yc2c/yc2c_test_release.jsonl", [{k: v for k, v in r.items() if k != "descs"} for r in rows[:5]])
    _subtitles(ann / "yc2_subtitles.jsonl", {r["vid_name"] for r in rows})
    splits = read_dataset("yc2c", RawLayout(tmp_path / "raw", {"yc2c": ann / "yc2c"}))
    val = splits["val"]
    assert [r.uid for r in val] == [str(r["clip_id"]) for r in rows]
    assert val[0].video == "ljyO7IaGWLY_10" and val[0].span is None
    assert val[0].references == ["layer marinara sauce and pierogies"]
    # the whole clip's subtitles (VALUE's lines start with a space, as in " Chase : ...")
    assert val[0].context.split() == "A : first ljyO7IaGWLY_10 second ljyO7IaGWLY_10".split()
    assert len(splits["test"]) == 5 and all(not r.references for r in splits["test"])


# ------------------------------------------------------------------ the submission format


def test_value_sample_submissions_pass_the_format_check(real_fixtures):
    """The check accepts VALUE's own sample submissions against their reference answers."""
    value = real_fixtures / "value"
    qids = [r["qid"] for r in _jsonl(value / "ann/how2qa/how2qa_val_release.jsonl")]
    assert check_submission("how2qa", value / "submission_data_sample/how2qa/how2qa_val_predictions.json", qids) == 60
    solution = json.loads((value / "reference_data/tvqa/tvqa_val_solution.json").read_text())["solution"]
    tvqa_qids = [q for show in solution.values() for q in show]
    assert check_submission("tvqa", value / "submission_data_sample/tvqa/tvqa_val_predictions.json", tvqa_qids) == 48
    clips = [r["clip_id"] for r in _jsonl(value / "ann/yc2c/yc2c_val_release.jsonl")]
    assert check_submission("yc2c", value / "submission_data_sample/yc2c/yc2c_val_predictions.jsonl", clips) == 60
    assert check_submission("tvc", value / "submission_data_sample/tvc/tvc_test_predictions.jsonl") == 60
    assert submission_name("how2qa", "test") == "how2qa/how2qa_test_public_predictions.json"
    assert submission_name("tvc", "val") == "tvc/tvc_val_predictions.jsonl"


@pytest.mark.parametrize("task, content, ids, message", [
    ("how2qa", {"1": 4}, [1], "not a choice index 0-3"),          # How2QA has 4 choices (a0..a3)
    ("tvqa", {"1": "2"}, [1], "not a choice index 0-4"),          # indices are ints
    ("tvqa", {"val-3": 1}, None, "not a question id"),            # HERO-CSV-style uids are no qids
    ("how2qa", {"1": 0, "2": 1}, [1, 2, 3], "1 missing (first: [3])"),  # the scorer asserts the qid set
    ("tvqa", [1, 2], None, "one JSON object"),
    ("tvc", [{"clip_id": 5, "descs": []}], None, "descs must be a non-empty list"),
    ("yc2c", [{"clip_id": "7", "descs": [{"desc": "x"}]}], None, "integer clip_id"),
    ("tvc", [{"clip_id": 5, "descs": [{"desc": "a"}]}] * 2, None, "more than once"),
    ("yc2c", [{"clip_id": 5, "descs": [{"desc": "a"}]}], [5, 6], "1 missing"),
])
def test_submission_format_check_names_what_the_scorer_would_reject(tmp_path, task, content, ids, message):
    path = tmp_path / f"{task}.{'json' if task in ('tvqa', 'how2qa') else 'jsonl'}"
    if path.suffix == ".json":
        path.write_text(json.dumps(content))
    else:
        path.write_text("".join(json.dumps(c) + "\n" for c in content))
    with pytest.raises(DataError) as e:
        check_submission(task, path, ids)
    assert message in str(e.value) and str(path) in str(e.value)


# ------------------------------------------------------------------ released features


def _npz(folder: Path, vid: str, n: int, seed: int = 0, dim: int = 512) -> np.ndarray:
    """A feature file as HERO's clip/extract.py writes it: np.savez(features=float16 (T, 512))."""
    features = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float16)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / f"{vid}.npz", features=features)
    return features


def test_released_features_become_the_feature_store_of_their_records(tmp_path):
    folder = tmp_path / "vis_features" / "tv" / "clip-vit"
    a = _npz(folder, "s01e01_seg02_clip_00", 40, seed=1)       # 60 s of video: 40 vectors, one per 1.5 s
    b = _npz(folder / "nested", "friends_s01e01_seg02_clip_01", 3, seed=2)
    _npz(folder, "not_in_the_records", 5)
    out = tmp_path / "tvqa.clip-vit-base-patch32.h5"
    report = import_features(folder, ["s01e01_seg02_clip_00", "friends_s01e01_seg02_clip_01"], out, progress=False)
    assert (report.written, report.frames) == (2, 43)
    with h5py.File(out) as f:
        assert sorted(f) == ["friends_s01e01_seg02_clip_01", "s01e01_seg02_clip_00"]  # only the records' videos
        assert f["s01e01_seg02_clip_00"].dtype == np.float16 and f.attrs["kind"] == "frames"
        np.testing.assert_array_equal(f["s01e01_seg02_clip_00"].attrs["timestamps"][:3], [0.0, 1.5, 3.0])
    store = FeatureStore(out, n_tokens=8)
    assert store.dim == 512 and len(store) == 2
    # a span keeps the vectors whose implied time is inside it: 3.0 .. 9.0 s -> vectors 2..6
    tokens, mask = store.video("s01e01_seg02_clip_00", [3.0, 9.0])
    assert mask.tolist() == [True] * 5 + [False] * 3
    np.testing.assert_array_equal(tokens[:5], a[2:7].astype(np.float32))
    # the whole clip: 40 vectors max-pooled to 8 tokens; 3 vectors zero-padded
    tokens, mask = store.video("s01e01_seg02_clip_00")
    assert mask.all() and np.allclose(tokens[0], a[:5].astype(np.float32).max(0))
    tokens, mask = store.video("friends_s01e01_seg02_clip_01")
    assert mask.sum() == 3 and np.allclose(tokens[:3], b.astype(np.float32)) and not tokens[3:].any()
    with pytest.raises(DataError, match="no feature file"):
        import_features(folder, ["gone"], tmp_path / "other.h5", progress=False)


def test_missing_and_unreadable_feature_files_go_into_the_videos_report(tmp_path):
    """prepare's media check for a feature folder: the same report and policy as for videos."""
    from vladapter.data.records import Record

    folder = tmp_path / "clip-vit"
    _npz(folder, "ok", 4)
    (folder / "truncated.npz").write_bytes(b"PK\x03\x04 not a zip")
    np.savez(folder / "wrongkey.npz", feats=np.zeros((2, 512), np.float16))
    np.savez(folder / "pickled.npz", features=np.array([{"x": 1}], dtype=object))  # never unpickled
    records = [Record(uid=str(i), task="how2qa", split="val", source="how2qa", video=v)
               for i, v in enumerate(["ok", "ok", "truncated", "wrongkey", "pickled", "absent"])]
    source = VideoFolder(folder, features=True)
    with pytest.raises(DataError, match="1 videos missing and 3 unreadable of 5"):
        check_videos({"val": records}, source, "stop", 0.01)
    kept, report = check_videos({"val": records}, source, "skip")
    assert [r.video for r in kept["val"]] == ["ok", "ok"]
    assert report["layout"] == "released features" and report["missing"] == {"absent": "not found"}
    assert set(report["unreadable"]) == {"truncated", "wrongkey", "pickled"}
    assert "no array 'features'" in report["unreadable"]["wrongkey"]
    assert zipfile.is_zipfile(folder / "pickled.npz")  # a real npz, refused for its object array


def _config(videos: dict, backbone: str = "openai/clip-vit-base-patch32") -> dict:
    return {"datasets": {"video": list(videos)}, "backbone": {"video": backbone}, "data": {"videos": videos}}


def test_released_features_config_is_checked_before_any_job():
    ok = _config({"tvqa": {"features": "f/tv"}, "tvc": {"share": "tvqa"}, "how2qa": {"folder": "clips"}})
    experiments.check_released_features(ok)
    assert experiments.released_features(ok, "tvqa") == "f/tv"
    assert experiments.video_source(ok, "tvc") == {"features": "f/tv"}  # TVC checks against TVQA's features
    assert experiments.released_features(ok, "how2qa") is None
    with pytest.raises(ConfigError, match="replaces folder/fps"):
        experiments.check_released_features(_config({"tvqa": {"features": "f", "fps": 3}}))
    with pytest.raises(ConfigError, match="backbone.video is models/toyclip"):
        experiments.check_released_features(_config({"yc2c": {"features": "f"}}, backbone="models/toyclip"))
    with pytest.raises(ConfigError, match="name the same folder"):
        experiments.check_released_features(_config({"tvqa": {"features": "a"}, "tvc": {"features": "b",
                                                                                          "share": "tvqa"}}))
