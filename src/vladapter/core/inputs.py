"""A model's inputs, for training and evaluation alike: records, features, batch encoding.

Prepared records of a task split (``load_records``, ``load_task_data``), their visual
inputs from one FeatureStore per feature source (``Features``: images n tokens each,
NLVR2's two images with image order 0/1; videos N frame tokens + mask), and the tensors
a batch of them becomes (``pad``, ``attention_mask``, ``stack_visual``, ``encode_sources``).
The training batches (targets, loss weights, DDP shards) build on these in
vladapter.train.data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from vladapter.data.records import DATASET_TASK, Record
from vladapter.errors import DataError
from vladapter.tasks import Task, get_task
from vladapter.utils.io import read_jsonl

TASK_DATASET = {task: dataset for dataset, task in DATASET_TASK.items()}


def records_path(prepared: str | Path, task: str, split: str) -> Path:
    return Path(prepared) / TASK_DATASET[task] / f"{split}.jsonl"


def load_records(prepared: str | Path, task: str, split: str, max_examples: int | None = None,
                 allow_empty: bool = False) -> list[Record]:
    """The prepared records of ``task``'s dataset split (the first ``max_examples`` if given);
    an empty split is an error unless ``allow_empty`` (evaluation: YC2C has no test split)."""
    path = records_path(prepared, task, split)
    if not path.exists():
        raise DataError(f"no prepared {split} split for task {task}", path=path,
                        fix=f"run `vladapter prepare {TASK_DATASET[task]}` (or the workflow's prepare rule)")
    records = []
    for line_no, row in enumerate(read_jsonl(path), 1):
        if max_examples and len(records) >= max_examples:
            break
        try:
            record = Record.from_dict(row)
        except ValueError as e:
            raise DataError(f"malformed record: {e}", path=path, record=f"line {line_no}",
                            fix=f"re-run `vladapter prepare {TASK_DATASET[task]}` (or fix that line)") from None
        if record.task != task:
            raise DataError(f"a record of task {record.task!r} in task {task}'s file", path=path,
                            record=f"line {line_no} ({record.uid})",
                            fix=f"re-run `vladapter prepare {TASK_DATASET[task]}`")
        records.append(record)
    if not records and not allow_empty:
        raise DataError(f"the {split} split of task {task} is empty", path=path,
                        fix="check the prepare step's output")
    return records


class Features:
    """Visual inputs of records, from one FeatureStore per feature source (opened lazily)."""

    def __init__(self, features: str | Path, backbone: str | None, n_image_tokens: int, n_video_frames: int):
        self.features = Path(features)
        self.backbone = backbone
        self.n_image_tokens = n_image_tokens
        self.n_video_frames = n_video_frames
        self._stores: dict[str, object] = {}

    def path(self, source: str) -> Path:
        """``<features>/<source>.<backbone>.h5``; without a backbone name, the source's only file."""
        if self.backbone:
            return self.features / f"{source}.{self.backbone}.h5"
        found = sorted(self.features.glob(f"{source}.*.h5"))
        if len(found) != 1:
            raise DataError(f"expected one feature file for source {source!r}, found {len(found)}",
                            path=self.features / f"{source}.<backbone>.h5",
                            fix="run `vladapter extract-features`, or name the backbone (--backbone)")
        return found[0]

    def store(self, source: str, video: bool):
        key = f"{source}:{video}"
        if key not in self._stores:
            from vladapter.features.store import FeatureStore

            path = self.path(source)
            if not path.exists():
                raise DataError(f"feature file for source {source!r} not found", path=path,
                                fix=f"run `vladapter extract-features` for {source} with backbone {self.backbone}")
            n = self.n_video_frames if video else self.n_image_tokens
            self._stores[key] = FeatureStore(path, n_tokens=n)
        return self._stores[key]

    def warm(self, records: Sequence[Record]) -> list[Path]:
        """Read the feature files of ``records`` into the page cache in a background thread
        (vladapter.features.store.warm_page_cache); returns the files it reads."""
        import threading

        from vladapter.features.store import warm_page_cache

        paths = sorted({self.path(r.source) for r in records})
        threading.Thread(target=lambda: [warm_page_cache(p) for p in paths], daemon=True,
                         name="warm-features").start()
        return paths

    def __getstate__(self):  # worker processes open their own HDF5 handles
        state = dict(self.__dict__)
        state["_stores"] = {}
        return state

    def visual(self, record: Record) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(features (V, D) float32, mask (V,) bool, image order (V,) int64) of one record."""
        try:
            if record.video is not None:
                feats, mask = self.store(record.source, True).video(record.video, span=record.span)
                return feats, np.asarray(mask, dtype=bool), np.zeros(len(feats), dtype=np.int64)
            if not record.images:
                raise DataError("record has neither images nor a video", record=f"{record.task}:{record.uid}",
                                fix="re-run `vladapter prepare`")
            store = self.store(record.source, False)
            parts = [store.image(image_id) for image_id in record.images]
        except KeyError as e:
            raise DataError(f"feature {e} missing", path=self.path(record.source),
                            record=f"{record.task}:{record.uid}",
                            fix="re-run `vladapter extract-features` for this source") from None
        feats = np.concatenate(parts, axis=0)
        order = np.concatenate([np.full(len(p), i, dtype=np.int64) for i, p in enumerate(parts)])
        return feats, np.ones(len(feats), dtype=bool), order


@dataclass
class TaskData:
    """One task's records for training or evaluation."""

    task: Task
    records: list[Record]

    @property
    def name(self) -> str:
        return self.task.name


