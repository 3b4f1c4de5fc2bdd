"""The paper's rows as presets: which modules are added, which base parameters train.

Every preset trains the visual embedding. ``train`` names further groups of the base
model that train: ``all`` (full fine-tuning), ``layernorm`` (every LayerNorm of the
language model), ``bias`` (every bias of the language model).
"""

from __future__ import annotations

from dataclasses import dataclass

from vladapter.petl.adapter import AdapterConfig
from vladapter.petl.compacter import CompacterConfig
from vladapter.petl.hyperformer import HyperformerConfig
from vladapter.petl.lora import LoRAConfig
from vladapter.petl.lst import LSTConfig
from vladapter.petl.prompt import PromptConfig


@dataclass(frozen=True)
class Preset:
    name: str
    row: str                      # the paper's row name
    components: tuple = ()        # method configs (AdapterConfig, LoRAConfig, ...)
    train: tuple[str, ...] = ()   # base groups that train besides the visual embedding
    paper_percent: dict | None = None  # VL-BART % of PAPER.md: {"image": 4.18, "video": 3.39}; VL-T5: "t5/image"

    @property
    def task_prefix(self) -> bool:
        """True when no module is task-specific: the text must say the task ("vqa: ...")."""
        return not any(c.per_task for c in self.components)


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
    Preset("lst", "LST (ladder side-tuning)", (LSTConfig(),), (), {"t5/image": 7.46}),
)
