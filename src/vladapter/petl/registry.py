"""The paper's rows as presets: which modules are added, which base parameters train.

A preset is declared here once; the config schema's method enum, the toy-full config's
method list and the docs' preset table are checked against this registry by tests.
``train`` names the groups of the base model that train (``TRAIN_GROUPS``): ``visual``
(the visual embedding, part of every paper row), ``layernorm`` (every LayerNorm of the
language model), ``encoder_layernorm`` (the encoder's LayerNorms: VL-PET), ``bias`` (every bias of the language model), ``all`` (full fine-tuning).
A preset's capabilities (per-task modules, backbone gradients, merging) follow from its
components' declared ones (``petl/contract.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from vladapter.errors import ConfigError
from vladapter.petl.adapter import AdapterConfig
from vladapter.petl.compacter import CompacterConfig
from vladapter.petl.contract import check_method
from vladapter.petl.dora import DoRAConfig
from vladapter.petl.hyperformer import HyperformerConfig
from vladapter.petl.lora import LoRAConfig
from vladapter.petl.lst import LSTConfig
from vladapter.petl.prompt import PromptConfig

TRAIN_GROUPS = ("visual", "layernorm", "encoder_layernorm", "bias", "all")
LM_GROUPS = ("layernorm", "encoder_layernorm", "bias", "all")  # groups inside the backbone


@dataclass(frozen=True)
class Preset:
    name: str
    row: str                      # the paper's row name
    components: tuple = ()        # method configs (AdapterConfig, LoRAConfig, ...): contract.Method
    train: tuple[str, ...] = ("visual",)  # base groups that train (TRAIN_GROUPS)
    paper_percent: dict | None = None  # VL-BART % of PAPER.md: {"image": 4.18, "video": 3.39}
    paper_percent_t5: dict | None = None  # VL-T5 %, where the method's paper gives one

    def __post_init__(self):
        for c in self.components:
            check_method(c)
        unknown = set(self.train) - set(TRAIN_GROUPS)
        if unknown:
            raise ConfigError(f"preset {self.name}: unknown train groups {sorted(unknown)}; choose from {TRAIN_GROUPS}")

    @property
    def per_task(self) -> bool:
        """True when a module is task-specific (routed by the batch's task key)."""
        return any(c.per_task for c in self.components)

    @property
    def task_prefix(self) -> bool:
        """True when no module is task-specific: the text must say the task ("vqa: ...")."""
        return not self.per_task

    @property
    def needs_backbone_grad(self) -> bool:
        """Whether training back-propagates through the frozen backbone: a component inside
        it trains, or a backbone group trains, or nothing but the visual embedding (at the
        backbone's input) does. False only for components beside the backbone."""
        lm_trains = bool(set(self.train) & set(LM_GROUPS))
        return lm_trains or not self.components or any(c.needs_backbone_grad for c in self.components)

    @property
    def mergeable(self) -> bool:
        """Whether ``petl.merge`` can fold every added module into the base weights."""
        return bool(self.components) and all(c.mergeable for c in self.components)


def _vl_pet(gate: str, bart: float, t5: float) -> Preset:
    """VL-PET (Hu et al., ICCV 2023) with one gate granularity: encoder adapters (zero-initialised
    up-projections, the reference's per-LM bottleneck and scale) gated, the lightweight decoder."""
    config = AdapterConfig(reduction_factor=None, zero_up=True, gate=gate, gate_scale=None, lightweight_decoder=True)
    return Preset(f"vl_pet_{gate}", f"VL-PET-{gate.replace('_', '')}", (config,), ("visual", "encoder_layernorm"),
                  {"image": bart}, {"image": t5})


def _presets(*presets: Preset) -> dict[str, Preset]:
    return {p.name: p for p in presets}


PRESETS: dict[str, Preset] = _presets(
    Preset("full_finetuning", "full fine-tuning", (), ("visual", "all"), {"image": 100.0}),
    Preset("multiple_adapters", "multiple adapters", (AdapterConfig(shared=False),), ("visual", "layernorm"),
           {"image": 12.22}),
    Preset("half_shared_adapters", "half-shared adapters", (AdapterConfig(shared=False, share_up=True),),
           ("visual", "layernorm"), {"image": 8.36}),
    Preset("single_adapter", "single adapter", (AdapterConfig(),), ("visual", "layernorm"),
           {"image": 4.18, "video": 3.39}),
    Preset("hyperformer", "Hyperformer", (HyperformerConfig(),), ("visual", "layernorm"), {"image": 5.79}),
    Preset("multiple_compacters", "multiple compacters", (CompacterConfig(shared=False),), ("visual", "layernorm"),
           {"image": 7.05}),
    Preset("single_compacter", "single compacter", (CompacterConfig(),), ("visual", "layernorm"), {"image": 2.70}),
    Preset("multiple_lora", "multiple LoRA", (LoRAConfig(shared=False),), ("visual", "bias"), {"image": 17.72}),
    Preset("single_lora", "single LoRA", (LoRAConfig(),), ("visual", "bias"), {"image": 5.93, "video": 5.17}),
    Preset("multiple_prompts", "multiple prompts", (PromptConfig(shared=False),), ("visual",), {"image": 4.53}),
    Preset("single_prompt", "single prompt", (PromptConfig(),), ("visual",), {"image": 2.00}),
    Preset("visual_projection", "visual projection only", (), ("visual",), {"image": 1.14}),
    Preset("layernorms", "+ LayerNorms", (), ("visual", "layernorm"), {"image": 1.18}),
    Preset("adapter_task_prompts", "single adapter + task-specific prompts",
           (AdapterConfig(), PromptConfig(shared=False)), ("visual", "layernorm")),
    Preset("bitfit", "BitFit", (), ("visual", "bias")),
    # later methods on this benchmark (PAPER.md): their papers' VL-BART / VL-T5 %
    _vl_pet("large", 4.16, 7.31),
    _vl_pet("small", 2.98, 4.51),
    _vl_pet("middle_x", 2.98, 4.50),
    _vl_pet("middle_y", 2.98, 4.50),
    Preset("dora", "DoRA", (DoRAConfig(),), ("visual", "bias", "layernorm"), {"image": 5.96, "video": 5.19}),
    Preset("lst", "LST (ladder side-tuning)", (LSTConfig(),), ("visual",), paper_percent_t5={"image": 7.46}),
)


def markdown_table(presets: dict[str, Preset] | None = None) -> str:
    """The presets as the table in docs/petl.md (tests/test_declarations.py checks the docs
    show exactly this)."""
    lines = ["| preset | paper row | modules | trains | task prefix | mergeable |", "|---|---|---|---|---|---|"]
    for p in (presets or PRESETS).values():
        modules = " + ".join(f"{c.method} ({'per task' if c.per_task else 'shared'})" for c in p.components) or "-"
        lines.append(f"| {p.name} | {p.row} | {modules} | {', '.join(p.train)} | "
                     f"{'yes' if p.task_prefix else 'no'} | {'yes' if p.mergeable else 'no'} |")
    return "\n".join(lines)
