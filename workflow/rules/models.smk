# Tokenizer (toy), VL pre-training, and multi-task training of every (LM, run).
# Training jobs always pass --resume: a killed job's checkpoints live in the work folder
# beside its output (.<run>.partial/, no output, so Snakemake never deletes it), and the
# rerun continues from them when the same run wrote them (else it starts over).


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
        **model_inputs([X.PRETRAIN]),
    output:
        directory("models/pretrain-matching/{lm}"),
    params:
        # every setting the job receives, as canonical JSON (a change reruns it)
        settings=settings("matching"),
        launcher=launcher,
    priority: 10  # pre-training waits for it
    log:
        "logs/pretrain/{lm}-matching.log",
    benchmark:
        "logs/benchmarks/pretrain/{lm}-matching.tsv"
    threads: train_threads()
    resources:
        **train_resources(),
    conda:
        ENV
    shell:
        "{params.launcher}vladapter pretrain --matching --resume --settings {params.settings:q} --out {output:q}"
        " > {log:q} 2>&1"


rule pretrain:
    input:
        unpack(pretrain_inputs),
    output:
        directory("models/pretrain/{lm}"),
    params:
        # what the backbone depends on (not which runs use it): every setting the job receives
        settings=settings("pretrain"),
        launcher=launcher,
    priority: 10  # every run waits for the pre-trained backbone
    log:
        "logs/pretrain/{lm}.log",
    benchmark:
        "logs/benchmarks/pretrain/{lm}.tsv"
    threads: train_threads()
    resources:
        **train_resources(),
    conda:
        ENV
    shell:
        "{params.launcher}vladapter pretrain --resume --settings {params.settings:q} --out {output:q} > {log:q} 2>&1"


rule pretrain_video:
    input:
        unpack(pretrain_video_inputs),
    output:
        directory("models/pretrain-video/{lm}"),
    params:
        settings=settings("video"),
        launcher=launcher,
    priority: 5  # the video runs wait for it
    log:
        "logs/pretrain/{lm}-video.log",
    benchmark:
        "logs/benchmarks/pretrain/{lm}-video.tsv"
    threads: train_threads()
    resources:
        **train_resources(),
    conda:
        ENV
    shell:
        "{params.launcher}vladapter pretrain --resume --settings {params.settings:q} --out {output:q} > {log:q} 2>&1"


rule train:
    input:
        unpack(train_inputs),
    output:
        directory("models/{lm}/{run}"),
    params:
        # what this run's result depends on, exactly as the job receives it: a change here
        # (and only here) retrains it
        settings=settings("train"),
        launcher=launcher,
    log:
        "logs/train/{lm}/{run}.log",
    benchmark:
        "logs/benchmarks/train/{lm}/{run}.tsv"
    threads: train_threads()
    resources:
        **train_resources(),
    conda:
        ENV
    shell:
        "{params.launcher}vladapter train --resume --settings {params.settings:q} --out {output:q} > {log:q} 2>&1"
