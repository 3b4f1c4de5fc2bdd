"""The toy world in the published formats, one builder per dataset.

Each builder draws its scenes / clips and text from its own seeded RNG and returns a
`Built`: annotation files as text (relative path -> content, serialised like the real
files), render jobs for the pool (images, videos) and the linear-probe attributes. The
layout is docs/ARCHITECTURE.md's "Raw layout"; the real readers read it back.
"""

from __future__ import annotations

import csv
import io
import json
import random
from dataclasses import dataclass, field
from typing import Any

from vladapter.data.toyworld import language as lang
from vladapter.data.toyworld import video as vid
from vladapter.data.toyworld.scene import random_scene

VQA_INFO = {"description": "Toy world in the VQA v2.0 format (vladapter).", "url": "", "version": "2.0",
            "year": 2024, "contributor": "vladapter toyworld", "date_created": "2024-01-01 00:00:00"}
LICENSE = {"url": "https://opensource.org/licenses/MIT", "name": "MIT (generated data)"}


@dataclass
class Built:
    files: dict[str, str] = field(default_factory=dict)  # relative path -> text
    jobs: list[tuple] = field(default_factory=list)  # ("image", relpath, shapes, bg) | ("video", relpath, clip)
    attributes: dict[str, dict] = field(default_factory=dict)  # dataset -> feature id -> attributes


def _json(obj: Any) -> str:
    return json.dumps(obj)


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def _karpathy_image(rng, scene, imgid: int, sentid: int, filename: str, filepath: str, split: str,
                    cocoid: int | None) -> dict:
    sents = [lang.to_karpathy_sentence(t, sentid + k, imgid) for k, t in enumerate(lang.captions(rng, scene, 5))]
    entry = {"filepath": filepath, "sentids": [s["sentid"] for s in sents], "filename": filename,
             "imgid": imgid, "split": split, "sentences": sents}
    if cocoid is not None:
        entry["cocoid"] = cocoid
    return entry


def _vqa_annotation(rng, qa: lang.QA, image_id: int, question_id: int) -> dict:
    answers = lang.human_answers(rng, qa)
    counts: dict[str, int] = {}
    for a in answers:
        counts[a] = counts.get(a, 0) + 1
    return {
        "question_type": qa.question_type,
        "multiple_choice_answer": max(counts, key=lambda a: (counts[a], a == qa.answer)),
        "answers": [{"answer": a, "answer_confidence": rng.choices(["yes", "maybe", "no"], [85, 12, 3])[0],
                     "answer_id": k + 1} for k, a in enumerate(answers)],
        "image_id": image_id, "answer_type": qa.answer_type, "question_id": question_id,
    }


def build_coco(seed: int, sizes: dict[str, int], vqa_per_image: int) -> Built:
    """COCO images (Karpathy splits; train in train2014, restval/val/test in val2014),
    Karpathy captions and VQAv2 questions + annotations on the same images."""
    rng = random.Random(f"{seed}-coco")
    total = sum(sizes.values())
    cocoids = rng.sample(range(1, 600_000), total)
    built = Built()
    karpathy, questions, annotations = [], {"train2014": [], "val2014": []}, {"train2014": [], "val2014": []}
    attrs: dict[str, dict] = {}
    k = 0
    for split, n in sizes.items():
        for _ in range(n):
            cocoid = cocoids[k]
            sub = "train2014" if split == "train" else "val2014"
            stem = f"COCO_{sub}_{cocoid:012d}"
            scene = random_scene(rng)
            built.jobs.append(("image", f"coco/images/{sub}/{stem}.jpg", scene.shapes, scene.background))
            attrs[stem] = scene.attributes()
            karpathy.append(_karpathy_image(rng, scene, k, 5 * k, f"{stem}.jpg", sub, split, cocoid))
            n_q = max(1, vqa_per_image + rng.choice([-1, 0, 0, 1]))
            for j, qa in enumerate(lang.vqa_questions(rng, scene, n_q)):
                qid = cocoid * 1000 + j
                questions[sub].append({"image_id": cocoid, "question": qa.question, "question_id": qid})
                annotations[sub].append(_vqa_annotation(rng, qa, cocoid, qid))
            k += 1
    built.files["coco/dataset_coco.json"] = _json({"images": karpathy, "dataset": "coco"})
    for sub in ("train2014", "val2014"):
        built.files[f"vqav2/v2_OpenEnded_mscoco_{sub}_questions.json"] = _json({
            "info": VQA_INFO, "task_type": "Open-Ended", "data_type": "mscoco", "license": LICENSE,
            "data_subtype": sub, "questions": questions[sub]})
        built.files[f"vqav2/v2_mscoco_{sub}_annotations.json"] = _json({
            "info": VQA_INFO, "license": LICENSE, "data_subtype": sub, "annotations": annotations[sub]})
    built.attributes["coco"] = attrs
    return built


