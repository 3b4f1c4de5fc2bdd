"""vladapter: parameter-efficient transfer learning for V&L models, as one DAG.

    snakemake --profile profiles/default                   # the toy world, end to end
    snakemake --profile profiles/default --configfile config/paper-image.yaml
    snakemake --profile profiles/slurm ...                 # every job a SLURM job

Each rule runs one `vladapter <command>`; the graph is defined here only (dvc.yaml is
generated from it: workflow/scripts/dvc_yaml.py). See docs/workflow.md.
"""

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from vladapter.config_schema import yaml_problem

min_version("9.0")


# The toy default, unless config files are given (--configfile): each config file is
# complete on its own, so the paper's configs never inherit toy values.
if not workflow.overwrite_configfiles:
    # a syntax error named by file and line (Snakemake's own message names neither)
    if problem := yaml_problem("config/config.yaml"):
        raise WorkflowError(problem)

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"


wildcard_constraints:
    dataset="[a-z0-9]+",
    source="[a-z0-9]+",
    split="train|val|test",
    backbone=_alternatives(BACKBONES),
    lm=_alternatives(LMS),
    run=_alternatives({name for _, name in RUNS}),
    pseed="[0-9]+",


include: "workflow/rules/data.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/results.smk"


rule all:
    input:
        all_targets(),
    default_target: True


onsuccess:
    print(success_message())
