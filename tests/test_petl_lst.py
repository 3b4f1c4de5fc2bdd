"""LST (ladder side-tuning): accounting, no backward through the backbone, the VL wiring,
generation, the Fisher-pruning initialisation, and a resumed run on both tiny LMs."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vl_world
from workflow_helpers import kill_at_checkpoint
from vladapter import petl
from vladapter.errors import ConfigError
from vladapter.models import build_vl_model
from vladapter.petl.accounting import parameter_table
from vladapter.petl.lst import LSTConfig
from vladapter.petl.lst_init import fisher_importance, initialise, pruned_side_state
from vladapter.petl.registry import Preset

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
LMS = ("tiny-t5", "tiny-bart")
VOCAB, FEAT, N_VIS = 60, 16, 4


@pytest.fixture(scope="module")
def bases():
    torch.manual_seed(0)
    return {lm: build_vl_model(lm, feat_dim=FEAT, n_vis_tokens=N_VIS, vocab_size=VOCAB) for lm in LMS}


def lst(bases, lm, **overrides):
    return petl.apply(copy.deepcopy(bases[lm]), "lst", tasks=["vqa"], **overrides)


def batch(seed: int = 0, b: int = 2, text: int = 5):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (b, text), generator=g)
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids), vis_feats=torch.randn(b, N_VIS, FEAT, generator=g),
                labels=torch.randint(5, VOCAB, (b, 3), generator=g))


# --- accounting ---------------------------------------------------------------------------

def test_t5_base_percentage_is_the_papers_and_bart_base_is_counted_alike():
    t5 = parameter_table("t5-base", "image", presets=["lst"])[0]
    assert t5["percent"] == pytest.approx(7.46, abs=0.05) and t5["paper_percent"] == 7.46
    # what is counted: 12+12 T5 blocks at d 192 (d_ff 768, 12 heads of 16; one relative bias
    # per stack), 13 downsamplers per stack (input + 12 ladders, no bias as in T5), 24 gates,
    # two final LayerNorms, the upsampler and the visual embedding (1,582,848)
    enc_block, dec_block = 4 * 192 * 192 + 2 * 192 * 768 + 2 * 192, 8 * 192 * 192 + 2 * 192 * 768 + 3 * 192
    side = 12 * (enc_block + dec_block) + 2 * 32 * 12 + 26 * 768 * 192 + 24 + 2 * 192 + 192 * 768
    assert t5["trainable"] == side + 1_582_848
    bart = parameter_table("bart-base", "image", presets=["lst"])[0]
    assert bart["paper_percent"] is None and 6.0 < bart["percent"] < 7.46  # biases, but 6+6 layers


# --- the backbone has no autograd graph -----------------------------------------------------

def _graph_leaves(loss: torch.Tensor) -> set[int]:
    """ids of the tensors the autograd graph of ``loss`` accumulates gradients into."""
    seen, leaves, stack = set(), set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if hasattr(node, "variable"):
            leaves.add(id(node.variable))
        stack.extend(n for n, _ in node.next_functions)
    return leaves


@pytest.mark.parametrize("lm", LMS)
def test_no_backbone_parameter_or_activation_gets_a_gradient(bases, lm):
    model = lst(bases, lm)
    assert not petl.needs_backbone_grad(model) and petl.needs_backbone_grad(petl.apply(
        copy.deepcopy(bases[lm]), "single_adapter", tasks=["vqa"]))
    model.train()
    carrying = []
    # every backbone module but the LM head (it reads the side network's output, as LST
    # wants) and the decoder stack, whose output the side network replaces
    head = {"lm", "lm.lm_head", "lm.model", "lm.decoder", "lm.model.decoder"}
    hooks = [m.register_forward_hook(lambda m, a, o, name=name: carrying.append(name) if any(
        torch.is_tensor(t) and t.requires_grad for t in (o if isinstance(o, tuple) else
                                                          (getattr(o, "last_hidden_state", o),))) else None)
        for name, m in model.named_modules() if name.startswith("lm") and name not in head]
    loss = model(**batch(), task="vqa").loss
    for h in hooks:
        h.remove()
    assert carrying == []
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    leaves = _graph_leaves(loss)
    assert leaves and leaves <= trainable  # the graph ends in trained tensors only
    loss.backward()
    assert all(p.grad is None for p in model.lm.parameters())
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_the_backbone_encoder_reads_the_text_only_and_the_side_reads_the_image(bases):
    for lm in LMS:
        model = lst(bases, lm).eval()
        lengths = []
        encoder = model.lm.encoder if lm == "tiny-t5" else model.lm.model.encoder
        h = encoder.register_forward_hook(lambda m, a, o: lengths.append(o.last_hidden_state.shape[1]))
        b = batch(text=5)
        with torch.no_grad():
            out = model(**b).logits
            other = model(**{**b, "vis_feats": b["vis_feats"] + 1}).logits
        h.remove()
        assert lengths == [5, 5]  # 5 text tokens, no visual token
        assert not torch.allclose(out, other)  # the image reaches the output through the side


def test_the_ladder_gives_nothing_at_the_visual_positions(bases):
    """The backbone never saw the visual tokens: its downsampled activations count as zero there
    (BART's downsamplers have a bias: zero, not the bias), as the LST reference pads them."""
    model = lst(bases, "tiny-bart").eval()
    with torch.no_grad():
        model.side.encoder.gates.fill_(-100.0)  # mu = 0: the side stream is the ladder alone
    seen = []
    model.side.encoder.blocks[0].register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    b = batch(5, text=5)
    with torch.no_grad():
        model(**b)
    assert seen[0][:, 5:].abs().max() == 0 and seen[0][:, :5].abs().max() > 0


@pytest.mark.parametrize("lm", LMS)
def test_a_full_width_side_copy_with_closed_gates_computes_the_vl_backbone(bases, lm):
    """The whole VL wiring at once: a side network of the backbone's own width (r = 1) holding
    a copy of the backbone's blocks, with identity input, ladder and output projections and
    closed gates (mu = 1: nothing from the text-only backbone) computes exactly what the VL
    backbone computes on text + image: the same positions (text only), masks, visual tokens,
    cross-attention and LM head (T5's d^-0.5 scaling, BART's final bias)."""
    bare = copy.deepcopy(bases[lm]).eval()
    model = lst(bases, lm, reduction_factor=1, init="random").eval()
    state = pruned_side_state(model, {n: torch.ones_like(p) for n, p in model.lm.named_parameters()})
    eye = torch.eye(model.d_model)
    with torch.no_grad():
        model.side.load_state_dict(state, strict=False)
        for name, p in model.side.named_parameters():
            if re.fullmatch(r"((en|de)coder\.(input|down\.\d+)|up)\.(weight|bias)", name):
                p.copy_(eye if name.endswith("weight") else torch.zeros_like(p))
        model.side.encoder.gates.fill_(100.0)  # mu = sigmoid(100 / T) = 1
        model.side.decoder.gates.fill_(100.0)
    b = batch(4)
    b["vis_feats"] = torch.randn(2, N_VIS, FEAT)
    with torch.no_grad():
        assert torch.equal(model(**b, task="vqa").logits, bare(**b, task="vqa").logits)
        model.side.decoder.gates.fill_(0.0)  # open ladders: the text-only backbone's states come in
        assert not torch.allclose(model(**b, task="vqa").logits, bare(**b, task="vqa").logits)


@pytest.mark.parametrize("lm", LMS)
def test_hooks_come_out_and_give_back_the_bare_backbone(bases, lm):
    model, bare = lst(bases, lm).eval(), copy.deepcopy(bases[lm]).eval()
    b = batch(3)
    petl.remove(model)
    assert not hasattr(model, "side") and model.generation_options == {}
    with torch.no_grad():
        assert torch.equal(model(**b).logits, bare(**b).logits)


def test_what_would_reconnect_the_backbone_is_refused(bases):
    with pytest.raises(ConfigError, match="trains no backbone parameter"):
        petl.apply(copy.deepcopy(bases["tiny-t5"]), Preset("x", "x", (LSTConfig(),), ("layernorm",)))
    with pytest.raises(ConfigError, match="reduction_factor"):
        lst(bases, "tiny-t5", reduction_factor=3)
    with pytest.raises(ConfigError, match="layers"):
        lst(bases, "tiny-t5", layers=[0, 5])
    with pytest.raises(ConfigError, match="init"):
        lst(bases, "tiny-bart", init="magnitude")


def test_layer_dropping_builds_side_blocks_only_where_asked(bases):
    model = lst(bases, "tiny-bart", layers=[1])
    assert len(model.side.encoder.blocks) == len(model.side.decoder.blocks) == 1
    assert model.side.encoder.layers == (1,)
    model(**batch(), task="vqa").loss.backward()


# --- generation -----------------------------------------------------------------------------

@pytest.mark.parametrize("lm", LMS)
def test_greedy_and_beam_generation_follow_the_side_network(bases, lm):
    model = lst(bases, lm)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-2)
    for i in range(3):  # away from the initialisation, so that the output depends on the side
        model(**batch(i), task="vqa").loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    b = batch(9, b=3)
    inputs = {k: b[k] for k in ("input_ids", "attention_mask", "vis_feats")}
    greedy = model.generate(**inputs, max_new_tokens=4)
    # greedy decoding = the argmax of a teacher-forced forward over its own output
    start = torch.full((3, 1), model.lm.config.decoder_start_token_id)
    with torch.no_grad():
        logits = model(**inputs, decoder_input_ids=torch.cat([start, greedy[:, :-1]], 1)).logits
    eos, pad = model.lm.config.eos_token_id, model.lm.config.pad_token_id
    for row, ids in zip(logits.argmax(-1), greedy):
        n = int((ids != pad).sum()) if (ids == eos).any() else len(ids)
        assert torch.equal(row[:n], ids[:n])
    # beam search: each example's beams read its own side encoder output (batch = each alone)
    beams = model.generate(**inputs, max_new_tokens=4, num_beams=3)
    for i in range(3):
        alone = model.generate(**{k: v[i:i + 1] for k, v in inputs.items()}, max_new_tokens=4, num_beams=3)
        assert torch.equal(beams[i, :alone.shape[1]], alone[0])


