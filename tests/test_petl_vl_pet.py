"""VL-PET's modules compute the paper's equations where the reference puts them: gates of
four granularities on the encoder's adapted sublayer outputs, the lightweight decoder."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from vladapter import petl
from vladapter.models import build_vl_model
from vladapter.petl.compacter import PHMLinear

torch.set_num_threads(1)

VOCAB, FEAT, N_VIS = 60, 16, 4


@pytest.fixture(scope="module")
def bases():
    torch.manual_seed(0)
    return {lm: build_vl_model(lm, feat_dim=FEAT, n_vis_tokens=N_VIS, vocab_size=VOCAB).eval()
            for lm in ("tiny-bart", "tiny-t5")}


def applied(bases, lm, preset, **overrides):
    return petl.apply(copy.deepcopy(bases[lm]), preset, tasks=["vqa"], **overrides).eval()


def randomise(model):
    """Random values in every added tensor (zero-initialised ups would hide wiring errors)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(tag in name for tag in (".adapter.", ".gate.", ".value_adapter.")):
                p.normal_(std=0.3)
    return model


def inputs(seed=0, pad=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (2, 6), generator=g)
    mask = torch.ones_like(ids)
    if pad:
        mask[0, -pad:] = 0
    return dict(input_ids=ids, attention_mask=mask, vis_feats=torch.randn(2, N_VIS, FEAT, generator=g),
                labels=torch.randint(5, VOCAB, (2, 3), generator=g), task="vqa")


def adapter_out(adapter, h):
    return h + adapter.up["vqa"](F.gelu(adapter.down["vqa"](h)))


def test_bart_encoder_layer_is_the_papers_equation(bases):
    # BART (post-LN): out = LN(X + s * G(X) * (H + dH)) after self-attention and after the FFN
    model = randomise(applied(bases, "tiny-bart", "vl_pet_large"))
    layer = model.lm.model.encoder.layers[0]
    plain = bases["tiny-bart"].lm.model.encoder.layers[0]
    x = torch.randn(2, 5, model.d_model)

    def gated(gate, x, y):
        return torch.sigmoid(gate.up(F.gelu(gate.down(x)))) * y

    with torch.no_grad():
        h = plain.self_attn(x, attention_mask=None)[0]
        y = adapter_out(layer.self_attn.adapter, h)
        x2 = plain.self_attn_layer_norm(x + gated(layer.self_attn.gate.gate["vqa"], x, y))
        h2 = plain.fc2(plain.activation_fn(plain.fc1(x2)))
        y2 = adapter_out(layer.fc2.adapter, h2)
        expected = plain.final_layer_norm(x2 + gated(layer.fc2.gate.gate["vqa"], x2, y2))
        got = layer(x, attention_mask=None)
        before = plain(x, attention_mask=None)
    got, before = (t[0] if isinstance(t, tuple) else t for t in (got, before))
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, before, atol=1e-3)


def test_t5_ffn_sublayer_is_the_papers_equation_with_its_scale(bases):
    # T5 (pre-LN): out = X + s * G * (H + dH), H = FFN(LN(X)); s = 0.3 (the reference's T5 setting)
    model = randomise(applied(bases, "tiny-t5", "vl_pet_middle_x"))
    sub = model.lm.encoder.block[1].layer[1]
    plain = bases["tiny-t5"].lm.encoder.block[1].layer[1]
    x = torch.randn(2, 5, model.d_model)
    with torch.no_grad():
        y = adapter_out(sub.DenseReluDense.adapter, plain.DenseReluDense(plain.layer_norm(x)))
        gate = sub.DenseReluDense.gate
        expected = x + 0.3 * torch.sigmoid(gate.gate["vqa"].proj(x + y)) * y
        assert gate.scale == 0.3
        assert torch.allclose(sub(x), expected, atol=1e-5)


def test_small_gate_averages_over_the_real_tokens_only(bases):
    # the padded text tokens' content changes nothing: attention masks them and the small
    # gate's mean leaves them out (the reference's mean over every token would not)
    model = randomise(applied(bases, "tiny-bart", "vl_pet_small"))
    a, b = inputs(pad=3), inputs(pad=3)
    b["input_ids"] = b["input_ids"].clone()
    b["input_ids"][0, -3:] = (b["input_ids"][0, -3:] + 7) % (VOCAB - 5) + 5
    with torch.no_grad():
        assert torch.allclose(model(**a).logits, model(**b).logits, atol=1e-5)
        gate = model.lm.model.encoder.layers[0].self_attn.gate
        x, y = torch.randn(2, 9, model.d_model), torch.randn(2, 9, model.d_model)
        mask = torch.ones(2, 9, dtype=torch.long)
        mask[0, -3:] = 0
        small = gate.gate["vqa"]
        real = small(x, y, mask)
        per_token = torch.sigmoid(small.proj(torch.cat([x, y], -1)))
        assert real.shape == (2, 1, 1)
        assert torch.allclose(real[0, 0, 0], per_token[0, :6].mean()) and torch.allclose(real[1, 0, 0], per_token[1].mean())
        assert not torch.allclose(real[0], small(x, y, None)[0])


