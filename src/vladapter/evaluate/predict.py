"""Predictions of a trained model: generation (greedy or beam) or scoring fixed candidates."""

from __future__ import annotations

from typing import Sequence

import torch
from tqdm.auto import tqdm

from vladapter.data.records import Record
from vladapter.tasks import Task
from vladapter.core.inputs import MODEL_INPUTS, Features, encode_sources, pad, to_device
from vladapter.core.model import resolve_precision


@torch.no_grad()
def candidate_log_likelihoods(model, batch: dict, candidates: Sequence[Sequence[str]], tokenizer) -> torch.Tensor:
    """(B, K) summed token log-probabilities of each example's K candidate targets.

    Examples with fewer candidates get -inf in the missing columns.
    """
    n_cand = max(map(len, candidates))
    rows = [i for i, cands in enumerate(candidates) for _ in cands]
    flat = [c for cands in candidates for c in cands]
    index = torch.tensor(rows, device=batch["input_ids"].device)
    inputs = {k: batch[k].index_select(0, index) for k in MODEL_INPUTS}
    labels = pad(tokenizer(flat)["input_ids"], -100).to(index.device)
    decoder_input_ids = model.lm.prepare_decoder_input_ids_from_labels(labels=labels)
    logits = model(**inputs, task=batch["task"], decoder_input_ids=decoder_input_ids).logits.float()
    logp = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    totals = (logp * (labels != -100)).sum(1)
    out = torch.full((len(candidates), n_cand), float("-inf"), device=totals.device)
    col = 0
    for i, cands in enumerate(candidates):
        out[i, :len(cands)] = totals[col:col + len(cands)]
        col += len(cands)
    return out


@torch.no_grad()
def predict(model, task: Task, records: Sequence[Record], tokenizer, features: Features, *, prefix: bool,
            batch_size: int = 64, num_beams: int | None = None, max_new_tokens: int | None = None,
            device: torch.device | str = "cpu", desc: str | None = None, precision: str = "auto") -> list[str]:
    """One prediction string per record, in order.

    Tasks with fixed candidates (NLVR2 true/false, video QA a0..a4) pick the candidate
    with the highest likelihood; the others decode with ``num_beams`` beams up to
    ``max_new_tokens`` (None: the task's defaults). ``precision`` as in training (auto:
    bf16 autocast on a GPU that has it, fp32 on CPU); scores are summed in float32.
    """
    model.eval()
    device = torch.device(device)
    dtype = resolve_precision(precision, device)
    autocast = torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
    preds: list[str] = []
    beams = num_beams or task.num_beams
    limit = max_new_tokens or task.max_new_tokens
    for start in tqdm(range(0, len(records), batch_size), desc=desc or f"predict {task.name}", unit="batch"):
        chunk = records[start:start + batch_size]
        batch = to_device(encode_sources(tokenizer, task, chunk, features, prefix), device)
        candidates = [task.candidates(r) for r in chunk]
        if candidates[0] is not None:
            with autocast:
                scores = candidate_log_likelihoods(model, batch, candidates, tokenizer)
            preds.extend(c[j] for c, j in zip(candidates, scores.argmax(1).tolist()))  # one copy per batch
        else:
            with autocast:
                ids = model.generate(**{k: batch[k] for k in MODEL_INPUTS}, task=batch["task"],
                                     max_new_tokens=limit, num_beams=beams)
            preds.extend(t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True))
    return preds