def build_gqa(seed: int, sizes: dict[str, int], per_image: int) -> Built:
    """GQA images and {train,val,testdev}_balanced_questions.json (relations, comparisons)."""
    rng = random.Random(f"{seed}-gqa")
    total = sum(sizes.values())
    image_ids = rng.sample(range(1, 3_000_000), total)
    qid = rng.randrange(10_000_000, 20_000_000)
    built, attrs, k = Built(), {}, 0
    for split, n in sizes.items():
        qs: dict[str, dict] = {}
        for _ in range(n):
            image_id = f"n{image_ids[k]}"
            k += 1
            scene = random_scene(rng, 2, 4)  # GQA asks about relations: at least two shapes
            built.jobs.append(("image", f"gqa/images/{image_id}.jpg", scene.shapes, scene.background))
            attrs[image_id] = scene.attributes()
            for qa in lang.gqa_questions(rng, scene, per_image):
                qid += rng.randint(1, 9)
                qs[str(qid)] = {
                    "semantic": [], "entailed": [], "equivalent": [str(qid)], "question": qa.question,
                    "imageId": image_id, "isBalanced": True,
                    "groups": {"global": qa.answer if qa.answer_type == "other" else None, "local": qa.family},
                    "answer": qa.answer, "semanticStr": "",
                    "annotations": {"answer": {}, "question": {}, "fullAnswer": {}},
                    "types": {"detailed": qa.family, "semantic": "rel" if "rel" in qa.family else "attr",
                              "structural": qa.question_type},
                    "fullAnswer": qa.full_answer,
                }
        built.files[f"gqa/{split}_balanced_questions.json"] = _json(qs)
    built.attributes["gqa"] = attrs
    return built


