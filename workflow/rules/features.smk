# Frozen visual features: the toy world's tiny CLIP, CLIP extraction into HDF5, linear probe.


rule train_toy_clip:
    input:
        "data/raw/toy_stats.json",
    output:
        directory("models/toyclip"),
    log:
        "logs/train_toy_clip.log",
    benchmark:
        "logs/benchmarks/train_toy_clip.tsv"
    threads: threads("extract")
    resources:
        **res("extract"),
    conda:
        ENV
    shell:
        "vladapter train-toy-clip --raw data/raw --out {output} > {log} 2>&1"


rule extract_features:
    input:
        unpack(extract_inputs),
    output:
        "data/features/{source}.{backbone}.h5",
    params:
        args=extract_args,
        batch_size=config["features"]["batch_size"],
    log:
        "logs/extract_features/{source}.{backbone}.log",
    benchmark:
        "logs/benchmarks/extract_features/{source}.{backbone}.tsv"
    threads: threads("extract")
    resources:
        **res("extract"),
    conda:
        ENV
    shell:
        "vladapter extract-features {params.args} --out {output}"
        " --batch-size {params.batch_size} --workers {threads} > {log} 2>&1"


rule probe:
    input:
        features=lambda w: features(w.source),
        raw="data/raw/toy_stats.json",
    output:
        "metrics/probe/{source}.json",
    log:
        "logs/probe/{source}.log",
    benchmark:
        "logs/benchmarks/probe/{source}.tsv"
    threads: 1
    resources:
        **res("light"),
    conda:
        ENV
    shell:
        "vladapter probe --features {input.features}"
        " --attributes data/raw/{wildcards.source}/toy_attributes.json --out {output} > {log} 2>&1"