# --- Fisher pruning -------------------------------------------------------------------------

def examples(n: int):
    for k in range(n):
        b = batch(100 + k, b=1)
        yield {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"], "labels": b["labels"]}


def test_fisher_importance_is_the_sum_of_squared_per_example_gradients(bases):
    model = lst(bases, "tiny-t5")
    importance, n = fisher_importance(model, examples(3))
    assert n == 3 and not any(p.requires_grad for p in model.lm.parameters())
    name = "encoder.block.1.layer.1.DenseReluDense.wi.weight"
    param = dict(model.lm.named_parameters())[name]
    expected = torch.zeros_like(param)
    ref = copy.deepcopy(bases["tiny-t5"]).eval()
    p = dict(ref.lm.named_parameters())[name]
    for ex in examples(3):
        loss = ref.lm(inputs_embeds=ref.lm.get_input_embeddings()(ex["input_ids"]),
                      attention_mask=ex["attention_mask"], labels=ex["labels"]).loss
        expected += torch.autograd.grad(loss, p)[0].square()
    assert torch.allclose(importance[name], expected, rtol=1e-5, atol=1e-12)


def _columns(side: torch.Tensor, full: torch.Tensor) -> list[int]:
    """For each column of ``side``, the index of the equal column of ``full`` (rows already picked)."""
    return [int((full == side[:, j:j + 1]).all(0).nonzero()[0]) for j in range(side.shape[1])]


@pytest.mark.parametrize("lm", LMS)
def test_pruning_copies_the_most_important_rows_columns_and_layernorm_entries(bases, lm):
    model = lst(bases, lm)
    with torch.no_grad():  # distinct LayerNorm entries, so that the copied ones can be told apart
        for name, p in model.lm.named_parameters():
            if "norm" in name:
                p.copy_(torch.rand_like(p))
    lm_params = {n: p.detach() for n, p in model.lm.named_parameters()}
    importance = {n: torch.rand_like(p) for n, p in lm_params.items()}
    state = pruned_side_state(model, importance)
    assert set(state) >= {n for n, _ in model.side.named_parameters() if ".blocks." in n}
    if lm == "tiny-t5":
        base, ffn_in, ffn_out, norm = "encoder.block", "layer.1.DenseReluDense.wi", "layer.1.DenseReluDense.wo", \
            "layer.1.layer_norm"
    else:
        base, ffn_in, ffn_out, norm = "model.encoder.layers", "fc1", "fc2", "final_layer_norm"
    residual = []
    for i in (0, 1):
        wi = lm_params[f"{base}.{i}.{ffn_in}.weight"]
        d_ff, d = wi.shape
        score = importance[f"{base}.{i}.{ffn_in}.weight"].sum(1) + importance[f"{base}.{i}.{ffn_out}.weight"].sum(0)
        if lm == "tiny-bart":
            score = score + importance[f"{base}.{i}.{ffn_in}.bias"]
        keep = torch.sort(torch.topk(score, d_ff // 4).indices).values
        side = state[f"encoder.blocks.{i}.{ffn_in}.weight"]
        assert side.shape == (d_ff // 4, d // 4)
        cols = _columns(side, wi[keep])  # the top quarter of hidden units, a quarter of the inputs
        assert cols == sorted(cols)
        assert torch.equal(state[f"encoder.blocks.{i}.{norm}.weight"], lm_params[f"{base}.{i}.{norm}.weight"][cols])
        residual.append(cols)
    assert residual[0] == residual[1]  # one residual subspace for the whole stack


@pytest.mark.parametrize("lm", LMS)
def test_fisher_initialisation_is_kept_for_a_resume_and_reused_for_the_same_inputs(bases, lm, tmp_path):
    model = lst(bases, lm)
    info = initialise(model, examples, "toy", tmp_path)
    assert info["init"] == "fisher" and info["source"] == "computed" and info["fisher_examples"] == 1024
    assert (tmp_path / "side_init.safetensors").is_file()
    again = lst(bases, lm)
    assert initialise(again, examples, "toy", tmp_path)["source"] == "reused"  # same process
    from vladapter.petl import lst_init
    lst_init._CACHE.clear()
    third = lst(bases, lm)
    assert initialise(third, examples, "toy", tmp_path)["source"] == "resumed"  # from the work folder
    pruned, fresh = model.side.state_dict(), third.side.state_dict()
    blocks = [n for n in pruned if ".blocks." in n]
    assert blocks and all(torch.equal(pruned[n], fresh[n]) for n in blocks)
    assert initialise(lst(bases, lm, init="random"), examples, "toy", tmp_path) == {"init": "random"}


# --- a training run: resume after a kill equals an uninterrupted run -------------------------

VLADAPTER = [sys.executable, "-m", "vladapter.cli"]
RESUMABLE = ["--steps", "16", "--checkpoint-every", "4", "--keep-checkpoints", "2"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    built = vl_world.build(root)
    config = root / "lst.yaml"
    config.write_text(json.dumps({"train": {"method": "lst", "method_overrides": {"fisher_examples": 24}}}))
    return {**built, "config": config}


def train_args(world, lm, out, *extra):
    return [*VLADAPTER, "train", "--config", str(world["config"]), "--lm", lm, "--prepared", str(world["prepared"]),
            "--features", str(world["features"]), "--tokenizer", str(world["tokenizer"]),
            "--tasks", "vqa,nlvr,caption", "--batch-size", "6", "--lr", "3e-3", "--log-every", "4",
            "--out", str(out), *RESUMABLE, *extra]


def env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}


@pytest.mark.parametrize("lm", LMS)
def test_a_resumed_lst_run_equals_an_uninterrupted_one(world, tmp_path, lm):
    full = tmp_path / "full"
    subprocess.run(train_args(world, lm, full), check=True, env=env(), capture_output=True)
    info = json.loads((full / "train.json").read_text())
    assert info["side_init"]["init"] == "fisher" and info["side_init"]["fisher_examples"] == 24
    assert info["config"]["method"] == "lst"
    saved = load_file(full / "adapter.safetensors")
    assert saved and all(k.startswith(("side.", "visual.")) for k in saved)  # trained tensors only

    killed = tmp_path / "killed"
    kill_at_checkpoint(train_args(world, lm, killed), env(), killed)
    resumed = subprocess.run(train_args(world, lm, killed, "--resume"), check=True, env=env(),
                             capture_output=True, text=True)
    assert "resumed from step" in resumed.stdout
    assert json.loads((killed / "train.json").read_text())["side_init"]["source"] == "resumed"
    again = load_file(killed / "adapter.safetensors")
    assert saved.keys() == again.keys()
    assert all(torch.equal(saved[k], again[k]) for k in saved)

    # the run reloads for evaluation and generates
    from vladapter.core.model import load_trained

    model, _ = load_trained(full)
    b = batch(1)
    ids = model.generate(b["input_ids"].clamp(max=20), b["attention_mask"], torch.randn(2, 16, 16), num_beams=2,
                         max_new_tokens=3)
    assert ids.shape[0] == 2


def test_gradient_checkpointing_is_refused(world, tmp_path):
    proc = subprocess.run(train_args(world, "tiny-t5", tmp_path / "run", "--grad-checkpointing", "true"), env=env(),
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "grad_checkpointing" in proc.stderr and "Traceback" not in proc.stderr


# --- the benchmark table ---------------------------------------------------

def test_memory_table_has_one_column_per_batch_and_ratios_per_batch():
    sys.path.insert(0, str(REPO / "benchmarks"))
    import train_step

    def r(preset, batch, rss):
        return {"lm": "a", "preset": preset, "batch_size": batch, "trainable": 10, "total": 100, "step_s": 1.0,
                "peak_rss_bytes": rss * 2**20, "optimizer_state_bytes": 8, "flops_per_step": 1.0,
                "frozen_params_with_grad": 0, "grad_bytes": 4}

    rows = train_step.with_ratios([r("full_finetuning", 8, 1000), r("lst", 8, 300),
                                   r("full_finetuning", 32, 2000), r("lst", 32, 400)])
    assert [x["memory_ratio"] for x in rows] == [1.0, 0.3, 1.0, 0.2]
    table = train_step.memory_table(rows)
    assert "batch 8" in table and "batch 32" in table and "| a | lst | 300 (0.30x) | 400 (0.20x) |" in table
