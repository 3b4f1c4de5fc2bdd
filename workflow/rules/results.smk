# Evaluation of every run, the majority-answer baseline, and the results report.


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        metrics="metrics/{lm}/{run}.json",
        predictions=directory("predictions/{lm}/{run}"),
    params:
        settings=settings("evaluate"),
        device=device(),
        seeds=lambda w: list(run_of(w).seeds),  # each seed's model, in one process
    log:
        "logs/evaluate/{lm}/{run}.log",
    benchmark:
        "logs/benchmarks/evaluate/{lm}/{run}.tsv"
    threads: threads("train")
    resources:
        **eval_resources(),
    conda:
        ENV
    shell:
        "vladapter evaluate --settings {params.settings:q} --model {input.model:q} --out {output.metrics:q}"
        " --predictions {output.predictions:q} --device {params.device:q} --seeds {params.seeds:q} > {log:q} 2>&1"


rule majority:
    input:
        [p for d in IMAGE_DATASETS + VIDEO_DATASETS for p in prepared(d)],
    output:
        "metrics/majority.json",
    params:
        datasets=",".join(IMAGE_DATASETS + VIDEO_DATASETS),
        settings=settings("majority"),
    log:
        "logs/majority.log",
    benchmark:
        "logs/benchmarks/majority.tsv"
    threads: 1
    resources:
        **res("light"),
    conda:
        ENV
    shell:
        "vladapter evaluate --majority --settings {params.settings:q} --datasets {params.datasets:q}"
        " --out {output:q} > {log:q} 2>&1"


rule report:
    input:
        metrics=[r.metrics_path for r in RUNS.values()],
        majority="metrics/majority.json",
        models=[r.model_dir for r in RUNS.values()],
    output:
        table=report("results/table.md", caption="../report/table.rst", category="Results"),
        scores="results/scores.csv",
        plot=report("results/params_vs_score.png", caption="../report/params_vs_score.rst",
                    category="Results"),
        curves=report("results/curves.png", caption="../report/curves.rst", category="Training"),
    params:
        # the workflow config the report describes (its runs, datasets, split), as it receives it
        settings=canonical(config),
    log:
        "logs/report.log",
    benchmark:
        "logs/benchmarks/report.tsv"
    threads: 1
    resources:
        **res("light"),
    conda:
        ENV
    shell:
        "vladapter report --settings {params.settings:q} --out results > {log:q} 2>&1"
