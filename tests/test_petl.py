"""Every PETL preset on tiny T5 and BART: what trains, task routing, checkpoints, generation."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from vladapter import petl
from vladapter.errors import ConfigError
from vladapter.models import build_vl_model
from vladapter.petl.compacter import PHMLinear

torch.set_num_threads(1)

LMS = ("tiny-t5", "tiny-bart")
TASKS = ("vqa", "gqa")
VOCAB, FEAT, N_VIS = 60, 16, 4


@pytest.fixture(scope="module")
def bases():
    """One base model per architecture; tests deep-copy it."""
    torch.manual_seed(0)
    return {lm: build_vl_model(lm, feat_dim=FEAT, n_vis_tokens=N_VIS, vocab_size=VOCAB) for lm in LMS}


def batch(seed: int = 0, b: int = 2):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (b, 5), generator=g)
    return dict(input_ids=ids, attention_mask=torch.ones_like(ids), vis_feats=torch.randn(b, N_VIS, FEAT, generator=g),
                labels=torch.randint(5, VOCAB, (b, 3), generator=g), boxes=torch.rand(b, N_VIS, 5, generator=g))


def applied(bases, lm, preset, **overrides):
    model = copy.deepcopy(bases[lm])
    return petl.apply(model, preset, tasks=TASKS, **overrides)


def train_steps(model, task="vqa", steps=2):
    # two steps: zero-initialised parts (LoRA B) only let their partners move on step 2
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    model.train()
    for i in range(steps):
        model(**batch(i), task=task).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def is_layernorm_name(name: str) -> bool:
    return "layer_norm" in name or "layernorm_embedding" in name


# the paper's table, written out: (modules the method adds, base groups that train)
PAPER = {
    "full_finetuning": ((), "all"),
    "multiple_adapters": ((".adapter.",), "layernorm"),
    "half_shared_adapters": ((".adapter.",), "layernorm"),
    "single_adapter": ((".adapter.",), "layernorm"),
    "hyperformer": ((".hyperformer.",), "layernorm"),
    "multiple_compacters": ((".compacter.",), "layernorm"),
    "single_compacter": ((".compacter.",), "layernorm"),
    "multiple_lora": ((".lora.",), "bias"),
    "single_lora": ((".lora.",), "bias"),
    "multiple_prompts": (("prompts.",), None),
    "single_prompt": (("prompts.",), None),
    "visual_projection": ((), None),
    "layernorms": ((), "layernorm"),
    "adapter_task_prompts": ((".adapter.", "prompts."), "layernorm"),
    "bitfit": ((), "bias"),
    "lst": (("side.",), None),
    # VL-PET: encoder adapters + gates, the decoder's value adapters, the encoder's LayerNorms
    **{f"vl_pet_{gate}": ((".adapter.", ".gate.", ".value_adapter."), "encoder_layernorm")
       for gate in ("large", "small", "middle_x", "middle_y")},
    "dora": ((".dora.",), ("bias", "layernorm")),
}


def intended(preset: str, name: str, task: str) -> bool:
    """Should parameter ``name`` move after training on ``task``? From the paper's table,
    independently of the registry and of how apply() sets requires_grad."""
    added, groups = PAPER[preset]
    groups = groups if isinstance(groups, tuple) else (groups,)
    if name.startswith("visual.") or "all" in groups:
        return True
    if any(tag in name for tag in added):
        other = [t for t in TASKS if t != task]
        return not any(f".{t}." in name for t in other)
    if "layernorm" in groups and is_layernorm_name(name) and name.startswith("lm."):
        return True
    if ("encoder_layernorm" in groups and is_layernorm_name(name)
            and name.startswith(("lm.encoder.", "lm.model.encoder."))):
        return True
    if "bias" in groups and name.endswith(".bias") and name.startswith("lm."):
        return True
    return False


def test_paper_table_covers_every_preset():
    assert set(PAPER) == set(petl.PRESETS)


@pytest.mark.parametrize("lm", LMS)
@pytest.mark.parametrize("preset", list(petl.PRESETS))
def test_only_intended_parameters_change(bases, lm, preset):
    model = applied(bases, lm, preset)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train_steps(model, "vqa")
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    expected = {n for n in before if intended(preset, n, "vqa")}
    assert changed == expected, (sorted(changed - expected)[:5], sorted(expected - changed)[:5])
    # hyperformer's task embedding is one tensor for all tasks: only the vqa row moves
    if preset == "hyperformer":
        for name, p in model.named_parameters():
            if name.endswith("task_embed.weight"):
                assert not torch.equal(p[0], before[name][0]) and torch.equal(p[1], before[name][1])


@pytest.mark.parametrize("lm", LMS)
@pytest.mark.parametrize("preset", list(petl.PRESETS))
def test_save_load_into_fresh_model_reproduces_outputs_and_generates(bases, lm, preset, tmp_path):
    model = applied(bases, lm, preset)
    train_steps(model, "gqa", steps=1)
    path = petl.save(model, tmp_path / "run" / "adapter.safetensors")
    fresh = petl.load(copy.deepcopy(bases[lm]), path)
    fresh.eval()
    for task in TASKS:
        with torch.no_grad():
            assert torch.equal(model(**batch(5), task=task).logits, fresh(**batch(5), task=task).logits)
    method = json.loads((tmp_path / "run" / "method.json").read_text())
    assert method["preset"] == preset and method["trainable"] == petl.count(model).trainable
    # generation with visual input, greedy and beam; the visual input matters
    b = batch(7)
    kwargs = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"], task="vqa", max_new_tokens=4)
    greedy = fresh.generate(vis_feats=b["vis_feats"], **kwargs)
    beams = fresh.generate(vis_feats=b["vis_feats"], num_beams=3, **kwargs)
    assert greedy.shape[0] == beams.shape[0] == 2 and 1 <= greedy.shape[1] <= 4
    assert int(greedy.max()) < VOCAB + 200


def test_load_refuses_a_mismatching_model(bases, tmp_path):
    model = applied(bases, "tiny-bart", "single_adapter")
    path = petl.save(model, tmp_path / "a.safetensors")
    other = build_vl_model("tiny-bart", feat_dim=FEAT * 2, n_vis_tokens=N_VIS, vocab_size=VOCAB)
    with pytest.raises(ConfigError, match="another base model"):
        petl.load(other, path)
    with pytest.raises(ConfigError, match="holds single_adapter"):
        petl.load(applied(bases, "tiny-bart", "single_lora"), path)
    with pytest.raises(ConfigError, match="not found"):
        petl.load(copy.deepcopy(bases["tiny-bart"]), tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable safetensors"):
        petl.load(copy.deepcopy(bases["tiny-bart"]), tmp_path / "bad.safetensors")


@pytest.mark.parametrize("lm", LMS)
@pytest.mark.parametrize("preset", ["single_lora", "multiple_lora"])
def test_lora_with_zero_b_leaves_outputs_unchanged(bases, lm, preset):
    base = copy.deepcopy(bases[lm]).eval()
    model = applied(bases, lm, preset).eval()
    for task in TASKS:
        with torch.no_grad():
            assert torch.equal(base(**batch(3), task=task).logits, model(**batch(3), task=task).logits)


def adapters(model):
    return [m for name, m in model.named_modules() if name.endswith(".adapter")]


@pytest.mark.parametrize("lm", LMS)
def test_shared_modules_are_one_tensor_and_per_task_modules_differ(bases, lm):
    single = adapters(applied(bases, lm, "single_adapter"))
    multiple = adapters(applied(bases, lm, "multiple_adapters"))
    half = adapters(applied(bases, lm, "half_shared_adapters"))
    n_slots = 2 * 2 + 2 * 3  # 2 encoder layers x (self, ffn) + 2 decoder layers x (self, cross, ffn)
    assert len(single) == len(multiple) == len(half) == n_slots
    for a in single:
        assert a.down["vqa"].weight is a.down["gqa"].weight and a.up["vqa"] is a.up["gqa"]
    for a in multiple:
        assert a.down["vqa"] is not a.down["gqa"]
        assert not torch.equal(a.down["vqa"].weight, a.down["gqa"].weight)
    for a in half:
        assert a.up["vqa"] is a.up["gqa"] and a.down["vqa"] is not a.down["gqa"]
    n = {k: sum(p.numel() for a in v for p in a.parameters()) for k, v in
         dict(single=single, multiple=multiple).items()}
    assert n["multiple"] == len(TASKS) * n["single"]
    with pytest.raises(ConfigError, match="no per-task PETL module for task 'caption'"):
        multiple[0].down["caption"]


@pytest.mark.parametrize("lm", LMS)
def test_per_task_modules_route_by_task(bases, lm):
    for preset in ("multiple_adapters", "multiple_prompts", "hyperformer"):
        model = applied(bases, lm, preset)
        train_steps(model, "vqa", steps=1)  # make the tasks' modules differ
        with torch.no_grad():
            a, b = (model(**batch(1), task=t).logits for t in TASKS)
        assert not torch.allclose(a, b)
        with pytest.raises(ConfigError, match="task"):
            model(**batch(1), task=None)


@pytest.mark.parametrize("lm", LMS)
def test_hyperformer_generates_all_layers_in_one_call_per_stack_and_differs_per_task(bases, lm):
    model = applied(bases, lm, "hyperformer")
    hypernets = [m for name, m in model.named_modules() if name.endswith(".hyperformer") and hasattr(m, "weights")]
    assert len(hypernets) == 2  # encoder, decoder
    calls = []
    for h in hypernets:
        h.generator.register_forward_hook(lambda mod, args, out: calls.append(out.shape))
    with torch.no_grad():
        model(**batch(0), task="vqa")
    d, b = model.d_model, model.d_model // 8
    assert calls == [torch.Size([2, 2 * (2 * d * b + b + d)]), torch.Size([2, 3 * (2 * d * b + b + d)])]
    for h in hypernets:
        w_vqa, w_gqa = h.weights("vqa"), h.weights("gqa")
        assert w_vqa.shape == (2, h.n_kinds, 2 * d * b + b + d)
        assert not torch.allclose(w_vqa, w_gqa)
    with pytest.raises(ConfigError, match="no task embedding for 'nlvr'"):
        hypernets[0].weights("nlvr")
    # a model that has run a training forward can still be copied (EMA, best-so-far copies)
    model(**batch(0), task="vqa").loss.backward()
    copied = copy.deepcopy(model).eval()
    model.eval()
    with torch.no_grad():
        assert torch.equal(copied(**batch(1), task="gqa").logits, model(**batch(1), task="gqa").logits)


def test_phm_weight_is_the_sum_of_kronecker_products():
    torch.manual_seed(0)
    layer = PHMLinear(8, 4, n=2)
    expected = sum(torch.kron(layer.rules[i], layer.factors[i]) for i in range(2))
    assert torch.allclose(layer.weight(), expected, atol=1e-7)
    assert layer.rules.shape == (2, 2, 2) and layer.factors.shape == (2, 4, 2)
    x = torch.randn(3, 5, 8)
    assert torch.allclose(layer(x), x @ expected + layer.bias, atol=1e-6)
    with pytest.raises(ConfigError, match="must divide"):
        PHMLinear(7, 4, n=2)


def test_task_prefix_follows_the_paper():
    prefix = {name: p.task_prefix for name, p in petl.PRESETS.items()}
    assert all(prefix[n] for n in ("full_finetuning", "single_adapter", "single_compacter", "single_lora",
                                   "single_prompt", "visual_projection", "layernorms", "bitfit", "vl_pet_large",
                                   "vl_pet_small", "vl_pet_middle_x", "vl_pet_middle_y", "dora"))
    assert not any(prefix[n] for n in ("multiple_adapters", "half_shared_adapters", "multiple_compacters",
                                       "multiple_lora", "multiple_prompts", "hyperformer", "adapter_task_prompts"))


def test_bad_configuration_is_a_clear_error(bases):
    with pytest.raises(ConfigError, match="unknown PETL method 'adapterz'"):
        applied(bases, "tiny-t5", "adapterz")
    with pytest.raises(ConfigError, match="has no option 'rnak'"):
        applied(bases, "tiny-t5", "single_lora", rnak=4)
    with pytest.raises(ConfigError, match="positive integer"):
        applied(bases, "tiny-t5", "single_lora", rank=0)
    with pytest.raises(ConfigError, match="bad LoRA target"):
        applied(bases, "tiny-t5", "single_lora", targets=["encoder.cross_attn.q"])
    with pytest.raises(ConfigError, match="not divisible"):
        applied(bases, "tiny-t5", "single_adapter", reduction_factor=3)
    with pytest.raises(ConfigError, match="needs the task keys"):
        petl.apply(copy.deepcopy(bases["tiny-t5"]), "multiple_adapters")
    model = applied(bases, "tiny-t5", "single_adapter")
    with pytest.raises(ConfigError, match="already applied"):
        petl.apply(model, "single_lora", tasks=TASKS)


def test_overrides_change_the_modules(bases):
    model = applied(bases, "tiny-bart", "single_lora", rank=4, targets=["encoder.self_attn.k"])
    loras = [m for name, m in model.named_modules() if name.endswith(".lora")]
    assert len(loras) == 2 and loras[0].A["vqa"].weight.shape == (4, 128)
    assert model.petl_method["overrides"] == {"rank": 4, "targets": ["encoder.self_attn.k"]}


# --- the method contract: remove, merge, keyword-argument hooks, taps ---------------------

def n_hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def logits(model, task="vqa", seed=3):
    with torch.no_grad():
        return model(**batch(seed), task=task).logits


@pytest.mark.parametrize("lm", LMS)
@pytest.mark.parametrize("preset", list(petl.PRESETS))
def test_remove_restores_the_bare_model(bases, lm, preset):
    base = copy.deepcopy(bases[lm]).eval()
    flags = [p.requires_grad for p in base.parameters()]
    model = applied(bases, lm, preset).eval()
    added = [p for name, p in model.named_parameters() if name not in base.state_dict()]
    with torch.no_grad():  # make every added module change the outputs (LoRA's B starts at zero)
        for p in added:
            p.normal_(0, 0.5)
    if added:
        assert not torch.allclose(logits(model), logits(base))
    petl.remove(model)
    assert torch.equal(logits(model), logits(base)) and torch.equal(logits(model, "gqa"), logits(base, "gqa"))
    assert list(model.state_dict()) == list(base.state_dict())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert n_hooks(model) == n_hooks(base) and model.petl_method is None and petl.uses_task_prefix(model)
    # trained base parameters stay trained; nothing of the method is left to change outputs
    petl.apply(model, preset, tasks=TASKS)
    train_steps(model, "vqa")
    petl.remove(model)
    twin = copy.deepcopy(base)
    twin.load_state_dict(model.state_dict())
    assert torch.equal(logits(model), logits(twin))


@pytest.mark.parametrize("lm", LMS)
@pytest.mark.parametrize("preset", [n for n, p in petl.PRESETS.items() if p.mergeable])
def test_merge_folds_lora_into_the_weights(bases, lm, preset):
    model = applied(bases, lm, preset)
    train_steps(model, "vqa")  # B moves off zero
    model.eval()
    before = {task: logits(model, task) for task in TASKS}
    assert not torch.allclose(before["vqa"], logits(bases[lm].eval()))
    per_task = petl.PRESETS[preset].per_task
    if per_task:
        with pytest.raises(ConfigError, match="merge one of them"):
            petl.merge(model)
    petl.merge(model, task="vqa" if per_task else None)
    assert model.petl_method is None and n_hooks(model) == n_hooks(bases[lm])
    assert list(model.state_dict()) == list(bases[lm].state_dict())
    torch.testing.assert_close(logits(model, "vqa"), before["vqa"], atol=1e-5, rtol=1e-5)
    if not per_task:
        torch.testing.assert_close(logits(model, "gqa"), before["gqa"], atol=1e-5, rtol=1e-5)


def test_mergeable_presets_and_refusals(bases):
    # independent of the registry: the paper's mergeable rows are the LoRA ones, and DoRA
    assert {n for n, p in petl.PRESETS.items() if p.mergeable} == {"single_lora", "multiple_lora", "dora"}
    assert {n for n, p in petl.PRESETS.items() if not p.needs_backbone_grad} == {"lst"}
    with pytest.raises(ConfigError, match="single_adapter cannot be merged.*mergeable presets: multiple_lora"):
        petl.merge(applied(bases, "tiny-t5", "single_adapter"))
    with pytest.raises(ConfigError, match="no PETL method is applied"):
        petl.remove(copy.deepcopy(bases["tiny-t5"]))


@pytest.mark.parametrize("preset", ["single_lora", "single_adapter"])
def test_hooks_take_keyword_arguments(bases, preset):
    """transformers may call a sublayer with keywords: the method applies all the same."""
    model = applied(bases, "tiny-bart", preset).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora." in name or ".adapter." in name:
                p.normal_(0, 0.5)
    layer = model.lm.model.encoder.layers[0]
    host = layer.self_attn.q_proj if preset == "single_lora" else layer.fc2
    x = torch.randn(2, 3, host.in_features)
    bare = torch.nn.functional.linear(x, host.weight, host.bias)
    with torch.no_grad():
        by_keyword, by_position = host(input=x), host(x)
    assert torch.equal(by_keyword, by_position) and not torch.allclose(by_keyword, bare)


@pytest.mark.parametrize("lm", LMS)
def test_taps_read_each_layer_and_the_head_input_can_be_replaced(bases, lm):
    """What a side network needs: read-only taps of every layer, the LM head's input replaced."""
    from vladapter.petl.contract import Injector
    from vladapter.petl.slots import HEAD, layer_paths

    model = copy.deepcopy(bases[lm]).eval()
    before = logits(model)
    at, seen = Injector(), []
    for stack in ("encoder", "decoder"):
        for path in layer_paths(model, stack):
            at.tap(model.get_submodule(path), lambda out, path=path: seen.append((path, out[0].shape)))
    assert torch.equal(logits(model), before)
    assert [p for p, _ in seen] == layer_paths(model, "encoder") + layer_paths(model, "decoder")
    at.replace_input(model.get_submodule(HEAD), torch.zeros_like)
    head = model.get_submodule(HEAD)
    bias = model.lm.final_logits_bias if lm == "tiny-bart" else torch.zeros(head.out_features)
    assert torch.equal(logits(model), bias.expand_as(before))
    with torch.no_grad():
        assert torch.equal(head(input=torch.ones(1, head.in_features)), torch.zeros(1, head.out_features))
    at.remove()
    assert torch.equal(logits(model), before) and n_hooks(model) == n_hooks(bases[lm])


