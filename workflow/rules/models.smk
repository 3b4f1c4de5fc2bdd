# Tokenizer (toy), VL pre-training, and multi-task training of every (LM, run).


rule build_tokenizer:
    input:
        [p for d in all_datasets() for p in prepared(d)],
    output:
        directory("models/tokenizer"),
    log:
        "logs/build_tokenizer.log",
    benchmark:
        "logs/benchmarks/build_tokenizer.tsv"
    threads: 1
    resources:
        **res("light"),
    conda:
        ENV
    shell:
        "vladapter build-tokenizer --prepared data/prepared --out {output:q} > {log:q} 2>&1"


rule pretrain_matching:
    input:
        **model_inputs(["pretrain"]),
    output:
        directory("models/pretrain-matching/{lm}"),
    params:
        config=CONFIG,
        lm=lambda w: LMS[w.lm],
        settings=pretrain_settings("matching"),
        tokenizer=tokenizer_arg,
        data=data_args("image"),
        launcher=launcher,
    priority: 10  # pre-training waits for it
    log:
        "logs/pretrain/{lm}-matching.log",
    benchmark:
        "logs/benchmarks/pretrain/{lm}-matching.tsv"
    threads: threads("train")
    resources:
        **res("train"),
    conda:
        ENV
    shell:
        "{params.launcher}vladapter pretrain --matching --config {params.config:q} --out {output:q}"
        " --lm {params.lm:q} --tokenizer {params.tokenizer:q} {params.data:q} > {log:q} 2>&1"


rule pretrain:
    input:
        unpack(pretrain_inputs),
    output:
        directory("models/pretrain/{lm}"),
    params:
        config=CONFIG,
        lm=lambda w: LMS[w.lm],
        # what the backbone depends on (not which runs use it)
        settings=pretrain_settings(),
        init=lambda w, input: ["--init", input.init] if "init" in input.keys() else [],
        tokenizer=tokenizer_arg,
        data=data_args("image"),
        launcher=launcher,
    priority: 10  # every run waits for the pre-trained backbone
    log:
        "logs/pretrain/{lm}.log",
    benchmark:
        "logs/benchmarks/pretrain/{lm}.tsv"
    threads: threads("train")
    resources:
        **res("train"),
    conda:
        ENV
    shell:
        "{params.launcher}vladapter pretrain --config {params.config:q} --out {output:q} {params.init:q}"
        " --lm {params.lm:q} --tokenizer {params.tokenizer:q} {params.data:q} > {log:q} 2>&1"


rule pretrain_video:
    input:
        unpack(pretrain_video_inputs),
    output:
        directory("models/pretrain-video/{lm}"),
    params:
        config=CONFIG,
        lm=lambda w: LMS[w.lm],
        tasks=VIDEO_PRETRAIN,
        settings=pretrain_settings("video"),
        tokenizer=tokenizer_arg,
        data=data_args("video"),
        launcher=launcher,
    priority: 5  # the video runs wait for it
    log:
        "logs/pretrain/{lm}-video.log",
    benchmark:
        "logs/benchmarks/pretrain/{lm}-video.tsv"
    threads: threads("train")
    resources:
        **res("train"),
    conda:
        ENV
    shell:
        "{params.launcher}vladapter pretrain --config {params.config:q} --out {output:q}"
        " --lm {params.lm:q} --tasks {params.tasks:q} --init {input.init:q}"
        " --tokenizer {params.tokenizer:q} {params.data:q} > {log:q} 2>&1"


rule train:
    input:
        unpack(train_inputs),
    output:
        directory("models/{lm}/{run}"),
    params:
        config=CONFIG,
        lm=lambda w: LMS[w.lm],
        method=lambda w: run_of(w).method,
        tasks=lambda w: X.tasks(config, run_of(w).modality),
        init=lambda w, input: ["--init", input.init] if "init" in input.keys() else [],
        tokenizer=tokenizer_arg,
        data=lambda w: data_args(run_of(w).modality),
        seeds=lambda w: list(run_of(w).seeds),  # one process trains every seed (models/<lm>/<run>/seed-<n>)
        # what this run's result depends on: a change here (and only here) retrains it
        settings=lambda w: canonical(X.train_settings(config, run_of(w))),
        launcher=launcher,
    log:
        "logs/train/{lm}/{run}.log",
    benchmark:
        "logs/benchmarks/train/{lm}/{run}.tsv"
    threads: threads("train")
    resources:
        **res("train"),
    conda:
        ENV
    shell:
        "{params.launcher}vladapter train --config {params.config:q} --out {output:q}"
        " --lm {params.lm:q} --method {params.method:q} --tasks {params.tasks:q} {params.init:q}"
        " --seeds {params.seeds:q} --tokenizer {params.tokenizer:q} {params.data:q} > {log:q} 2>&1"
