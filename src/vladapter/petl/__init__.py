"""Parameter-efficient transfer learning for VL models: one small module per method.

    from vladapter import petl
    petl.apply(model, "single_adapter", tasks=["vqa", "gqa", "nlvr", "caption"])
    petl.count(model)                                   # ParamCount(trainable, total).percent
    petl.save(model, "models/x/adapter.safetensors")    # trained params + method.json beside
    petl.load(fresh_model, "models/x/adapter.safetensors")
    petl.merge(model)                                   # LoRA folded into the weights, method gone
    petl.remove(model)                                  # or: the method taken out, bare model back

Methods are injected into the unmodified HF modules by module path (``slots.py`` says
where, per architecture); presets (``registry.py``) are the paper's rows; the contract a
method implements (declared capabilities, injection through an ``Injector`` that can be
undone) is ``contract.py``.
"""

import importlib

# name -> submodule; imported on first use (PEP 562), so a light submodule such as
# vladapter.petl.accounting (`vladapter params --help`) does not pull in torch
_EXPORTS = {"load": "checkpoint", "read_header": "checkpoint", "save": "checkpoint", "ParamCount": "method",
            "apply": "method", "count": "method", "uses_task_prefix": "method", "remove": "method",
            "merge": "method", "disabled": "method", "needs_backbone_grad": "method", "PRESETS": "registry",
            "Preset": "registry", "Method": "contract", "HostModel": "contract", "Injector": "contract",
            "Mergeable": "contract"}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"vladapter.petl.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'vladapter.petl' has no attribute {name!r}")

__all__ = ["PRESETS", "Preset", "ParamCount", "apply", "count", "uses_task_prefix", "remove", "merge", "disabled",
           "needs_backbone_grad", "save", "load", "read_header", "Method", "HostModel", "Injector", "Mergeable"]
