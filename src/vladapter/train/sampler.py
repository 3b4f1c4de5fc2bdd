"""The paper's multi-task sampler: round-robin over all tasks' batches, shuffled per epoch.

Each epoch, every task's examples are shuffled and cut into batches of that task's size;
the list "one entry per batch of each task" is shuffled, so tasks come in proportion to
their size and every example is seen once per epoch. Everything is a pure function of
(seed, epoch), so a resumed or distributed run sees exactly the same batches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Mapping

import numpy as np


@dataclass(frozen=True)
class BatchSpec:
    """One global batch: which task and which of its examples (all ranks together)."""

    epoch: int
    step: int            # position in the whole run (micro-batch counter)
    task: str
    indices: tuple[int, ...]


class TaskSampler:
    """Deterministic multi-task batch order.

    sizes:        task -> number of examples
    batch_sizes:  task -> global batch size of that task
    min_batch:    batches smaller than this are dropped (DDP: every rank needs a row)
    """

    def __init__(self, sizes: Mapping[str, int], batch_sizes: Mapping[str, int], seed: int = 0,
                 min_batch: int = 1):
        if set(sizes) != set(batch_sizes):
            raise ValueError("sizes and batch_sizes must name the same tasks")
        self.tasks = sorted(sizes)
        self.sizes = dict(sizes)
        self.batch_sizes = {t: max(1, int(b)) for t, b in batch_sizes.items()}
        self.seed = seed
        self.min_batch = max(1, min_batch)
        if self.batches_per_epoch == 0:
            raise ValueError(f"no task has a batch of at least {self.min_batch} examples: {self.sizes}")

    def _n_batches(self, task: str) -> int:
        n, b = self.sizes[task], self.batch_sizes[task]
        full, rest = divmod(n, b)
        return full + (1 if rest >= self.min_batch else 0)

    @property
    def batches_per_epoch(self) -> int:
        return sum(self._n_batches(t) for t in self.tasks)

    def epoch(self, epoch: int) -> list[tuple[str, np.ndarray]]:
        """The epoch's batches in order: (task, example indices)."""
        batches: dict[str, list[np.ndarray]] = {}
        for k, task in enumerate(self.tasks):
            rng = np.random.default_rng([self.seed, epoch, k])
            perm = rng.permutation(self.sizes[task])
            b = self.batch_sizes[task]
            batches[task] = [perm[i:i + b] for i in range(0, self._n_batches(task) * b, b)]
        order = [t for t in self.tasks for _ in batches[t]]
        np.random.default_rng([self.seed, epoch, len(self.tasks)]).shuffle(order)
        position = {t: 0 for t in self.tasks}
        out = []
        for task in order:
            out.append((task, batches[task][position[task]]))
            position[task] += 1
        return out

    def iterate(self, start: int, stop: int) -> Iterator[BatchSpec]:
        """Global batches number ``start`` .. ``stop - 1`` of the run (epochs chained)."""
        per_epoch = self.batches_per_epoch
        step = start
        while step < stop:
            epoch, offset = divmod(step, per_epoch)
            for task, idx in self.epoch(epoch)[offset:]:
                if step >= stop:
                    return
                yield BatchSpec(epoch, step, task, tuple(int(i) for i in idx))
                step += 1

    def plan(self, start: int, stop: int) -> "RunPlan":
        """Global batches ``start`` .. ``stop - 1`` as a lazy sequence (see RunPlan)."""
        return RunPlan(self, start, stop)

    def total_batches(self, epochs: float) -> int:
        return int(math.ceil(epochs * self.batches_per_epoch))


class RunPlan:
    """The batches of a run, computed one epoch at a time while they are consumed.

    A list of every batch of a paper-scale run would be built before the first step
    (every epoch's permutation of every task) and held by every rank; this holds one
    epoch's order at a time. Iterable more than once (the loader and the loop each walk it).
    """

    def __init__(self, sampler: TaskSampler, start: int, stop: int):
        self.sampler, self.start, self.stop = sampler, start, max(start, stop)

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[BatchSpec]:
        return self.sampler.iterate(self.start, self.stop)


def shard(indices: tuple[int, ...], rank: int, world_size: int) -> tuple[int, ...]:
    """This rank's rows of a global batch (strided, so shards differ by at most one row)."""
    return indices[rank::world_size]


def fisher_order(data: dict, n: int) -> list[BatchSpec]:
    """``n`` one-example batches in a fixed order (each task shuffled with seed 0, the tasks
    in turn): what LST's Fisher pass reads, the same for every seed of a run."""
    orders = {t: np.random.default_rng(0).permutation(len(d.records)).tolist() for t, d in sorted(data.items())}
    specs: list[BatchSpec] = []
    position = 0
    while len(specs) < n and any(position < len(o) for o in orders.values()):
        for task, order in orders.items():
            if len(specs) < n and position < len(order):
                specs.append(BatchSpec(epoch=0, step=len(specs), task=task, indices=(order[position],)))
        position += 1
    return specs
