"""VL-T5 / VL-BART's released pre-trained checkpoints load onto VLModel, every tensor accounted for.

The stand-ins are written in the released key layout, taken from VL-T5's published model code
(``VLT5`` = T5ForConditionalGeneration with ``encoder.visual_embedding``; ``VLBart`` =
BartForConditionalGeneration with ``model.encoder.visual_embedding``; feat/box projections with
a norm each, or one ``layer_norm`` over the sum; ``obj_order_embedding`` is the token embedding),
with the published vocabularies (32,200 and 50,465 rows, ``<vis_extra_id_i>`` at row
``rows - 1 - i``) and the real tokenizers; the architectures are the tiny ones, for speed.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import stand_ins
from vladapter.errors import ConfigError
from vladapter.models.released import import_released, write_imported
from vladapter.models.specs import lm_spec

D = 128  # tiny-t5 / tiny-bart d_model
FEAT = 24


def released_state(family: str, single_norm: bool = False, seed: int = 0) -> dict:
    """A state dict in VL-T5's (``t5``) or VL-BART's (``bart``) released layout, random weights."""
    from transformers import BartForConditionalGeneration, T5ForConditionalGeneration

    torch.manual_seed(seed)
    if family == "t5":
        lm = T5ForConditionalGeneration(lm_spec("tiny-t5").hf_config(vocab_size=32200))
        prefix, norm = "encoder.visual_embedding.", "rms"
    else:
        lm = BartForConditionalGeneration(lm_spec("tiny-bart").hf_config(vocab_size=50465))
        prefix, norm = "model.encoder.visual_embedding.", "layer"
    state = {k: v.detach().clone() for k, v in lm.state_dict().items()}
    if family == "bart":
        state["final_logits_bias"] = torch.randn_like(state["final_logits_bias"])
    shared = state["shared.weight" if family == "t5" else "model.shared.weight"]

    def norm_tensors(name):
        out = {f"{name}.weight": 1 + 0.1 * torch.randn(D)}
        if norm == "layer":
            out[f"{name}.bias"] = 0.1 * torch.randn(D)
        return out

    vis = {"feat_embedding.0.weight": torch.randn(D, FEAT) * 0.1, "feat_embedding.0.bias": torch.randn(D) * 0.1,
           "absolute_vis_pos_embedding.0.weight": torch.randn(D, 5) * 0.1,
           "absolute_vis_pos_embedding.0.bias": torch.randn(D) * 0.1,
           "img_order_embedding.weight": torch.randn(2, D), "obj_order_embedding.weight": shared}
    if single_norm:
        vis.update(norm_tensors("layer_norm"))
    else:
        vis.update(norm_tensors("feat_embedding.1"))
        vis.update(norm_tensors("absolute_vis_pos_embedding.1"))
    state.update({prefix + k: v for k, v in vis.items()})
    if family == "t5":  # written by transformers < 4 into every VL-T5 checkpoint
        state["decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight"] = torch.randn(32, 4)
    return state


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    return {"t5": str(stand_ins.t5_tokenizer(root / "t5")), "bart": str(stand_ins.bart_tokenizer(root / "bart"))}


def save(state, path, ddp=False):
    torch.save({("module." + k if ddp else k): v for k, v in state.items()}, path)
    return path


def _norm(x, w, b, kind):
    if kind == "rms":
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w
    return torch.nn.functional.layer_norm(x, (D,), w, b, 1e-5)


@pytest.mark.parametrize("family,single", [("t5", False), ("bart", True), ("bart", False)])
def test_released_checkpoint_loads_every_tensor(tmp_path, tokenizers, family, single):
    state = released_state(family, single_norm=single)
    path = save(state, tmp_path / "Epoch30.pth", ddp=family == "t5")
    lm = f"tiny-{family}"
    model, tok, info = import_released(path, tokenizers[family], lm=lm)
    rows, text = (32200, 32100) if family == "t5" else (50465, 50365)
    assert (info["vocab_rows"], info["text_vocab"], info["vis_extra"]) == (rows, text, 100)
    assert len(tok) == text
    if family == "bart":  # VL-BART's sentinels, in its order, right after BART's 50,265 tokens
        assert tok.convert_tokens_to_ids(["<extra_id_99>", "<extra_id_0>"]) == [50265, 50364]
    # <vis_extra_id_i> (released row rows-1-i) is this project's object-order row text + i
    shared_key = "shared.weight" if family == "t5" else "model.shared.weight"
    emb = model.lm.get_input_embeddings().weight
    assert torch.equal(emb[:text], state[shared_key][:text])
    for i in (0, 1, 99):
        assert torch.equal(emb[text + i], state[shared_key][rows - 1 - i])
    if family == "bart":
        bias = model.lm.final_logits_bias[0]
        assert torch.equal(bias[text + 5], state["final_logits_bias"][0, rows - 6])
    # the visual embedding computes what the released one computed (feat + pos + img + obj, norms)
    prefix = "encoder.visual_embedding." if family == "t5" else "model.encoder.visual_embedding."
    g = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    kind = "rms" if family == "t5" else "layer"
    feats, boxes = torch.randn(2, 3, FEAT), torch.rand(2, 3, 5)
    img = torch.tensor([[0, 0, 1], [0, 1, 1]])
    obj = torch.tensor([[0, 1, 0], [0, 0, 1]])
    feat = feats @ g["feat_embedding.0.weight"].T + g["feat_embedding.0.bias"]
    pos = boxes @ g["absolute_vis_pos_embedding.0.weight"].T + g["absolute_vis_pos_embedding.0.bias"]
    order = g["img_order_embedding.weight"][img] + state[shared_key][rows - 1 - obj]
    if single:
        want = _norm(feat + pos + order, g["layer_norm.weight"], g.get("layer_norm.bias"), kind)
    else:
        want = (_norm(feat, g["feat_embedding.1.weight"], g.get("feat_embedding.1.bias"), kind)
                + _norm(pos, g["absolute_vis_pos_embedding.1.weight"], g.get("absolute_vis_pos_embedding.1.bias"),
                        kind) + order)
    with torch.no_grad():
        got = model.visual(feats, img, boxes, obj_embeds=emb[obj + text])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # written and read back as a model folder that training starts from (--init)
    write_imported(model, tok, info, tmp_path / "vlmodel")
    from vladapter.models import VLModel

    again = VLModel.from_pretrained(tmp_path / "vlmodel")
    assert again.visual.norm_kind == kind and again.visual.single_norm == single
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), k
    assert (tmp_path / "vlmodel" / "tokenizer" / "tokenizer_config.json").is_file()


@pytest.mark.parametrize("break_it,named", [
    (lambda s: s.__setitem__("encoder.visual_embedding.feat_embedding.2.weight", torch.zeros(D)),
     "encoder.visual_embedding.feat_embedding.2.weight"),
    (lambda s: s.pop("encoder.block.1.layer.1.DenseReluDense.wi.weight"),
     "lm.encoder.block.1.layer.1.DenseReluDense.wi.weight"),
    (lambda s: s.__setitem__("encoder.block.0.layer.0.SelfAttention.q.weight", torch.zeros(D, D + 1)),
     "encoder.block.0.layer.0.SelfAttention.q.weight"),
    (lambda s: s.__setitem__("decoder.embed_tokens.weight", torch.zeros(32200, D)), "decoder.embed_tokens.weight"),
])
def test_broken_released_checkpoint_is_refused_naming_the_key(tmp_path, tokenizers, break_it, named):
    state = released_state("t5")
    break_it(state)
    path = save(state, tmp_path / "Epoch30.pth")
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        import_released(path, tokenizers["t5"], lm="tiny-t5")


def test_import_command_refuses_a_pickled_object_without_running_it(tmp_path, tokenizers):
    """A file that needs code to unpickle is refused by weights_only, and nothing runs."""
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pth"
    code = (f"import os, torch\nclass E:\n    def __reduce__(self):\n        return (os.system, ('touch {marker}',))\n"
            f"torch.save({{'shared.weight': E()}}, {str(evil)!r})\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run([sys.executable, "-m", "vladapter", "import-checkpoint", "--checkpoint", str(evil),
                          "--tokenizer", tokenizers["t5"], "--out", str(tmp_path / "m")],
                         capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert "weights_only" in out.stderr and "Traceback" not in out.stderr
    assert not marker.exists() and not (tmp_path / "m").exists()


# --- the reference's CLIP feature folders (<dataset>/clip_features/data_clip_RN101_att/<id>.h5) ----------
def write_reference_folder(folder, grids: dict) -> None:
    """One file per image, one group named after it holding ``features``, as the reference's download."""
    import h5py

    folder.mkdir(parents=True)
    for id_, grid in grids.items():
        with h5py.File(folder / f"{id_}.h5", "w") as f:
            f.create_group(id_).create_dataset("features", data=grid)


