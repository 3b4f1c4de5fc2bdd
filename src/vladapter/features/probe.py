"""Linear-probe image features on the toy world's attributes (what do the features carry?).

For each attribute (colour, shape, size, count, position of the image's main shape, from
data/raw/<dataset>/toy_attributes.json) a scikit-learn logistic regression is fitted on a
training part of the images and scored on the rest, for two views of the features:
``pooled`` (the pooled CLIP vector) and ``grid`` (the grid tokens as the VL model receives
them: adaptive-max-pooled to n_tokens, flattened). Chance = always answering the most
frequent training class. Where the attributes list every shape of an image, the probe also
asks, per shape kind, whether the image contains one (``shape_presence``: the mean over
kinds). Writes a metrics JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from vladapter.errors import DataError
from vladapter.utils.io import write_json

ATTRIBUTES = ("colour", "shape", "size", "count", "position")


def load_attributes(path: str | Path) -> dict[str, dict]:
    path = Path(path)
    if not path.exists():
        raise DataError("attributes file not found", path=path, fix="toy worlds write it (vladapter toyworld)")
    try:
        attrs = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON ({e.msg})", path=path, fix="regenerate the toy world") from None
    if not isinstance(attrs, dict):
        raise DataError("expected an object: feature id -> attributes", path=path, fix="regenerate the toy world")
    return attrs


def shape_presence(attrs: dict[str, dict], ids: list[str]) -> dict[str, list[bool]]:
    """Per shape kind, whether each image contains one (from the ``shapes`` lists of the toy
    attributes; {} when absent). Unlike "shape of the largest shape", which is ambiguous
    when several shapes are large, this asks only what the image holds."""
    if not all(isinstance(attrs[i].get("shapes"), list) for i in ids):
        return {}
    kinds = sorted({s.get("shape") for i in ids for s in attrs[i]["shapes"]} - {None})
    return {k: [any(s.get("shape") == k for s in attrs[i]["shapes"]) for i in ids] for k in kinds}


def probe_attribute(x: np.ndarray, labels: list, test_fraction: float = 0.3, seed: int = 0) -> dict:
    """Fit a logistic regression on a random (1 - test_fraction) part; score on the rest."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    y = np.array([str(v) for v in labels])
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = max(1, int(round(len(y) * test_fraction)))
    test, train = order[:n_test], order[n_test:]
    scaler = StandardScaler().fit(x[train])
    classes, counts = np.unique(y[train], return_counts=True)
    if len(classes) < 2:
        return {"accuracy": 1.0, "chance": 1.0, "n_classes": 1}
    model = LogisticRegression(max_iter=500, C=0.5).fit(scaler.transform(x[train]), y[train])
    accuracy = float((model.predict(scaler.transform(x[test])) == y[test]).mean())
    chance = float((y[test] == classes[counts.argmax()]).mean())
    return {"accuracy": round(accuracy, 4), "chance": round(chance, 4), "n_classes": int(len(classes))}


def probe(features: str | Path, attributes: str | Path, names: tuple[str, ...] = ATTRIBUTES,
          views: tuple[str, ...] = ("pooled", "grid"), n_tokens: int = 16, test_fraction: float = 0.3,
          seed: int = 0, max_images: int | None = 2000) -> dict:
    """Probe every attribute in ``names`` on every view; returns the metrics dict.

    With more than ``max_images`` ids a random subset of that size (``seed``) is probed:
    the accuracies are as telling, and the fits stay seconds on a CPU."""
    from tqdm import tqdm

    from vladapter.features.store import FeatureStore  # (torch) here: `vladapter probe --help` stays fast

    store = FeatureStore(features, n_tokens=n_tokens)
    attrs = load_attributes(attributes)
    ids = [i for i in sorted(attrs) if i in store]
    if max_images and len(ids) > max_images:
        keep = np.random.default_rng(seed).choice(len(ids), max_images, replace=False)
        ids = [ids[k] for k in sorted(keep)]
    if len(ids) < 10:
        raise DataError(f"only {len(ids)} ids of the attributes file have features", path=attributes,
                        fix=f"probe the feature file of the same dataset (features: {features})")
    missing = [n for n in names if any(n not in attrs[i] for i in ids)]
    if missing:
        raise DataError(f"attributes {missing} missing for some ids", path=attributes, fix="choose --attributes-list")
    result = {"features": str(features), "attributes_file": str(attributes), "n_images": len(ids),
              "test_fraction": test_fraction, "views": {}}
    for view in views:
        if view == "pooled":
            x = np.stack([store.pooled(i) for i in tqdm(ids, desc="read pooled", unit="image")])
        elif view == "grid":
            x = np.stack([store.image(i).ravel() for i in tqdm(ids, desc="read grid", unit="image")])
        else:
            raise ValueError(f"unknown view {view!r} (pooled or grid)")
        scores = {n: probe_attribute(x, [attrs[i][n] for i in ids], test_fraction, seed) for n in names}
        scores["mean"] = {k: round(float(np.mean([scores[n][k] for n in names])), 4) for k in ("accuracy", "chance")}
        presence = shape_presence(attrs, ids)
        if presence:
            per_shape = {s: probe_attribute(x, labels, test_fraction, seed) for s, labels in presence.items()}
            scores["shape_presence"] = {
                k: round(float(np.mean([v[k] for v in per_shape.values()])), 4) for k in ("accuracy", "chance")}
            scores["shape_presence"]["per_shape"] = per_shape
        result["views"][view] = scores
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--features", type=Path, required=True, help="image feature HDF5 (extract-features)")
    parser.add_argument("--attributes", type=Path, required=True,
                        help="data/raw/<dataset>/toy_attributes.json (feature id -> attributes)")
    parser.add_argument("--out", "--output", dest="out", type=Path, required=True, help="metrics JSON to write")
    parser.add_argument("--attributes-list", default=",".join(ATTRIBUTES),
                        help=f"attributes to probe, comma-separated (default: {','.join(ATTRIBUTES)})")
    parser.add_argument("--views", default="pooled,grid",
                        help="feature views: pooled (CLIP vector), grid (n-token grid, flattened) (default: both)")
    parser.add_argument("--n-tokens", type=int, default=16, help="grid tokens for the grid view (default: 16)")
    parser.add_argument("--test-fraction", type=float, default=0.3, help="held-out fraction (default: 0.3)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default: 0)")
    parser.add_argument("--max-images", type=int, default=2000,
                        help="probe a random subset of at most this many images; 0 = all (default: 2000)")


def run(args: argparse.Namespace) -> int:
    result = probe(args.features, args.attributes, tuple(args.attributes_list.split(",")),
                   tuple(args.views.split(",")), args.n_tokens, args.test_fraction, args.seed,
                   args.max_images)
    write_json(args.out, result)
    for view, scores in result["views"].items():
        line = ", ".join(f"{n} {s['accuracy']:.2f} (chance {s['chance']:.2f})" for n, s in scores.items())
        print(f"{view}: {line}")
    return 0