def test_middle_y_forms_and_identity_at_init(bases):
    # BART, s = 1: zero-initialised ups and G = 1 + 0 give exactly the base model at the start
    base = bases["tiny-bart"]
    model = applied(bases, "tiny-bart", "vl_pet_middle_y")
    with torch.no_grad():
        assert torch.allclose(model(**inputs()).logits, base(**inputs()).logits, atol=1e-6)
    gate = model.lm.model.encoder.layers[0].fc2.gate.gate["vqa"]
    y = torch.randn(2, 3, model.d_model)
    assert torch.equal(gate(None, y, None), torch.ones(model.d_model))
    paper = applied(bases, "tiny-bart", "vl_pet_middle_y", middle_y="sigmoid")
    assert torch.equal(paper.lm.model.encoder.layers[0].fc2.gate.gate["vqa"](None, y, None),
                       torch.full((model.d_model,), 0.5))


def test_lightweight_decoder_is_a_value_adapter_only(bases):
    for lm in ("tiny-bart", "tiny-t5"):
        model = randomise(applied(bases, lm, "vl_pet_large"))
        names = [n for n, _ in model.named_modules()]
        decoder = [n for n in names if ".decoder." in n and n.rsplit(".", 1)[-1] in ("adapter", "gate", "value_adapter")]
        assert decoder and all(n.endswith(("encoder_attn.v_proj.value_adapter", "EncDecAttention.v.value_adapter"))
                               for n in decoder)
        # V = W_v E + up(swish(down(E))) on the encoder output E
        host = model.get_submodule(decoder[0].rsplit(".", 1)[0])
        adapter = host.value_adapter
        e = torch.randn(2, 7, model.d_model)
        with torch.no_grad():
            expected = F.linear(e, host.weight, host.bias) + adapter.up["vqa"](F.silu(adapter.down["vqa"](e)))
            assert torch.allclose(host(e), expected, atol=1e-6)


def test_per_lm_settings_at_paper_scale():
    for lm, r, s in (("bart-base", 96, 1.0), ("t5-base", 192, 0.3)):
        model = build_vl_model(lm, feat_dim=2048, n_vis_tokens=36, device="meta")
        petl.apply(model, "vl_pet_large", tasks=["vqa"])
        slot = dict(model.named_modules())
        adapter = next(m for n, m in slot.items() if n.endswith(".adapter"))
        gated = next(m for n, m in slot.items() if n.endswith(".gate") and hasattr(m, "scale"))
        value = next(m for n, m in slot.items() if n.endswith(".value_adapter"))
        assert adapter.down["vqa"].out_features == r and gated.gate["vqa"].down.out_features == r
        assert gated.scale == s and value.down["vqa"].out_features == 96


def test_gate_and_lightweight_decoder_are_options_of_adapters_and_compacters(bases):
    plain = applied(bases, "tiny-bart", "single_adapter")
    gated = applied(bases, "tiny-bart", "single_adapter", gate="large", lightweight_decoder=True)
    names = lambda m, end: [n for n, _ in m.named_modules() if n.endswith(end)]  # noqa: E731
    assert len(names(plain, ".adapter")) == 10 and not names(plain, ".value_adapter")
    assert len(names(gated, ".adapter")) == 4 and len(names(gated, ".value_adapter")) == 2
    assert len([n for n in names(gated, ".gate") if n.count(".gate") == 1]) == 4
    compacter = applied(bases, "tiny-bart", "single_compacter", gate="middle_x", lightweight_decoder=True,
                        zero_up=True)
    ups = [m.up["vqa"] for n, m in compacter.named_modules() if n.endswith(".compacter")]
    assert len(ups) == 4 and all(isinstance(u, PHMLinear) and not u.weight().any() for u in ups)
    assert all(u.rules.abs().sum() > 0 for u in ups)  # the factors can still learn
    with pytest.raises(Exception, match="gate must be one of"):
        applied(bases, "tiny-bart", "single_adapter", gate="medium")
