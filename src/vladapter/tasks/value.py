"""VALUE's leaderboard submissions (TVQA, How2QA, TVC, YC2C): file names, and the format check.

What VALUE's scorer (VALUE-Leaderboard/EvaluationTools, scoring_program/evaluate_*.py) reads:

- QA (TVQA, How2QA): one JSON object ``{"<qid>": answer index}``; the scorer converts keys and
  values with ``int()``, How2QA asserts that the qids are exactly the split's, TVQA looks every
  split qid up; an index names a choice in the release's order (a0..a4 / a0..a3).
- Captioning (TVC, YC2C): JSON lines ``{"clip_id": int, "descs": [{"desc": str}], ...}``
  (``vid_name``/``video_id``, ``ts`` may ride along); only the first desc is scored, keyed by
  clip_id, so each clip once.
- Layout: ``<task>/<task>_<split>_predictions.json[l]`` with VALUE's split names (How2QA's test
  is ``test_public``), zipped without an enclosing folder.

``check_submission`` applies these rules (and, given the split's ids, the id set) and raises a
DataError naming the file, the entry and the rule. ``vladapter value-submission`` lays a run's
predictions out in VALUE's layout and checks every file against the prepared records.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Iterable

from vladapter.errors import DataError

QA_CHOICES = {"tvqa": 5, "how2qa": 4}
CAPTION_TASKS = ("tvc", "yc2c")
TASKS = (*QA_CHOICES, *CAPTION_TASKS)
# prepared split -> VALUE's split name in file names, per task
VALUE_SPLITS = {task: {"val": "val", "test": "test_public" if task == "how2qa" else "test"} for task in TASKS}


def submission_name(task: str, split: str) -> str:
    """``<task>/<task>_<VALUE split>_predictions.json[l]``: where VALUE's zip wants the file."""
    suffix = "json" if task in QA_CHOICES else "jsonl"
    return f"{task}/{task}_{VALUE_SPLITS[task][split]}_predictions.{suffix}"


def _int(value) -> int | None:
    """``int(value)`` as the scorer computes it, for an int or a string of one (None otherwise)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def check_submission(task: str, path: str | Path, ids: Iterable | None = None) -> int:
    """Check the submission file ``path`` of ``task`` as VALUE's scorer reads it; with ``ids``
    (the split's qids / clip_ids), also that it covers exactly them. Returns the number of
    predictions; DataError naming the file, the entry and the rule otherwise."""
    path = Path(path)
    if task not in TASKS:
        raise DataError(f"VALUE has no submission format for task {task!r} (known: {', '.join(TASKS)})", path=path)
    fix = "write it as VALUE's EvaluationTools expect (docs/data.md: VALUE submissions)"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read the submission ({e})", path=path, fix=fix) from None
    seen: list[int] = []
    if task in QA_CHOICES:
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"not JSON ({e.msg} at line {e.lineno})", path=path, fix=fix) from None
        if not isinstance(obj, dict):
            raise DataError(f"a QA submission is one JSON object {{qid: answer index}}, not a {type(obj).__name__}",
                            path=path, fix=fix)
        n = QA_CHOICES[task]
        for key, value in obj.items():
            qid, idx = _int(key), _int(value)
            if qid is None:
                raise DataError(f"key {key!r} is not a question id (an integer)", path=path, record=key, fix=fix)
            if idx is None or not 0 <= idx < n or isinstance(value, str):
                raise DataError(f"answer {value!r} is not a choice index 0-{n - 1}", path=path, record=key, fix=fix)
            seen.append(qid)
    else:
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"line {lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"not JSON ({e.msg})", path=path, record=where, fix=fix) from None
            clip = _int(obj.get("clip_id")) if isinstance(obj, dict) else None
            if clip is None or isinstance(obj.get("clip_id"), str):
                raise DataError("needs an integer clip_id", path=path, record=where, fix=fix)
            descs = obj.get("descs")
            if not (isinstance(descs, list) and descs and isinstance(descs[0], dict)
                    and isinstance(descs[0].get("desc"), str)):
                raise DataError('descs must be a non-empty list [{"desc": caption}, ...]', path=path,
                                record=f"{where} (clip_id {clip})", fix=fix)
            seen.append(clip)
    duplicates = sorted({i for i in seen if seen.count(i) > 1})
    if duplicates:
        raise DataError(f"{len(duplicates)} ids appear more than once (first: {duplicates[0]})", path=path, fix=fix)
    if ids is not None:
        expected = {int(i) for i in ids}
        missing, extra = sorted(expected - set(seen)), sorted(set(seen) - expected)
        if missing or extra:
            raise DataError(f"the ids are not the split's: {len(missing)} missing (first: {missing[:1]}), "
                            f"{len(extra)} not in the split (first: {extra[:1]})", path=path,
                            fix="predict every question / clip of the split (no evaluate.max_examples)")
    return len(seen)


def prepared_ids(prepared: str | Path, task: str, split: str) -> list[int]:
    """The ids a submission of the prepared ``split`` of ``task`` is keyed by: the records'
    qids (uid) or clip_ids; DataError when they are not VALUE's (integers)."""
    from vladapter.data.datasets import DATASETS
    from vladapter.utils.io import read_jsonl

    dataset = next(d.name for d in DATASETS.values() if d.task == task)
    path = Path(prepared) / dataset / f"{split}.jsonl"
    ids = []
    for row in read_jsonl(path):
        value = _int((row.get("meta") or {}).get("clip_id", row.get("uid")))
        if value is None:
            raise DataError(f"record {row.get('uid')!r} has no VALUE id (an integer qid / clip_id)", path=path,
                            fix=f"prepare {dataset} from VALUE's release (docs/data.md)")
        ids.append(value)
    return ids


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--predictions", required=True, type=Path,
                        help="a run's predictions of one seed (predictions/<lm>/<run>/seed-<n>): <task>.json[l] of the "
                             "scored split, <split>/<task>.json[l] of the submitted ones")
    parser.add_argument("--prepared", type=Path, default=Path("data/prepared"),
                        help="prepared records, whose ids each file must cover (default: data/prepared)")
    parser.add_argument("--split", default="val", help="the split the run scored (its files are at the top; default: val)")
    parser.add_argument("--out", required=True, type=Path,
                        help="folder to write VALUE's layout into (<task>/<task>_<split>_predictions.json[l]); zip its "
                             "content for the leaderboard")


def run(args: argparse.Namespace) -> int:
    from vladapter.utils.io import atomic_path

    written = 0
    for split in ("val", "test"):
        folder = args.predictions if split == args.split else args.predictions / split
        for task in TASKS:
            found = [p for p in (folder / f"{task}.json", folder / f"{task}.jsonl") if p.exists()]
            if not found:
                continue
            n = check_submission(task, found[0], prepared_ids(args.prepared, task, split))
            target = args.out / submission_name(task, split)
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                shutil.copyfile(found[0], tmp)
            print(f"{target}: {n} predictions of the {split} split, in VALUE's format")
            written += 1
    if not written:
        raise DataError("no video-task predictions found", path=args.predictions,
                        fix="evaluate a video run first (predictions/<lm>/<run>/seed-<n>)")
    return 0
