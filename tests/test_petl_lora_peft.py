"""Our LoRA computes what `peft`'s LoRA computes, given the same weights."""

from __future__ import annotations

import copy

import peft  # the `test` extra installs it
import pytest
import torch

from vladapter import petl
from vladapter.models import build_vl_model

torch.set_num_threads(1)

# q and v of every attention module = the paper's targets (enc self, dec self, dec cross)
PEFT_TARGETS = {"tiny-t5": ["q", "v"], "tiny-bart": ["q_proj", "v_proj"]}


@pytest.mark.parametrize("lm", ["tiny-t5", "tiny-bart"])
def test_lora_matches_peft(lm):
    torch.manual_seed(0)
    base = build_vl_model(lm, feat_dim=16, n_vis_tokens=4, vocab_size=50)
    ours = petl.apply(copy.deepcopy(base), "single_lora", tasks=["vqa"], rank=8, alpha=16.0)
    theirs = copy.deepcopy(base)
    config = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=PEFT_TARGETS[lm])
    peft.inject_adapter_in_model(config, theirs.lm)

    loras = {name: m for name, m in ours.named_modules() if name.endswith(".lora")}
    assert len(loras) == 6 * 2  # q, v x (2 encoder self + 2 decoder self + 2 decoder cross)
    theirs_params = dict(theirs.named_parameters())
    with torch.no_grad():
        for name, lora in loras.items():
            torch.nn.init.normal_(lora.B["vqa"].weight)  # B = 0 would hide a wrong A or scale
            host = name[: -len(".lora")]
            theirs_params[f"{host}.lora_A.default.weight"].copy_(lora.A["vqa"].weight)
            theirs_params[f"{host}.lora_B.default.weight"].copy_(lora.B["vqa"].weight)

    ids = torch.randint(5, 50, (2, 6))
    inputs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), vis_feats=torch.randn(2, 4, 16),
                  labels=torch.randint(5, 50, (2, 3)), task="vqa")
    ours.eval(), theirs.eval()
    with torch.no_grad():
        a, b, plain = ours(**inputs).logits, theirs(**inputs).logits, base.eval()(**inputs).logits
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(a, plain, atol=1e-3)  # the LoRA update did something