def test_a_new_method_and_preset_are_written_in_one_place(bases):
    """A method beside the backbone, declared in one class and one Preset: apply, what
    trains, its capabilities and remove work without touching the library."""
    from dataclasses import dataclass
    from typing import ClassVar

    from vladapter.petl.contract import Method

    @dataclass(frozen=True)
    class SideConfig(Method):
        method: ClassVar[str] = "side"
        needs_backbone_grad: ClassVar[bool] = False
        width: int = 8

        @property
        def per_task(self) -> bool:
            return False

        def inject(self, model, tasks, at):
            side = at.add_child(model, self.method, torch.nn.Linear(model.d_model, model.d_model))
            at.replace_input(model.get_submodule("lm.lm_head"), lambda h: h + side(h.detach()))

    preset = petl.Preset("side_network", "side network", (SideConfig(),), ("visual",))
    assert not preset.needs_backbone_grad and not preset.mergeable and preset.task_prefix
    model = petl.apply(copy.deepcopy(bases["tiny-t5"]), preset, tasks=TASKS)
    assert not petl.needs_backbone_grad(model)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trained == {n for n in trained if n.startswith(("visual.", "side."))} and "side.weight" in trained
    petl.remove(model)
    assert not hasattr(model, "side") and petl.needs_backbone_grad(model)
    with pytest.raises(ConfigError, match="not a PETL method"):
        petl.Preset("bad", "bad", (object(),))


