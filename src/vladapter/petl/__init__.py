"""Parameter-efficient transfer learning for VL models: one small module per method.

    from vladapter import petl
    petl.apply(model, "single_adapter", tasks=["vqa", "gqa", "nlvr", "caption"])
    petl.count(model)                                   # ParamCount(trainable, total).percent
    petl.save(model, "models/x/adapter.safetensors")    # trained params + method.json beside
    petl.load(fresh_model, "models/x/adapter.safetensors")

Methods are injected into the unmodified HF modules by module path (``slots.py`` says
where, per architecture); presets (``registry.py``) are the paper's rows.
"""

from vladapter.petl.checkpoint import load, read_header, save
from vladapter.petl.method import ParamCount, apply, count, uses_task_prefix
from vladapter.petl.registry import PRESETS, Preset

__all__ = ["PRESETS", "Preset", "ParamCount", "apply", "count", "uses_task_prefix", "save", "load",
           "read_header"]