def load_task_data(prepared, tasks: Sequence[str], split: str, max_examples: int | None = None,
                   options: dict | None = None, allow_empty: bool = False) -> dict[str, TaskData]:
    """Each task's records of ``split``; ``options`` are the run's task options (qa_target)."""
    return {t: TaskData(get_task(t, **(options or {})), load_records(prepared, t, split, max_examples, allow_empty))
            for t in tasks}


def pad(seqs: Sequence[Sequence[int]], value: int, length: int | None = None) -> torch.Tensor:
    length = max(map(len, seqs)) if length is None else length
    out = torch.full((len(seqs), length), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out


def attention_mask(lengths: Sequence[int], length: int) -> torch.Tensor:
    return (torch.arange(length)[None, :] < torch.tensor(list(lengths))[:, None]).long()


def stack_visual(features: Features, records: Sequence[Record]) -> dict[str, torch.Tensor]:
    items = [features.visual(r) for r in records]
    lengths = {len(f) for f, _, _ in items}
    if len(lengths) != 1:
        raise DataError(f"records of one batch have different numbers of visual tokens {sorted(lengths)}",
                        record=", ".join(r.uid for r in records[:5]),
                        fix="every record of a task must have the same number of images")
    return {"vis_feats": torch.from_numpy(np.stack([f for f, _, _ in items]).astype(np.float32)),
            "vis_mask": torch.from_numpy(np.stack([m for _, m, _ in items])),
            "img_order": torch.from_numpy(np.stack([o for _, _, o in items]))}


def encode_sources(tokenizer, task: Task, records: Sequence[Record], features: Features, prefix: bool,
                   model_task: str | None = None) -> dict:
    """An evaluation batch: inputs only (no targets)."""
    sources = tokenizer([task.source_text(r, prefix) for r in records], truncation=True,
                        max_length=task.max_input_tokens)["input_ids"]
    input_ids = pad(sources, tokenizer.pad_token_id)
    batch = {"task": model_task or task.name, "input_ids": input_ids,
             "attention_mask": attention_mask([len(s) for s in sources], input_ids.shape[1])}
    batch.update(stack_visual(features, records))
    return batch


MODEL_INPUTS = ("input_ids", "attention_mask", "vis_feats", "vis_mask", "img_order")


def to_device(batch: dict, device: torch.device, non_blocking: bool = False) -> dict:
    return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