def test_an_image_run_starts_from_reference_feature_files(tmp_path):
    """Reference-layout folders convert into the project's feature files, read only; a run trained on
    them equals the run trained on the same features extracted by the project."""
    import h5py

    import vl_world
    from vladapter.cli import main
    from vladapter.core.config import TrainConfig
    from vladapter.features.store import FeatureStore
    from vladapter.train.run import train

    world = vl_world.build(tmp_path / "world", tasks=("vqa", "nlvr", "caption"))
    converted = tmp_path / "converted"
    for source, dataset in (("coco", "COCO"), ("nlvr2", "nlvr")):
        with h5py.File(world["features"] / f"{source}.testclip.h5", "r") as f:
            grids = {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}
        folder = tmp_path / "datasets" / dataset / "clip_features" / "data_clip_RN101_att"
        write_reference_folder(folder, grids)
        before = sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir())
        rc = main(["import-features", "--source", source, "--folder", str(folder), "--backbone", "testclip",
                   "--output", str(converted / f"{source}.testclip.h5")])
        assert rc == 0
        assert sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in folder.iterdir()) == before
        store = FeatureStore(converted / f"{source}.testclip.h5", n_tokens=4)
        assert store.attrs["released"]["files"] == len(grids) and store.grid == (4, 4)
        original = FeatureStore(world["features"] / f"{source}.testclip.h5", n_tokens=4)
        for id_ in list(grids)[:5]:
            assert np.array_equal(store.image(id_), original.image(id_))

    torch.set_num_threads(1)
    runs = {}
    for name, features in (("extracted", world["features"]), ("reference", converted)):
        cfg = TrainConfig(method="single_adapter", tasks=["vqa", "nlvr", "caption"], lr=1e-3, steps=6, batch_size=4,
                          prepared=str(world["prepared"]), features=str(features), tokenizer=str(world["tokenizer"]),
                          n_image_tokens=4, checkpoint_every=0)
        train(cfg, tmp_path / name)
        runs[name] = (tmp_path / name / "adapter.safetensors").read_bytes()
    assert runs["extracted"] == runs["reference"]


def test_reference_features_of_another_backbone_are_refused(tmp_path):
    from vladapter.cli import main

    folder = tmp_path / "COCO" / "clip_features" / "data_clip_RN101_att"
    write_reference_folder(folder, {"123": np.zeros((64, 512), dtype=np.float16)})
    out = tmp_path / "coco.RN101.h5"
    assert main(["import-features", "--source", "coco", "--folder", str(folder), "--output", str(out)]) == 2
    assert not out.exists()