def test_remove_on_a_copy_leaves_the_original(bases):
    """The injection record is copied with the model (EMA and best-so-far copies)."""
    base = copy.deepcopy(bases["tiny-bart"]).eval()
    model = applied(bases, "tiny-bart", "single_lora").eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora." in name:
                p.normal_(0, 0.5)
    with_lora = logits(model)
    twin = copy.deepcopy(model)
    assert torch.equal(logits(twin), with_lora)
    petl.remove(twin)
    assert torch.equal(logits(twin), logits(base)) and torch.equal(logits(model), with_lora)


@pytest.mark.parametrize("preset", ["single_lora", "adapter_task_prompts", "hyperformer", "vl_pet_small", "dora"])
def test_disabled_runs_the_bare_model_and_switches_back(bases, preset):
    base = copy.deepcopy(bases["tiny-t5"]).eval()
    model = applied(bases, "tiny-t5", preset).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name not in base.state_dict():
                p.normal_(0, 0.5)
    with_method = logits(model)
    assert not torch.allclose(with_method, logits(base))
    with petl.disabled(model):
        assert torch.equal(logits(model), logits(base))
        assert model.prompts is None
    assert torch.equal(logits(model), with_method)
    with petl.disabled(model):  # removing while disabled leaves the bare model too
        petl.remove(model)
    assert torch.equal(logits(model), logits(base)) and n_hooks(model) == n_hooks(base)
