"""vladapter: parameter-efficient transfer learning for vision-and-language models.

Library layout (each concept in one place):

- ``vladapter.data``      toy world, downloads, readers of the published formats
- ``vladapter.features``  frame sampling, CLIP extraction, HDF5 feature store
- ``vladapter.models``    VL-T5 / VL-BART around unmodified HF models
- ``vladapter.petl``      one module per PETL method, registry, counting, checkpoints
- ``vladapter.tasks``     per task: text format, targets, metric
- ``vladapter.core``      what train, pretrain and evaluate share: config sections, model inputs
                          (records, features, batch encoding), building and loading the model
- ``vladapter.train``     one job skeleton for train and pretrain, multi-task loop, sampler, optimiser, DDP
- ``vladapter.evaluate``  generation and official metrics
- ``vladapter.report``    result tables and plots
"""

__version__ = "0.1.0"
