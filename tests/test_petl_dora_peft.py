"""Our DoRA computes what `peft`'s DoRA (``use_dora=True``) computes, given the same
weights; merged into the projections it gives the same outputs."""

from __future__ import annotations

import copy

import peft  # the `test` extra installs it
import pytest
import torch

from vladapter import petl
from vladapter.errors import ConfigError
from vladapter.models import build_vl_model

torch.set_num_threads(1)

PEFT_TARGETS = {"tiny-t5": ["q", "v"], "tiny-bart": ["q_proj", "v_proj"]}


def inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 50, (2, 6), generator=g)
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids), vis_feats=torch.randn(2, 4, 16, generator=g),
                labels=torch.randint(5, 50, (2, 3), generator=g), task="vqa")


def trained_dora(base, **overrides):
    """DoRA on ``base`` with random B and magnitudes away from ||W||: every part matters."""
    model = petl.apply(copy.deepcopy(base), "dora", tasks=["vqa"], rank=8, alpha=16.0, **overrides)
    doras = {name: m for name, m in model.named_modules() if name.endswith(".dora")}
    with torch.no_grad():
        for dora in doras.values():
            for task in dora.B:
                torch.nn.init.normal_(dora.B[task].weight, std=0.5)
                dora.magnitude[task].weight.mul_(1 + 0.5 * torch.rand_like(dora.magnitude[task].weight))
    return model.eval(), doras


@pytest.fixture(scope="module", params=["tiny-t5", "tiny-bart"])
def base(request):
    torch.manual_seed(0)
    return request.param, build_vl_model(request.param, feat_dim=16, n_vis_tokens=4, vocab_size=50).eval()


def test_dora_matches_peft(base):
    lm, base = base
    ours, doras = trained_dora(base)
    assert len(doras) == 6 * 2  # q, v x (2 encoder self + 2 decoder self + 2 decoder cross)
    theirs = copy.deepcopy(base)
    config = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=PEFT_TARGETS[lm], use_dora=True)
    peft.inject_adapter_in_model(config, theirs.lm)
    params = dict(theirs.named_parameters())
    with torch.no_grad():
        for name, dora in doras.items():
            host = name[: -len(".dora")]
            params[f"{host}.lora_A.default.weight"].copy_(dora.A["vqa"].weight)
            params[f"{host}.lora_B.default.weight"].copy_(dora.B["vqa"].weight)
            params[f"{host}.lora_magnitude_vector.default.weight"].copy_(dora.magnitude["vqa"].weight)
    theirs.eval()
    with torch.no_grad():
        a, b, plain = ours(**inputs()).logits, theirs(**inputs()).logits, base(**inputs()).logits
    assert (a - b).abs().max() <= 1e-5
    assert (a - plain).abs().max() > 1e-2  # the DoRA update did something, far above the tolerance

    # the same gradients: the norm ||W + sBA|| is a constant in the backward pass in both (the
    # paper's section 4.3); with a norm that took gradients, B's and m's would differ. In
    # float64: float32 rounding through the T5 encoder alone reaches 1e-4
    ours.double(), theirs.double()
    x = {**inputs(), "vis_feats": inputs()["vis_feats"].double()}
    ours(**x).loss.backward()
    theirs(**x).loss.backward()
    for name, dora in doras.items():
        host = name[: -len(".dora")]
        for mine, peft_name in ((dora.B["vqa"].weight, "lora_B"), (dora.magnitude["vqa"].weight,
                                                                   "lora_magnitude_vector")):
            assert (mine.grad - params[f"{host}.{peft_name}.default.weight"].grad).abs().max() <= 1e-10


def test_untrained_dora_leaves_outputs_unchanged(base):
    _, base = base
    model = petl.apply(copy.deepcopy(base), "dora", tasks=["vqa"]).eval()  # B = 0, m = ||W||
    with torch.no_grad():
        assert torch.allclose(model(**inputs()).logits, base(**inputs()).logits, atol=1e-5)


def test_merged_weights_give_the_same_outputs(base):
    _, base = base
    model, doras = trained_dora(base)
    hosts = [name.removesuffix(".dora") for name in doras]
    with torch.no_grad():
        before = model(**inputs()).logits
        weight = model.get_submodule(hosts[0]).weight.clone()
        petl.merge(model)
        after = model(**inputs()).logits
    assert not torch.equal(model.get_submodule(hosts[0]).weight, weight)  # the weight itself changed
    assert not any(name.endswith(".dora") for name, _ in model.named_modules())  # the method is gone
    assert torch.allclose(after, before, atol=1e-5)
    # a fresh base model given only the merged projection weights computes the same
    plain = copy.deepcopy(base)
    with torch.no_grad():
        for host in hosts:
            plain.get_submodule(host).weight.copy_(model.get_submodule(host).weight)
        assert torch.allclose(plain(**inputs()).logits, before, atol=1e-5)


def test_per_task_dora_routes_and_merges_one_task(base):
    _, base = base
    model = petl.apply(copy.deepcopy(base), "dora", tasks=["vqa", "gqa"], shared=False).eval()
    dora = next(m for n, m in model.named_modules() if n.endswith(".dora"))
    assert dora.magnitude["vqa"] is not dora.magnitude["gqa"]
    with torch.no_grad():
        for d in (m for n, m in model.named_modules() if n.endswith(".dora")):
            torch.nn.init.normal_(d.B["gqa"].weight, std=0.5)
        gqa = model(**{**inputs(), "task": "gqa"}).logits
        assert not torch.allclose(gqa, model(**inputs()).logits, atol=1e-3)  # vqa's DoRA is still untrained
        with pytest.raises(ConfigError, match="merge one of them"):
            petl.merge(model)
        petl.merge(model, task="gqa")
        assert torch.allclose(model(**{**inputs(), "task": "gqa"}).logits, gqa, atol=1e-5)
