"""The benchmark harness: measurement helpers, and the benchmarks themselves on tiny models.

The real numbers (bart-base / t5-base, batch 16) are in BENCHMARKS.md; here the scripts run
end to end on the toy architecture, and what must hold whatever the machine is asserted:
optimiser state exactly proportional to the trainable parameters, no gradient on a frozen
parameter, our implementations computing what the peer libraries compute.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _util  # noqa: E402
import train_step  # noqa: E402

torch.set_num_threads(1)
SHAPES = ["--feat-dim", "64", "--n-vis", "16", "--batch-size", "4", "--text-len", "8", "--target-len", "6",
          "--threads", "1"]
TINY = [*SHAPES, "--warmup", "0", "--repeats", "1"]


def test_time_call_counts_warmup_and_repeats():
    calls = []
    stats = _util.time_call(lambda: calls.append(1), warmup=2, repeats=5)
    assert len(calls) == 7
    assert len(stats["times_s"]) == 5
    assert stats["min_s"] <= stats["median_s"] <= max(stats["times_s"])
    with pytest.raises(ValueError):
        _util.time_call(lambda: None, repeats=0)


def test_optimizer_state_bytes_is_two_moments_per_trainable_parameter():
    model = torch.nn.Sequential(torch.nn.Linear(10, 20), torch.nn.Linear(20, 3))
    model[0].requires_grad_(False)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    model(torch.randn(2, 10)).sum().backward()
    opt.step()
    # exp_avg + exp_avg_sq in fp32 for 20*3+3 parameters, plus a float32 step per tensor
    assert _util.optimizer_state_bytes(opt) == 2 * 4 * 63 + 2 * 4


def test_run_child_returns_the_emitted_json_and_reports_failures(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(f"import sys; sys.path.insert(0, {str(BENCH)!r}); import _util\n"
                      "print('noise'); _util.emit_result({'peak': _util.peak_rss_bytes()})\n")
    out = _util.run_child([script])
    assert out["peak"] > 10 * 2**20  # a Python process has at least ~10 MiB resident
    bad = tmp_path / "bad.py"
    bad.write_text("raise SystemExit('broken on purpose')\n")
    with pytest.raises(RuntimeError, match="exit 1"):
        _util.run_child([bad])


def test_markdown_table_formats_numbers():
    md = _util.markdown_table(["a", "b"], [["x", 0.12345], ["y", 1234.5]])
    assert md.splitlines() == ["| a | b |", "|---|---|", "| x | 0.123 |", "| y | 1234.5 |"]


def test_ratios_are_against_full_finetuning_of_the_same_lm():
    def r(lm, preset, trainable, step, rss, state):
        return {"lm": lm, "preset": preset, "trainable": trainable, "total": 100, "step_s": step,
                "peak_rss_bytes": rss, "optimizer_state_bytes": state, "flops_per_step": 10.0,
                "frozen_params_with_grad": 0, "grad_bytes": 4 * trainable}

    rows = train_step.with_ratios([r("a", "full_finetuning", 100, 2.0, 1000, 800),
                                   r("a", "single_adapter", 10, 1.0, 400, 80),
                                   r("b", "full_finetuning", 50, 4.0, 100, 400),
                                   r("b", "single_adapter", 10, 1.0, 50, 100)])
    assert [x["time_ratio"] for x in rows] == [1.0, 0.5, 1.0, 0.25]
    assert [x["memory_ratio"] for x in rows] == [1.0, 0.4, 1.0, 0.5]
    assert [x["state_ok"] for x in rows] == [True, True, True, False]  # b: 0.25 state for 0.2 trainable


def test_live_tensors_counts_what_is_alive_and_its_peak():
    tracker = _util.live_tensors()
    weights = torch.zeros(1000)  # 4000 bytes that exist before
    tracker.track("weights", [weights, weights[:10]])  # a view of a counted storage adds nothing
    with tracker:
        tracker.phase = "a"
        x = torch.ones(2000)                # +8000
        y = x * 2                           # +8000: peak 20000
        y.add_(1)                           # in place: nothing new
        del x                               # -8000
        tracker.phase = "b"
        z = y[:100].clone()                 # +400
    assert tracker.peak == 20000 and tracker.at_peak == {"weights": 4000, "a": 16000}
    assert tracker.current == 4000 + 8000 + 400 and tracker.parts == {"weights": 4000, "a": 8000, "b": 400}
    del y, z
    assert tracker.current == 4000


def test_train_step_on_tiny_bart_reports_ratios_and_frozen_parameters_cost_nothing(tmp_path):
    out = tmp_path / "train_step.json"
    assert train_step.main(["--lms", "tiny-bart", "--presets", "single_adapter", "multiple_adapters", *SHAPES,
                            "--repeats", "2", "--lockstep", "--out", str(out), "--markdown", str(tmp_path / "t.md")]) == 0
    rows = {r["preset"]: r for r in json.loads(out.read_text())["results"]}
    full, adapter = rows["full_finetuning"], rows["single_adapter"]
    assert full["trainable"] == full["total"] and full["time_ratio"] == 1.0
    # timed in turns with full fine-tuning: the ratio is the median of the two pairs'
    assert len(full["step_times_s"]) == 4 and len(adapter["step_times_s"]) == 2
    assert adapter["time_ratio"] == adapter["paired_time_ratio"] > 0
    # peak of live tensors: full fine-tuning holds weights, their gradients and AdamW's two
    # moments at once; the adapter's optimiser holds state for its own parameters only
    weight_bytes = 4 * full["total"]
    assert full["peak_tensor_bytes"] >= 4 * weight_bytes - 2**20
    assert full["peak_tensor_parts"]["optimizer state"] == full["optimizer_state_bytes"]
    assert adapter["peak_tensor_parts"]["optimizer state"] == adapter["optimizer_state_bytes"]
    assert adapter["memory_ratio"] == adapter["peak_tensor_bytes"] / full["peak_tensor_bytes"] < 0.7
    assert adapter["frozen_params_with_grad"] == 0
    # AdamW: two fp32 moments per trainable parameter + one fp32 step per tensor; no more
    n_tensors = (adapter["optimizer_state_bytes"] - 8 * adapter["trainable"]) / 4
    assert n_tensors == int(n_tensors) and 0 < n_tensors < 200
    assert adapter["grad_bytes"] == 4 * adapter["trainable"]
    assert adapter["state_ok"] and abs(adapter["state_ratio"] - adapter["trainable_fraction"]) < 0.01
    # per-task adapters: the caption batch steps only the caption adapters (+ shared parts),
    # and the optimiser holds state for exactly those
    multiple = rows["multiple_adapters"]
    assert multiple["stepped_fraction"] < 0.5 * multiple["trainable_fraction"]
    assert multiple["state_ok"] and multiple["frozen_params_with_grad"] == 0
    # frozen weights need no weight gradients: fewer FLOPs per step
    assert adapter["flops_ratio"] < 0.9
    assert "| tiny-bart | single_adapter |" in (tmp_path / "t.md").read_text()


@pytest.mark.slow  # creates benchmarks/out/peers-venv (adapters + its transformers) on first use
def test_peers_compute_what_our_lora_dora_and_adapter_compute(tmp_path):
    import peers

    out = tmp_path / "peers.json"
    assert peers.main(["--lm", "tiny-bart", "--steps", "2", *SHAPES, "--exchange", str(tmp_path / "x"),
                       "--out", str(out), "--markdown", str(tmp_path / "p.md")]) == 0
    rows = {r["comparison"]: r for r in json.loads(out.read_text())["rows"]}
    for comparison in ("lora", "dora", "adapter"):
        # the methods' weights move the logits, and both libraries move them the same way
        assert rows[comparison]["effect"] > 1e-3
        assert rows[comparison]["max_abs_diff"] <= 1e-5
    # same method, same work: FLOPs per step agree (the adapters peer lacks only our box
    # and image-order embeddings, which are additions, not matmuls of any size)
    assert rows["lora"]["ours_gflops"] == rows["lora"]["peer_gflops"]
    assert rows["lora"]["ours_trainable"] == rows["lora"]["peer_trainable"]
    assert rows["dora"]["ours_trainable"] == rows["dora"]["peer_trainable"]  # DoRA's VL-BART set on both
    assert rows["adapter"]["ours_gflops"] == pytest.approx(rows["adapter"]["peer_gflops"], rel=0.01)
    assert rows["adapter"]["time_ratio"] > 0


def test_loader_benchmark_drives_the_trainers_pipeline(tmp_path):
    import loader

    out = tmp_path / "loader.json"
    assert loader.main(["--workers", "0", "1", "--batches", "4", "--images", "8", "--records", "32",
                        "--dim", "32", "--batch-size", "4", "--step-s", "0.5",
                        "--out", str(out), "--markdown", str(tmp_path / "l.md")]) == 0
    results = json.loads(out.read_text())["results"]
    assert [r["workers"] for r in results] == [0, 1]
    for r in results:
        assert r["vis_shape"][1:] == [36, 32]  # 7x7 grid pooled to 36 tokens of the feature size
        assert r["batches_per_s"] > 0 and r["ratio_to_training"] == pytest.approx(0.5 * r["batches_per_s"])


def test_hyperformer_generates_all_layers_weights_in_one_call_per_stack():
    """Hot path: the hypernetwork runs once per stack forward, not once per layer/slot."""
    model = train_step.build("tiny-bart", "hyperformer", feat_dim=64, n_vis_tokens=16)
    calls = []
    for stack in (model.lm.model.encoder, model.lm.model.decoder):
        stack.hyperformer.generator.register_forward_hook(lambda m, a, out: calls.append(tuple(out.shape)))
    batch = train_step.synthetic_batch(model, 2, 8, 6, 16, 64, "cpu")
    model(**batch, task="vqa").loss.backward()
    n_layers = model.lm.config.encoder_layers
    assert len(calls) == 2 and all(shape[0] == n_layers for shape in calls)


def test_lockstep_children_take_turns_and_report(tmp_path):
    script = tmp_path / "stepper.py"
    script.write_text(f"import sys; sys.path.insert(0, {str(BENCH)!r}); import _util\n"
                      "n = []\ntimes = _util.serve_steps(lambda: n.append(1))\n"
                      "_util.emit_result({'steps': len(n), 'timed': len(times)})\n")
    a, b = _util.LockstepChild([script]), _util.LockstepChild([script])
    try:
        pairs = _util.lockstep(a, b, 3)
        assert len(pairs) == 3 and all(t >= 0 for pair in pairs for t in pair)
        assert a.finish() == {"steps": 3, "timed": 3} and b.finish() == {"steps": 3, "timed": 3}
    finally:
        a.kill()
        b.kill()
