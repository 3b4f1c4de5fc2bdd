"""Every reader on the real samples (tests/fixtures/real) and on bad input."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from vladapter.data.readers import Problems, read_dataset
from vladapter.data.readers import coco, gqa, how2qa, nlvr2, pretrain, tvqa, vqav2
from vladapter.data.readers import value_captions as vc
from vladapter.data.readers.common import Subtitle, read_subtitles, subtitle_context
from vladapter.errors import ConfigError, DataError


@pytest.fixture()
def strict():
    return Problems("raise")


def test_vqav2_real_questions(real_fixtures, strict):
    qs = vqav2.read_questions(real_fixtures / "vqav2/v2_OpenEnded_mscoco_val2014_questions.json", strict)
    assert len(qs) == 164
    recs = vqav2.records(qs, None, "val2014", "val", strict)
    first = recs[0]
    assert (first.uid, first.images, first.text) == ("262148000", ["COCO_val2014_000000262148"], "Where is he looking?")
    assert first.targets == {} and first.meta["image_id"] == 262148


def test_vqav2_soft_scores_follow_vl_t5():
    answers = ["2", "two", "2", "3", "2", "2", "2", "2", "yes", "3"]
    # "two" normalises to "2": 8 humans -> 1.0; 2 -> 0.6; 1 -> 0.3
    assert vqav2.soft_scores(answers) == {"2": 1.0, "3": 0.6, "yes": 0.3}


def test_vqav2_annotations_and_karpathy_split(tmp_path, strict):
    (tmp_path / "vqav2").mkdir()
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco/dataset_coco.json").write_text(json.dumps({"images": [
        {"filepath": "val2014", "filename": "COCO_val2014_000000000042.jpg", "cocoid": 42, "split": "test",
         "sentences": [{"raw": "a cat", "tokens": ["a", "cat"]}]}]}))
    q = {"questions": [{"image_id": 42, "question": "What is it?", "question_id": 42000}]}
    a = {"annotations": [{"question_id": 42000, "image_id": 42, "answer_type": "other", "question_type": "what is",
                          "multiple_choice_answer": "cat",
                          "answers": [{"answer": x, "answer_confidence": "yes", "answer_id": i + 1}
                                      for i, x in enumerate(["cat"] * 9 + ["dog"])]}]}
    for sub in ("train2014", "val2014"):
        (tmp_path / f"vqav2/v2_OpenEnded_mscoco_{sub}_questions.json").write_text(
            json.dumps(q if sub == "val2014" else {"questions": []}))
        (tmp_path / f"vqav2/v2_mscoco_{sub}_annotations.json").write_text(
            json.dumps(a if sub == "val2014" else {"annotations": []}))
    splits = vqav2.read(tmp_path, strict)
    [r] = splits["test"]
    assert r.targets == {"cat": 1.0, "dog": 0.3} and len(r.references) == 10 and r.meta["answer_type"] == "other"


def test_gqa_real_questions(real_fixtures, strict):
    [r0] = gqa.read_questions(real_fixtures / "gqa/allennlp_questions0.json", strict, "test")
    [r1] = gqa.read_questions(real_fixtures / "gqa/allennlp_questions1.json", strict, "test")
    assert (r0.uid, r0.images, r0.targets) == ("202218649", ["n578564"], {"picture": 1.0})
    assert r1.text == "Does the table below the water look wooden and round?" and r1.targets == {"yes": 1.0}
    assert r1.meta["fullAnswer"] == "Yes, the table is wooden and round."


def test_nlvr2_real_statements_and_groups(real_fixtures, strict):
    dev = nlvr2.read_file(real_fixtures / "nlvr2/dev.json", strict, "val")
    test = nlvr2.read_file(real_fixtures / "nlvr2/test1.json", strict, "test")
    assert (len(dev), len(test)) == (300, 100)
    assert dev[0].images == ["dev-850-0-img0", "dev-850-0-img1"] and dev[0].targets == {"false": 1.0}
    # dev-850-0-0 and dev-850-2-0: same sentence, different pairs -> one consistency group
    assert dev[0].group == dev[1].group == "dev-850-0" and dev[0].text == dev[1].text
    groups = Counter(r.group for r in dev)
    assert max(groups.values()) >= 2
    labels = Counter(next(iter(r.targets)) for r in dev)
    assert set(labels) == {"true", "false"}


def test_karpathy_and_official_coco_captions(real_fixtures, strict):
    flickr = coco.read_karpathy(real_fixtures / "karpathy_flickr8k/dataset_flickr8k.json", strict)
    assert len(flickr) == 15 and all(len(r.references) == 5 and r.split == "train" for r in flickr)
    assert flickr[0].images == ["2513260012_03d33305cf"]
    assert flickr[0].references[0] == "A black dog is running after a white dog in the snow ."
    official = coco.read_official(real_fixtures / "coco_captions/captions_val2014.json", strict)
    assert len(official) == 200 and sum(len(r.references) for r in official) == 1001
    assert all(r.images[0].startswith("COCO_val2014_") and r.meta["image_id"] == int(r.uid) for r in official)


def test_karpathy_images_without_sentences_are_left_out(tmp_path, strict):
    p = tmp_path / "k.json"
    p.write_text(json.dumps({"images": [{"filename": "a.jpg", "split": "restval", "sentences": [{"raw": "x"}]},
                                        {"filename": "b.jpg", "split": "test", "sentences": []}]}))
    [r] = coco.read_karpathy(p, strict)
    assert (r.images, r.split) == (["a"], "train")  # restval is merged into train


def test_tvqa_real_jsonl_and_tvqa_plus(real_fixtures, strict):
    test = tvqa.read_jsonl(real_fixtures / "tvqa/tvqa_test_public.jsonl", strict, "test")
    assert len(test) == 300
    r = test[0]
    assert (r.uid, r.video, r.span, r.answer_idx) == ("137292", "s03e21_seg02_clip_08", [48.62, 60.02], None)
    assert len(r.choices) == 5 and r.choices[0] == "The yogurt manufacturer." and r.targets == {}
    plus = tvqa.read_tvqa_plus(real_fixtures / "tvqa/tvqa_plus_val.json", strict, "val")
    assert len(plus) == 150
    assert (plus[0].answer_idx, plus[0].span) == (3, [0.0, 5.4])  # answer_idx "3" (a string) in TVQA+
    assert plus[0].targets == {plus[0].choices[3]: 1.0}


def test_timestamp_parsing():
    assert tvqa.parse_span("48.62-60.02") == [48.62, 60.02]
    assert tvqa.parse_span([1, 2.5]) == [1.0, 2.5]
    assert tvqa.parse_span("NaN-NaN") is None and tvqa.parse_span(None) is None
    with pytest.raises(ValueError):
        tvqa.parse_span("5-2")


def test_how2qa_real_csv_places_answer_uniformly(real_fixtures, strict):
    val = how2qa.read_csv(real_fixtures / "how2qa/how2QA_val_release.csv", strict, "val")
    test = how2qa.read_csv(real_fixtures / "how2qa/how2QA_test_public_release.csv", strict, "test")
    assert (len(val), len(test)) == (300, 100)
    r = val[0]
    assert (r.video, r.span, r.text) == ("NOuQuofjk44", [7.2, 18.0], "how many knife is there?")
    assert r.choices[r.answer_idx] == "1" and sorted(r.choices) == sorted(["10", "12", "16", "1"])
    quoted = next(x for x in test if x.video == "wEciUsEIQhw")  # a quoted answer with a comma
    assert "Sheet are best for most stamping projects," in quoted.choices
    positions = Counter(x.answer_idx for x in val)
    assert set(positions) == {0, 1, 2, 3} and max(positions.values()) < 0.35 * len(val)


def test_tvc_value_jsonl_real(real_fixtures, strict):
    test = vc.read_value_jsonl(real_fixtures / "tvc/tvc_test_public_release.jsonl", strict, "tvc", "test")
    assert len(test) == 300 and test[0].span == [80.64, 85.28] and test[0].references == []
    assert test[0].uid == "102866" and test[0].meta["clip_id"] == 102866
    val = vc.read_value_jsonl(real_fixtures / "tvc/sample_val_predictions.jsonl", strict, "tvc", "val")
    assert val[0].references == ["phoebe tells the group that she can go to the bathroom and then leaves ."]


def test_tvr_groups_descriptions_per_moment(real_fixtures, strict, tmp_path):
    recs = vc.read_tvr(real_fixtures / "tvr/tvr_val_release.jsonl", strict, "val")
    assert len(recs) == 300 and recs[0].video == "friends_s01e03_seg02_clip_19"
    assert recs[0].references == ["Phoebe puts one of her ponytails in her mouth."]
    two = tmp_path / "tvr.jsonl"
    two.write_text("\n".join(json.dumps({"vid_name": "v", "ts": [1, 2], "desc": d, "desc_id": i})
                             for i, d in enumerate(["a b", "c d"])))
    [moment] = vc.read_tvr(two, strict, "val")
    assert moment.references == ["a b", "c d"]


def test_youcook2_official_annotations(real_fixtures, strict):
    recs = vc.read_youcook2(real_fixtures / "youcook2/youcookii_annotations_trainval.json", strict)
    assert len(recs) == 622
    assert Counter(r.split for r in recs) == {"train": 448, "val": 174}
    r = recs[0]
    assert (r.video, r.span, r.references) == ("GLd3aX16zBg", [90.0, 102.0],
                                               ["spread margarine on two slices of white bread"])


def test_subtitle_context_keeps_lines_inside_the_span(tmp_path, strict):
    subs = [Subtitle(0, 1, "a"), Subtitle(1.5, 3, "b"), Subtitle(5, 6, "c")]
    assert subtitle_context(subs, [0.5, 2.0]) == "a b"
    assert subtitle_context(subs, None) == "a b c"
    p = tmp_path / "subs.jsonl"
    p.write_text(json.dumps({"vid_name": "v", "sub": [{"start": 0, "end": 1, "text": "hi"}]}) + "\n")
    assert read_subtitles(p, strict) == {"v": [Subtitle(0.0, 1.0, "hi")]}


def test_vlt5_qa_variant(tmp_path, strict):
    p = tmp_path / "qa.json"
    p.write_text(json.dumps([{"img_id": "x", "sent": "Is it?", "question_id": 7, "label": {"yes": 1.0, "no": 0.3}}]))
    [r] = pretrain.read_vlt5_qa(p, strict, {"x": "train"})
    assert (r.uid, r.images, r.targets, r.split) == ("qa-7", ["x"], {"yes": 1.0, "no": 0.3}, "train")


# ---------------------------------------------------------------- bad input

def test_malformed_jsonl_line_names_file_and_line(tmp_path, real_fixtures):
    bad = tmp_path / "dev.json"
    lines = (real_fixtures / "nlvr2/dev.json").read_text().splitlines()[:5]
    lines[2] = lines[2][:40]  # truncated line
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as err:
        nlvr2.read_file(bad, Problems("raise"), "val")
    msg = str(err.value)
    assert "invalid JSON" in msg and str(bad) in msg and "line 3" in msg and "fix:" in msg
    skip = Problems("skip")
    assert len(nlvr2.read_file(bad, skip, "val")) == 4 and skip.total == 1 and "line 3" in skip.examples[0]


def test_missing_field_and_bad_values_are_reported(tmp_path):
    p = tmp_path / "tvqa_val.jsonl"
    good = {"qid": 1, "q": "q?", "vid_name": "v", "ts": "1-2", "answer_idx": 0, **{f"a{i}": str(i) for i in range(5)}}
    rows = [good, {**good, "qid": 2, "vid_name": None}, {**good, "qid": 3, "ts": "9-1"},
            {**good, "qid": 4, "answer_idx": 7}, {k: v for k, v in good.items() if k != "a4"}]
    p.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(DataError, match="missing field 'vid_name'"):
        tvqa.read_jsonl(p, Problems("raise"), "val")
    skip = Problems("skip")
    assert [r.uid for r in tvqa.read_jsonl(p, skip, "val")] == ["1"]
    assert skip.total == 4


def test_how2qa_wrong_column_count(tmp_path):
    p = tmp_path / "how2QA_val_release.csv"
    p.write_text("v1,[1:2],a,b,c,q?,d\nv2,[1:2],a,b,c,d\n")
    with pytest.raises(DataError, match="6 columns, expected 7") as err:
        how2qa.read_csv(p, Problems("raise"), "val")
    assert "line 2" in str(err.value)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match="missing GQA train questions"):
        read_dataset("gqa", tmp_path)
    (tmp_path / "gqa").mkdir()
    for s in ("train", "val", "testdev"):
        (tmp_path / f"gqa/{s}_balanced_questions.json").write_text('{"1": {"imageId": "n1", "quest')
    with pytest.raises(DataError, match="invalid JSON") as err:
        read_dataset("gqa", tmp_path)
    assert "download it again" in str(err.value)
    with pytest.raises(ConfigError, match="unknown dataset"):
        read_dataset("imagenet", tmp_path)
    with pytest.raises(ConfigError):
        Problems("ignore")
