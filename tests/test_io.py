import json

import pytest

from vladapter.errors import DataError
from vladapter.utils.io import atomic_path, read_jsonl, save_safetensors, write_json


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_write_json_roundtrip(tmp_path):
    write_json(tmp_path / "a" / "b.json", {"x": 1})
    assert json.loads((tmp_path / "a" / "b.json").read_text()) == {"x": 1}


def test_read_jsonl_names_bad_line(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text('{"a": 1}\n{broken\n')
    it = read_jsonl(p)
    assert next(it) == {"a": 1}
    with pytest.raises(DataError) as e:
        next(it)
    assert "line 2" in str(e.value) and str(p) in str(e.value)


def test_safetensors_bytes_depend_only_on_tensors_and_metadata(tmp_path):
    import torch
    from safetensors import safe_open

    tensors = {"b.weight": torch.arange(6.0).reshape(2, 3), "a.bias": torch.ones(3, dtype=torch.float16)}
    metadata = {"method": '{"kind": "adapter"}', "model": "tiny-t5", "format": "pt", "zeta": "\u00e9\n"}
    digests = set()
    for i in range(12):  # the header's metadata order used to vary between calls
        save_safetensors(tensors, tmp_path / f"{i}.safetensors", metadata=metadata)
        digests.add((tmp_path / f"{i}.safetensors").read_bytes())
    assert len(digests) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{i}.safetensors" for i in range(12))
    with safe_open(str(tmp_path / "0.safetensors"), framework="pt") as f:
        assert f.metadata() == metadata
        assert all(torch.equal(f.get_tensor(k), v) for k, v in tensors.items())


def test_whole_model_checkpoints_with_tied_weights_are_byte_identical(tmp_path):
    import torch

    from vladapter.models import build_vl_model
    from vladapter.models.vl_model import VLModel

    torch.manual_seed(0)
    model = build_vl_model("tiny-t5", feat_dim=8, n_vis_tokens=2, vocab_size=40)
    for i in range(6):  # the tied embeddings' names are metadata: their order used to vary
        model.save_pretrained(tmp_path / str(i))
    files = {(tmp_path / str(i) / "model.safetensors").read_bytes() for i in range(6)}
    assert len(files) == 1
    loaded = VLModel.from_pretrained(tmp_path / "0")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_ctrl_c_during_a_folder_swap_takes_effect_after_it(tmp_path):
    import os
    import signal

    from vladapter.utils.io import atomic_dir, signals_deferred

    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "old.txt").write_text("old")
    order = []
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C between the swap's renames
            order.append("block ran to its end")
    assert order == ["block ran to its end"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and [p.name for p in (tmp_path / "out").iterdir()] == [
        "new.txt"]
