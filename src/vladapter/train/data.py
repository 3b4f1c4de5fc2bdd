"""Training batches: a task's examples (the sampler decides which) as tensors.

`BatchBuilder[spec]` turns a `BatchSpec` into tensors: task text (with prefix when the
method needs it), tokenised and padded; training targets with -100 padding and loss
weights; visual tokens from the run's Features (vladapter.core.inputs). The builder is a
map-style Dataset over specs, so a DataLoader runs it in worker processes with pinned memory.

Under DDP every rank builds only its rows of the global batch, but pads text to the
global batch's longest input, so the numbers match a single process exactly.
"""

from __future__ import annotations

import numpy as np
import torch

from vladapter.core.inputs import Features, TaskData, attention_mask, pad, stack_visual
from vladapter.errors import DataError
from vladapter.train.sampler import BatchSpec, shard


class BatchBuilder(torch.utils.data.Dataset):
    """Map-style dataset: ``builder[BatchSpec]`` -> this rank's batch as tensors.

    Keys: task, input_ids, attention_mask, vis_feats, vis_mask, img_order, labels,
    weights (per-example loss weights), n_global (rows of the global batch).
    """

    def __init__(self, data: dict[str, TaskData], tokenizer, features: Features, *, prefix: bool,
                 seed: int = 0, rank: int = 0, world_size: int = 1, model_task: str | None = None):
        self.data = data
        self.tokenizer = tokenizer
        self.features = features
        self.prefix = prefix
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.model_task = model_task  # pre-training routes every objective as one task

    def __len__(self) -> int:  # specs are not integers; the sampler drives the DataLoader
        return sum(len(d.records) for d in self.data.values())

    def examples(self, spec: BatchSpec):
        """The (source, target, weight) of every row of the global batch, deterministic in the spec."""
        td = self.data[spec.task]
        out = []
        for i in spec.indices:
            rng = np.random.default_rng([self.seed, spec.epoch, i, 1])
            try:
                out.append(td.task.example(td.records[i], rng, self.prefix))
            except ValueError as e:
                raise DataError(str(e), record=f"{spec.task}:{td.records[i].uid}", fix="re-run `vladapter prepare`") from None
        return out

    def __getitem__(self, spec: BatchSpec) -> dict:
        td = self.data[spec.task]
        task = td.task
        examples = self.examples(spec)
        sources = self.tokenizer([e.source for e in examples], truncation=True,
                                 max_length=task.max_input_tokens)["input_ids"]
        length = max(map(len, sources))  # global padding: identical inputs whatever the world size
        rows = shard(tuple(range(len(examples))), self.rank, self.world_size)
        local = [examples[r] for r in rows]
        targets = self.tokenizer([e.target for e in local], truncation=True,
                                 max_length=task.max_target_tokens)["input_ids"]
        input_ids = pad([sources[r] for r in rows], self.tokenizer.pad_token_id, length)
        batch = {
            "task": self.model_task or task.name,
            "input_ids": input_ids,
            "attention_mask": attention_mask([len(sources[r]) for r in rows], length),
            "labels": pad(targets, -100),
            "weights": torch.tensor([e.weight for e in local], dtype=torch.float32),
            "n_global": len(examples),
        }
        local_records = [td.records[spec.indices[r]] for r in rows]
        batch.update(stack_visual(self.features, local_records))
        return batch
