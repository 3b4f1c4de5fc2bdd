"""The paper's rows as presets: which modules are added, which base parameters train.

Every preset trains the visual embedding. ``train`` names further groups of the base
model that train: ``all`` (full fine-tuning), ``layernorm`` (every LayerNorm of the
language model), ``encoder_layernorm`` (the encoder's LayerNorms: VL-PET), ``bias`` (every
bias of the language model).
"""

from __future__ import annotations

from dataclasses import dataclass

from vladapter.petl.adapter import AdapterConfig
from vladapter.petl.compacter import CompacterConfig
from vladapter.petl.dora import DoRAConfig
from vladapter.petl.hyperformer import HyperformerConfig
from vladapter.petl.lora import LoRAConfig
from vladapter.petl.prompt import PromptConfig


@dataclass(frozen=True)
class Preset:
    name: str
    row: str                      # the paper's row name
    components: tuple = ()        # method configs (AdapterConfig, LoRAConfig, ...)
    train: tuple[str, ...] = ()   # base groups that train besides the visual embedding
    paper_percent: dict | None = None  # VL-BART % of PAPER.md: {"image": 4.18, "video": 3.39}
    paper_percent_t5: dict | None = None  # VL-T5 %, where the method's paper gives one

    @property
    def task_prefix(self) -> bool:
        """True when no module is task-specific: the text must say the task ("vqa: ...")."""
        return not any(c.per_task for c in self.components)


def _vl_pet(gate: str, bart: float, t5: float) -> Preset:
    """VL-PET (Hu et al., ICCV 2023) with one gate granularity: encoder adapters (zero-initialised
    up-projections, the reference's per-LM bottleneck and scale) gated, the lightweight decoder."""
    config = AdapterConfig(reduction_factor=None, zero_up=True, gate=gate, gate_scale=None, lightweight_decoder=True)
    return Preset(f"vl_pet_{gate}", f"VL-PET-{gate.replace('_', '')}", (config,), ("encoder_layernorm",),
                  {"image": bart}, {"image": t5})


def _presets(*presets: Preset) -> dict[str, Preset]:
    return {p.name: p for p in presets}


PRESETS: dict[str, Preset] = _presets(
    Preset("full_finetuning", "full fine-tuning", (), ("all",), {"image": 100.0}),
    Preset("multiple_adapters", "multiple adapters", (AdapterConfig(shared=False),), ("layernorm",),
           {"image": 12.22}),
    Preset("half_shared_adapters", "half-shared adapters", (AdapterConfig(shared=False, share_up=True),),
           ("layernorm",), {"image": 8.36}),
    Preset("single_adapter", "single adapter", (AdapterConfig(),), ("layernorm",),
           {"image": 4.18, "video": 3.39}),
    Preset("hyperformer", "Hyperformer", (HyperformerConfig(),), ("layernorm",), {"image": 5.79}),
    Preset("multiple_compacters", "multiple compacters", (CompacterConfig(shared=False),), ("layernorm",),
           {"image": 7.05}),
    Preset("single_compacter", "single compacter", (CompacterConfig(),), ("layernorm",), {"image": 2.70}),
    Preset("multiple_lora", "multiple LoRA", (LoRAConfig(shared=False),), ("bias",), {"image": 17.72}),
    Preset("single_lora", "single LoRA", (LoRAConfig(),), ("bias",), {"image": 5.93, "video": 5.17}),
    Preset("multiple_prompts", "multiple prompts", (PromptConfig(shared=False),), (), {"image": 4.53}),
    Preset("single_prompt", "single prompt", (PromptConfig(),), (), {"image": 2.00}),
    Preset("visual_projection", "visual projection only", (), (), {"image": 1.14}),
    Preset("layernorms", "+ LayerNorms", (), ("layernorm",), {"image": 1.18}),
    Preset("adapter_task_prompts", "single adapter + task-specific prompts",
           (AdapterConfig(), PromptConfig(shared=False)), ("layernorm",)),
    Preset("bitfit", "BitFit", (), ("bias",)),
    # later methods on this benchmark (PAPER.md): their papers' VL-BART / VL-T5 %
    _vl_pet("large", 4.16, 7.31),
    _vl_pet("small", 2.98, 4.51),
    _vl_pet("middle_x", 2.98, 4.50),
    _vl_pet("middle_y", 2.98, 4.50),
    Preset("dora", "DoRA", (DoRAConfig(),), ("bias", "layernorm"), {"image": 5.96, "video": 5.19}),
)