def build_nlvr2(seed: int, sizes: dict[str, int], pairs_per_sentence: int) -> Built:
    """NLVR2 statements with several image pairs each (~50/50 labels per sentence)."""
    rng = random.Random(f"{seed}-nlvr2")
    built, attrs = Built(), {}
    for split, n in sizes.items():
        rows = []
        for set_id in range(max(1, n // pairs_per_sentence)):
            pairs = _nlvr_pairs(rng, pairs_per_sentence)
            statement, scenes, labels = pairs
            for p, ((left, right), label) in enumerate(zip(scenes, labels)):
                stem = f"{split}-{set_id}-{p}"
                for side, scene in (("img0", left), ("img1", right)):
                    built.jobs.append(("image", f"nlvr2/images/{split}/{stem}-{side}.png", scene.shapes,
                                       scene.background))
                    attrs[f"{stem}-{side}"] = scene.attributes()
                rows.append({"validation": {}, "sentence": statement.sentence,
                             "left_url": f"toy://{stem}-img0.png", "writer": "toy", "label": str(label),
                             "right_url": f"toy://{stem}-img1.png", "synset": "shape", "query": "toy shapes",
                             "identifier": f"{stem}-0", "extra_validations": {}})
        built.files[f"nlvr2/{split}.json"] = _jsonl(rows)
    built.attributes["nlvr2"] = attrs
    return built


def _nlvr_pairs(rng: random.Random, k: int):
    """A statement and ``k`` image pairs with labels as balanced as the statement allows."""
    while True:
        statement = lang.random_statement(rng)
        want = [i % 2 == 0 for i in range(k)]
        rng.shuffle(want)
        scenes, labels = [], []
        for w in want:
            for _ in range(300):
                pair = (random_scene(rng), random_scene(rng))
                if statement.holds(*pair) == w:
                    break
            else:
                break  # this statement is (almost) never / always true: draw another
            scenes.append(pair)
            labels.append(w)
        if len(scenes) == k:
            return statement, scenes, labels


def build_pretrain(seed: int, sizes: dict[str, int], qa_per_image: int) -> Built:
    """Pre-training images (distinct from every task's), Karpathy captions and VL-T5-style QA."""
    from vladapter.data.readers.vqav2 import soft_scores

    rng = random.Random(f"{seed}-pretrain")
    built, attrs, karpathy, qa_rows, k = Built(), {}, [], [], 0
    for split, n in sizes.items():
        for _ in range(n):
            stem = f"pretrain_{k:06d}"
            scene = random_scene(rng)
            built.jobs.append(("image", f"pretrain/images/{stem}.jpg", scene.shapes, scene.background))
            attrs[stem] = scene.attributes()
            karpathy.append(_karpathy_image(rng, scene, k, 5 * k, f"{stem}.jpg", "images", split, None))
            for j, qa in enumerate(lang.vqa_questions(rng, scene, qa_per_image)):
                qa_rows.append({"img_id": stem, "label": soft_scores(lang.human_answers(rng, qa)),
                                "answer_type": qa.answer_type, "question_id": k * 1000 + j,
                                "question_type": qa.question_type, "sent": qa.question})
            k += 1
    built.files["pretrain/dataset_pretrain.json"] = _json({"images": karpathy, "dataset": "pretrain"})
    built.files["pretrain/pretrain_qa.json"] = _json(qa_rows)
    built.attributes["pretrain"] = attrs
    return built


# ---------------------------------------------------------------- videos

def _clips(rng, dataset: str, split: str, n: int, start: int, built: Built, attrs: dict, subs: list,
           n_events=(2, 4), duration=(6.0, 12.0)) -> list[vid.Clip]:
    clips = []
    for i in range(n):
        name = f"toy{dataset}_{split}_{start + i:05d}"
        clip = vid.random_clip(rng, name, n_events, duration)
        built.jobs.append(("video", f"{dataset}/videos/{name}.mp4", clip))
        attrs[name] = clip.attributes()
        subs.append({"vid_name": name, "sub": clip.subtitles})
        clips.append(clip)
    return clips


def _multiple_choice(rng, clip: vid.Clip, e: vid.Event, n_choices: int):
    qa = vid.event_question(rng, clip, e)
    choices = vid.distractors(rng, qa, n_choices - 1)
    answer_idx = rng.randrange(n_choices)
    choices.insert(answer_idx, qa.answer)
    return qa, choices, answer_idx


def build_tvqa(seed: int, sizes: dict[str, int]) -> Built:
    """TVQA jsonl (5 choices, ts "start-end") with subtitles; labels kept in test_public too."""
    rng = random.Random(f"{seed}-tvqa")
    built, attrs, subs, qid = Built(), {}, [], 100_000
    for split, n in sizes.items():
        rows = []
        for clip in _clips(rng, "tvqa", split, n, 0, built, attrs, subs):
            for e in clip.events:
                qa, choices, idx = _multiple_choice(rng, clip, e, 5)
                qid += 1
                row = {f"a{j}": c for j, c in enumerate(choices)}
                row.update({"answer_idx": idx, "q": qa.question, "qid": qid, "show_name": "Toy Shapes",
                            "ts": f"{e.span[0]:.2f}-{e.span[1]:.2f}", "vid_name": clip.name})
                rows.append(row)
        built.files[f"tvqa/tvqa_{split}.jsonl"] = _jsonl(rows)
    built.files["tvqa/tvqa_subtitles.jsonl"] = _jsonl(subs)
    built.attributes["tvqa"] = attrs
    return built


def build_how2qa(seed: int, sizes: dict[str, int]) -> Built:
    """How2QA release CSVs: no header; video_id, [start:end], 3 wrong answers, question, answer."""
    rng = random.Random(f"{seed}-how2qa")
    built, attrs, subs = Built(), {}, []
    for split, n in sizes.items():
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for clip in _clips(rng, "how2qa", split, n, 0, built, attrs, subs):
            for e in clip.events:
                qa = vid.event_question(rng, clip, e)
                wrong = vid.distractors(rng, qa, 3)
                writer.writerow([clip.name, f"[{e.span[0]}:{e.span[1]}]", *wrong, qa.question, qa.answer])
        built.files[f"how2qa/how2QA_{split}_release.csv"] = buf.getvalue()
    built.files["how2qa/how2qa_subtitles.jsonl"] = _jsonl(subs)
    built.attributes["how2qa"] = attrs
    return built


def _build_value_captions(seed: int, dataset: str, sizes: dict[str, int], file_pattern: str,
                          n_events, duration, descs_per_moment: int) -> Built:
    rng = random.Random(f"{seed}-{dataset}")
    built, attrs, subs = Built(), {}, []
    clip_id, desc_id = 10_000, 50_000
    for split, n in sizes.items():
        rows = []
        for clip in _clips(rng, dataset, split, n, 0, built, attrs, subs, n_events, duration):
            for e in clip.events:
                clip_id += 1
                descs = []
                for text in vid.event_captions(rng, clip, e, descs_per_moment):
                    desc_id += 1
                    descs.append({"desc": text, "type": "v", "from_retrieval": False, "desc_id": desc_id})
                rows.append({"vid_name": clip.name, "duration": clip.duration, "ts": e.span,
                             "clip_id": clip_id, "descs": descs})
        built.files[f"{dataset}/{file_pattern.format(split=split)}"] = _jsonl(rows)
    built.files[f"{dataset}/{dataset}_subtitles.jsonl"] = _jsonl(subs)
    built.attributes[dataset] = attrs
    return built


def build_tvc(seed: int, sizes: dict[str, int]) -> Built:
    """TVC (VALUE) jsonl: one moment per line with its descriptions; labels kept in test_public."""
    return _build_value_captions(seed, "tvc", sizes, "tvc_{split}_release.jsonl", (2, 4), (6.0, 12.0), 3)


def build_yc2c(seed: int, sizes: dict[str, int]) -> Built:
    """YC2C (VALUE) jsonl: longer "recipes" of 3-5 steps, one captioned segment per step."""
    return _build_value_captions(seed, "yc2c", sizes, "yc2c_{split}_release.jsonl", (3, 5), (9.0, 12.0), 3)
