"""Task text formats, training targets, candidates, majority answers and submission files."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from vladapter.data.records import Record
from vladapter.errors import ConfigError
from vladapter.tasks import get_task
from vladapter.tasks.pretrain import MatchObjective, PrefixObjective, SpanObjective, objectives


def vqa_record(uid="7", targets=None):
    return Record(uid=uid, task="vqa", split="train", source="coco", images=["COCO_val2014_000000000042"],
                  text="What colour is it?", targets=targets or {"red": 1.0, "blue": 0.3})


def video_record(answer_idx=2):
    return Record(uid="137292", task="tvqa", split="test", source="tvqa", video="s03e21_seg02_clip_08",
                  span=[48.62, 60.02], text="Who is there?", context="Sheldon : hi . Leonard : bye",
                  choices=["Amy", "Raj", "Penny", "Howard", "Stuart"], answer_idx=answer_idx)


def test_prefix_only_when_the_method_needs_it():
    task = get_task("vqa")
    assert task.source_text(vqa_record(), prefix=True) == "vqa: What colour is it?"
    assert task.source_text(vqa_record(), prefix=False) == "What colour is it?"
    assert get_task("caption").source_text(Record("1", "caption", "test", "coco", ["x"]), True) == "caption:"


def test_vqa_samples_answers_by_score_and_weights_the_loss():
    task = get_task("vqa")
    rng = np.random.default_rng(0)
    draws = [task.example(vqa_record(), rng, True) for _ in range(4000)]
    counts = Counter(e.target for e in draws)
    assert counts["red"] / len(draws) == pytest.approx(1.0 / 1.3, abs=0.02)
    assert {e.target: e.weight for e in draws} == {"red": 1.0, "blue": 0.3}


def test_video_qa_text_format_and_candidates():
    task = get_task("tvqa")
    text = task.source_text(video_record(), prefix=True)
    assert text == ("[Subs] Sheldon : hi . Leonard : bye [Q] Who is there? [TS] 48.6-60.0 "
                    "[Choices] a0: Amy a1: Raj a2: Penny a3: Howard a4: Stuart tvqa:")
    assert task.source_text(video_record(), prefix=False).endswith("a4: Stuart")
    assert task.example(video_record(), np.random.default_rng(0), True).target == "a2"
    assert task.candidates(video_record()) == ["a0", "a1", "a2", "a3", "a4"]
    assert task.score(["a2", "a1"], [video_record(2), video_record(2)]) == {"accuracy": 50.0}


def test_video_qa_text_target_scores_the_choices_words(tmp_path):
    task = get_task("tvqa", qa_target="text")
    assert get_task("tvqa").target == "index"  # the shared default object is not changed
    assert task.source_text(video_record(), prefix=True) == get_task("tvqa").source_text(video_record(), True)
    assert task.example(video_record(), np.random.default_rng(0), True).target == "Penny"
    assert task.candidates(video_record()) == ["Amy", "Raj", "Penny", "Howard", "Stuart"]
    assert task.score(["Penny", "Raj"], [video_record(2), video_record(2)]) == {"accuracy": 50.0}
    # the baseline is the same for both targets: the most frequent answer position
    assert task.majority([video_record(1), video_record(1), video_record(3)]) == "a1"
    task.write_submission(tmp_path / "tvqa", ["Howard"], [video_record()])
    assert json.loads((tmp_path / "tvqa.json").read_text()) == {"137292": 3}
    with pytest.raises(ConfigError, match="qa_target"):
        get_task("how2qa", qa_target="pointer")


def test_nlvr_decides_between_true_and_false():
    task = get_task("nlvr")
    rec = Record("dev-850-0-0", "nlvr", "test", "nlvr2", ["dev-850-0-img0", "dev-850-0-img1"],
                 text="The right image shows a walkway.", targets={"false": 1.0}, group="s1")
    assert task.candidates(rec) == ["true", "false"]
    assert task.answer(rec) == "false"
    bad = Record("x", "nlvr", "test", "nlvr2", ["a", "b"], targets={"maybe": 1.0})
    with pytest.raises(ValueError, match="true/false"):
        task.answer(bad)


def test_majority_answers():
    recs = [vqa_record(str(i), {"red": 1.0}) for i in range(3)] + [vqa_record("9", {"blue": 1.0})]
    assert get_task("vqa").majority(recs) == "red"
    caps = [Record(str(i), "caption", "train", "coco", ["x"], references=refs)
            for i, refs in enumerate([["A red ball", "a dog"], ["a red ball"], ["a cat"]])]
    assert get_task("caption").majority(caps) == "a red ball"
    assert get_task("tvqa").majority([video_record(1), video_record(1), video_record(3)]) == "a1"


def test_submission_formats(tmp_path):
    get_task("vqa").write_submission(tmp_path / "vqa", ["red"], [vqa_record("262148000")])
    assert json.loads((tmp_path / "vqa.json").read_text()) == [{"question_id": 262148000, "answer": "red"}]

    cap = Record("c1", "caption", "test", "coco", ["COCO_val2014_000000391895"], references=["a man"])
    get_task("caption").write_submission(tmp_path / "caption", ["a man riding"], [cap])
    assert json.loads((tmp_path / "caption.json").read_text()) == [{"image_id": 391895, "caption": "a man riding"}]

    nl = Record("test1-0-1-0", "nlvr", "test", "nlvr2", ["a", "b"], targets={"true": 1.0})
    get_task("nlvr").write_submission(tmp_path / "nlvr", ["true"], [nl])
    assert (tmp_path / "nlvr.csv").read_text() == "test1-0-1-0,True\n"

    get_task("tvqa").write_submission(tmp_path / "tvqa", ["a3"], [video_record()])
    assert json.loads((tmp_path / "tvqa.json").read_text()) == {"137292": 3}  # VALUE / TVQA: {qid: index}

    clip = Record("86603", "tvc", "test", "tvc", video="friends_s01e03_seg02_clip_19", span=[16.48, 33.87],
                  references=["phoebe leaves ."], meta={"clip_id": 86603})
    get_task("tvc").write_submission(tmp_path / "tvc", ["phoebe leaves"], [clip])
    assert json.loads((tmp_path / "tvc.jsonl").read_text()) == {
        "clip_id": 86603, "vid_name": "friends_s01e03_seg02_clip_19", "ts": [16.48, 33.87],
        "descs": [{"desc": "phoebe leaves"}]}


def test_unknown_task_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown task 'vqa2'"):
        get_task("vqa2")


# --- pre-training objectives --------------------------------------------------------------

CAPTION = Record("cap-1", "pretrain", "train", "pretrain", ["img1"],
                 references=["a big red circle on the left of two small blue squares"], meta={"kind": "caption"})


def test_span_masking_hides_about_15_percent_and_the_target_restores_it():
    rng = np.random.default_rng(1)
    for _ in range(50):
        ex = SpanObjective().example(CAPTION, rng, True)
        source = ex.source.removeprefix("pretrain caption: ").split()
        target = ex.target.split()
        # fill every sentinel of the source with the words after it in the target
        spans, current = {}, None
        for w in target:
            if w.startswith("<extra_id_"):
                current = w
                spans[current] = []
            else:
                spans[current].append(w)
        restored = [x for w in source for x in (spans[w] if w in spans else [w])]
        assert " ".join(restored) == CAPTION.references[0]
        hidden = sum(len(v) for v in spans.values())
        assert 1 <= hidden <= 3  # 15% of 12 words, rounded: 2 (spans may overlap)


def test_bart_style_span_masking_targets_the_whole_caption():
    ex = SpanObjective(sentinel=None).example(CAPTION, np.random.default_rng(0), True)
    assert "<mask>" in ex.source and ex.target == CAPTION.references[0]


def test_prefix_lm_continues_the_caption_and_half_the_time_is_captioning():
    rng = np.random.default_rng(0)
    draws = [PrefixObjective().example(CAPTION, rng, True) for _ in range(400)]
    caption = CAPTION.references[0]
    for ex in draws:
        # the caption task's own prefix; source words + target words = the caption
        assert ex.source.startswith("caption:")
        assert " ".join([*ex.source.removeprefix("caption:").split(), *ex.target.split()]) == caption
        assert ex.target  # never an empty continuation
    captioning = sum(ex.source == "caption:" for ex in draws) / len(draws)
    assert 0.42 < captioning < 0.58  # k = 0 half of the time
    assert len({ex.source for ex in draws}) == len(caption.split())  # every prefix length occurs


def test_image_text_matching_draws_negatives_from_other_images():
    pool = [CAPTION, Record("cap-2", "pretrain", "train", "pretrain", ["img2"], references=["one green star"])]
    itm = MatchObjective(pool)
    rng = np.random.default_rng(0)
    draws = [itm.example(CAPTION, rng, True) for _ in range(400)]
    negatives = [e for e in draws if e.target == "false"]
    assert 0.4 < len(negatives) / len(draws) < 0.6
    assert all(e.source.endswith("one green star") for e in negatives)
    assert all(e.source.endswith(CAPTION.references[0]) for e in draws if e.target == "true")


def test_objectives_split_records_by_kind():
    qa = Record("qa-1", "pretrain", "train", "pretrain", ["img1"], text="what?", targets={"red": 1.0},
                meta={"kind": "qa"})
    objs = objectives(["span", "prefix", "itm", "qa"], [CAPTION, qa], sentinels=True)
    assert {k: [r.uid for r in v[1]] for k, v in objs.items()} == {
        "span": ["cap-1"], "prefix": ["cap-1"], "itm": ["cap-1"], "qa": ["qa-1"]}
    with pytest.raises(ConfigError, match="mlm"):
        objectives(["mlm"], [CAPTION], sentinels=True)


def test_pair_objective_puts_the_captioned_image_beside_another_on_a_recorded_side():
    from vladapter.tasks.pretrain import PairObjective, image_pairs

    captions = [Record(f"cap-{i}", "pretrain", "train", "pretrain", [f"img{i % 6}"], references=[f"caption {i}"],
                       meta={"kind": "caption"}) for i in range(40)]  # images repeat: img0 has 7 captions
    pairs = image_pairs(captions, seed=3)
    assert len(pairs) == len(captions)
    for record, pair in zip(captions, pairs):
        own = 0 if pair.meta["side"] == "left" else 1
        assert len(pair.images) == 2 and pair.images[own] == record.images[0]
        assert pair.images[1 - own] != record.images[0]  # another image, never the same twice
        assert pair.references == record.references and pair.uid == f"{record.uid}-pair"
    sides = [p.meta["side"] for p in pairs]
    assert 10 < sides.count("left") < 30  # drawn, not fixed
    assert [p.images for p in image_pairs(captions, seed=3)] == [p.images for p in pairs]  # seeded
    assert [p.images for p in image_pairs(captions, seed=4)] != [p.images for p in pairs]
    assert image_pairs(captions[:1], seed=0) == []  # one image: nothing to pair with

    example = PairObjective().example(pairs[0], np.random.default_rng(0), prefix=False)
    assert example.source == "pretrain left right: caption 0" and example.target == pairs[0].meta["side"]
    objs = objectives(["itm", "pair"], captions, sentinels=True, seed=3)
    assert [r.images for r in objs["pair"][1]] == [p.images for p in pairs]
