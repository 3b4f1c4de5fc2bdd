"""VL-T5 / VL-BART wrapper, visual embedding, pooling, checkpoints and the toy tokenizer."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from vladapter.cli import main
from vladapter.data.records import Record
from vladapter.errors import ConfigError
from vladapter.models import VLModel, build_vl_model, load_tokenizer, object_order
from vladapter.models.tokenizer import SPECIAL_TOKENS
from vladapter.utils.io import write_jsonl

torch.set_num_threads(1)
LMS = ("tiny-t5", "tiny-bart")
VOCAB, FEAT = 60, 16


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {lm: build_vl_model(lm, feat_dim=FEAT, n_vis_tokens=4, vocab_size=VOCAB).eval() for lm in LMS}


def inputs(b=2, t=5, v=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (b, t), generator=g)
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids), vis_feats=torch.randn(b, v, FEAT, generator=g))


def encoder_out(model, **kw):
    embeds, mask, span = model.embed_inputs(**kw)
    with model.context.use(text_span=span), torch.no_grad():
        return model.lm.get_encoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state


@pytest.mark.parametrize("lm", LMS)
def test_forward_shapes_loss_and_vocabulary(models, lm):
    model = models[lm]
    labels = torch.tensor([[7, 8, 1], [9, -100, -100]])
    out = model(**inputs(), labels=labels)
    assert out.logits.shape == (2, 3, VOCAB + 200)  # 200 <vis_extra_id> rows
    assert torch.isfinite(out.loss) and out.loss.item() > 0
    assert model.lm.get_input_embeddings().num_embeddings == VOCAB + 200


@pytest.mark.parametrize("lm", LMS)
def test_visual_tokens_are_seen_and_masked_ones_are_not(models, lm):
    model = models[lm]
    x = inputs()
    labels = torch.tensor([[7, 8], [9, 10]])
    with torch.no_grad():
        base = model(**x, labels=labels).logits
        other = model(**{**x, "vis_feats": x["vis_feats"] + 1.0}, labels=labels).logits
        assert not torch.allclose(base, other)
        mask = torch.tensor([[True, True, False, False]] * 2)
        changed = x["vis_feats"].clone()
        changed[:, 2:] = 100.0  # masked tokens: must not matter
        a = model(**x, vis_mask=mask, labels=labels).logits
        b = model(**{**x, "vis_feats": changed}, vis_mask=mask, labels=labels).logits
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("lm", LMS)
def test_only_text_tokens_have_positions(models, lm):
    # without positions (BART) / relative position bias (T5) on visual tokens, swapping two
    # of them (with their object-order ids) leaves every text token's encoder output unchanged
    model = models[lm]
    x = inputs()
    obj = torch.arange(4).expand(2, 4)
    perm = torch.tensor([1, 0, 2, 3])
    a = encoder_out(model, **x, obj_order=obj)
    b = encoder_out(model, input_ids=x["input_ids"], attention_mask=x["attention_mask"],
                    vis_feats=x["vis_feats"][:, perm], obj_order=obj[:, perm])
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-5)
    assert torch.allclose(a[:, 5:][:, perm], b[:, 5:], atol=1e-5)
    # ...while text positions still matter
    swapped = x["input_ids"][:, [1, 0, 2, 3, 4]]
    c = encoder_out(model, input_ids=swapped, attention_mask=x["attention_mask"], vis_feats=x["vis_feats"])
    assert not torch.allclose(a[:, 0], c[:, 1], atol=1e-4)


def test_two_images_get_their_own_order_embeddings(models):
    model = models["tiny-t5"]
    x = inputs(v=4)
    img = torch.tensor([[0, 0, 1, 1]] * 2)
    assert object_order(img).tolist() == [[0, 1, 0, 1]] * 2
    with torch.no_grad():
        one = model(**x, labels=torch.tensor([[7], [8]])).logits
        two = model(**x, img_order=img, labels=torch.tensor([[7], [8]])).logits
    assert not torch.allclose(one, two)


@pytest.mark.parametrize("lm", LMS)
def test_generation_greedy_matches_argmax_and_beam_runs(models, lm):
    model = models[lm]
    x = inputs(seed=3)
    greedy = model.generate(**x, max_new_tokens=3)
    assert greedy.shape[0] == 2 and 1 <= greedy.shape[1] <= 3
    # the first greedy token is the argmax of one decoder step from the start token
    start = torch.full((2, 1), model.lm.config.decoder_start_token_id)
    with torch.no_grad():
        logits = model(**x, decoder_input_ids=start).logits
    assert torch.equal(greedy[:, 0], logits[:, -1].argmax(-1))
    beams = model.generate(**x, max_new_tokens=3, num_beams=4)
    assert beams.shape[0] == 2
    # different images -> (generally) different first-step distributions
    with torch.no_grad():
        other = model(**{**x, "vis_feats": -x["vis_feats"]}, decoder_input_ids=start).logits
    assert not torch.allclose(logits, other)


@pytest.mark.parametrize("lm", LMS)
def test_save_pretrained_round_trip(models, lm, tmp_path):
    model = copy.deepcopy(models[lm])
    with torch.no_grad():
        model.visual.img_order.weight.add_(1.0)
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.safetensors", "vl_config.json"]
    loaded = VLModel.from_pretrained(tmp_path / "m").eval()
    assert loaded.vl_config == model.vl_config
    with torch.no_grad():
        assert torch.equal(model(**inputs(), labels=torch.tensor([[7], [8]])).logits,
                           loaded(**inputs(), labels=torch.tensor([[7], [8]])).logits)
    with pytest.raises(ConfigError, match="not a VLModel folder"):
        VLModel.from_pretrained(tmp_path / "nothing")


def test_build_errors():
    with pytest.raises(ConfigError, match="unknown language model"):
        build_vl_model("gpt-5", feat_dim=4, n_vis_tokens=4)
    with pytest.raises(ConfigError, match="toy architecture"):
        build_vl_model("tiny-t5", feat_dim=4, n_vis_tokens=4, pretrained=True)
    with pytest.raises(ConfigError, match="must be in the HF cache"):  # tests run offline (conftest)
        build_vl_model("t5-base", feat_dim=4, n_vis_tokens=4, pretrained=True)
    model = build_vl_model("tiny-t5", feat_dim=4, n_vis_tokens=4, vocab_size=20, n_vis_extra=2)
    ids = torch.ones(1, 2, dtype=torch.long)
    with pytest.raises(ConfigError, match="exceed the 2 <vis_extra_id> rows"):
        model(ids, ids, torch.zeros(1, 3, 4))
    bart = build_vl_model("tiny-bart", feat_dim=4, n_vis_tokens=4, vocab_size=20)
    long = torch.ones(1, 1022, dtype=torch.long)
    with pytest.raises(ConfigError, match=r"1026 tokens \(0 prompts \+ 1022 text \+ 4 visual\) exceeds BART's 1024"):
        bart(long, long, torch.zeros(1, 4, 4))


def test_paper_architectures_build_on_meta():
    bart = build_vl_model("facebook/bart-base", feat_dim=2048, n_vis_tokens=36, device="meta")
    t5 = build_vl_model("t5-base", feat_dim=2048, n_vis_tokens=36, device="meta")
    assert bart.device.type == "meta" and bart.d_model == t5.d_model == 768
    assert sum(p.numel() for p in bart.lm.parameters()) == 139_420_416 + 200 * 768
    assert len(t5.lm.encoder.block) == len(t5.lm.decoder.block) == 12


# --- tokenizer -----------------------------------------------------------------------------
def write_prepared(root):
    vqa = Record(uid="1", task="vqa", split="train", source="coco", images=["COCO_1"], text="What colour is the CUBE?",
                 targets={"red": 1.0, "dark red": 0.3}, references=["red"] * 10)
    cap = Record(uid="2", task="caption", split="val", source="coco", images=["COCO_1"],
                 targets={"A red cube.": 1.0}, references=["A red cube.", "a small, red box"])
    tvqa = Record(uid="3", task="tvqa", split="train", source="tvqa", video="v1", text="Who waves?",
                  context="Sheldon: hello, Penny!", choices=["Sheldon", "Penny", "Leonard", "Raj", "Howard"],
                  answer_idx=0, targets={"a0": 1.0})
    write_jsonl(root / "vqav2" / "train.jsonl", [vqa.to_dict()])
    write_jsonl(root / "coco" / "val.jsonl", [cap.to_dict()])
    write_jsonl(root / "tvqa" / "train.jsonl", [tvqa.to_dict()])


def test_build_tokenizer_from_prepared_records(tmp_path, capsys):
    write_prepared(tmp_path / "prepared")
    out = tmp_path / "tok"
    assert main(["build-tokenizer", "--prepared", str(tmp_path / "prepared"), "--out", str(out)]) == 0
    tok = load_tokenizer(str(out))
    assert [tok.pad_token_id, tok.eos_token_id, tok.unk_token_id, tok.bos_token_id] == [0, 1, 2, 3]
    assert tok.convert_ids_to_tokens(list(range(len(SPECIAL_TOKENS)))) == SPECIAL_TOKENS
    ids = tok("vqa: What colour is the cube?")["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["vqa", ":", "what", "colour", "is", "the", "cube", "?", "</s>"]
    for word in ("sheldon", "penny", "howard", "box", "small", "dark", "caption", "how2qa", "<extra_id_0>"):
        assert tok.convert_tokens_to_ids(word) != tok.unk_token_id, word
    assert tok("zebra")["input_ids"] == [tok.unk_token_id, tok.eos_token_id]
    assert tok.decode(tok("A red cube.")["input_ids"], skip_special_tokens=True) == "a red cube ."
    # the tokenizer and the toy models agree on special ids
    model = build_vl_model("tiny-bart", feat_dim=4, n_vis_tokens=4, vocab_size=len(tok))
    assert (model.lm.config.pad_token_id, model.lm.config.eos_token_id) == (tok.pad_token_id, tok.eos_token_id)
    assert json.loads((out / "tokenizer_config.json").read_text())


def test_tokenizer_errors(tmp_path, capsys):
    assert main(["build-tokenizer", "--prepared", str(tmp_path / "none"), "--out", str(tmp_path / "t")]) == 2
    assert "no prepared records found" in capsys.readouterr().err
    (tmp_path / "p" / "gqa").mkdir(parents=True)
    (tmp_path / "p" / "gqa" / "train.jsonl").write_text('{"text": "ok"}\n{broken\n')
    assert main(["build-tokenizer", "--prepared", str(tmp_path / "p"), "--out", str(tmp_path / "t")]) == 2
    assert "line 2" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()  # nothing half-written
    with pytest.raises(ConfigError, match="vladapter build-tokenizer"):
        load_tokenizer(str(tmp_path / "models" / "tokenizer"))
    with pytest.raises(ConfigError, match="cannot load tokenizer"):
        load_tokenizer("no-such-org/no-such-tokenizer")


@pytest.mark.parametrize("lm", LMS)
def test_gradients_are_the_same_with_gradient_checkpointing_for_every_preset(lm):
    """The recomputation in backward sees the forward's task and text span: per-task modules
    route as in the forward and T5's block 0 keeps its text-only position bias (it raised
    "no per-task PETL module for task None", or gave other gradients, when it did not)."""
    from vladapter import petl
    from vladapter.core.model import set_dropout

    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, VOCAB, (3, 6), generator=g)
    batch = dict(input_ids=ids, attention_mask=torch.ones_like(ids), vis_feats=torch.randn(3, 4, FEAT, generator=g),
                 labels=torch.randint(5, VOCAB, (3, 4), generator=g), boxes=torch.rand(3, 4, 5, generator=g))
    problems = []
    for preset in petl.PRESETS:
        torch.manual_seed(0)
        base = build_vl_model(lm, feat_dim=FEAT, n_vis_tokens=4, vocab_size=VOCAB)
        petl.apply(base, preset, tasks=["vqa", "gqa"])
        set_dropout(base, 0.0)
        grads = []
        for checkpointing in (False, True):
            model = copy.deepcopy(base).train()
            if checkpointing:
                model.gradient_checkpointing_enable()
            try:
                model(**batch, task="gqa").loss.backward()
            except Exception as e:  # noqa: BLE001 - collected: one message for all presets
                problems.append(f"{preset}: {type(e).__name__}: {e}")
                break
            grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
        else:
            assert grads[0].keys() == grads[1].keys() and grads[0], preset
            for name, grad in grads[0].items():
                if not torch.allclose(grads[1][name], grad, rtol=1e-5, atol=1e-6):
                    problems.append(f"{preset}: {name} differs by {float((grads[1][name] - grad).abs().max()):.2e}")
    assert not problems, "\n".join(problems[:20])
