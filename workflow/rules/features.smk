# Frozen visual features: the toy world's tiny CLIP, CLIP extraction into HDF5, linear probe.


rule train_toy_clip:
    input:
        "data/raw/toy_stats.json",
    output:
        directory("models/{toyclip}"),
    wildcard_constraints:
        toyclip=TOY_CLIP_NAMES,
    params:
        vision=lambda w: TOY_CLIPS[f"models/{w.toyclip}"],
        steps=lambda w: config["features"]["toy_clip_steps"][TOY_CLIPS[f"models/{w.toyclip}"]],
    log:
        "logs/train_toy_clip/{toyclip}.log",
    benchmark:
        "logs/benchmarks/train_toy_clip/{toyclip}.tsv"
    threads: threads("extract")
    resources:
        **res("extract"),
    conda:
        ENV
    shell:
        "vladapter train-toy-clip --vision {params.vision:q}"
        " --output {output:q} --steps {params.steps:q} --threads {threads} > {log:q} 2>&1"


rule extract_features:
    input:
        unpack(extract_inputs),
    output:
        "data/features/{source}.{backbone}.h5",
    params:
        input=extract_source,
        backbone=lambda w, input: input.get("model", BACKBONES[w.backbone]),
        batch_size=config["features"]["batch_size"],
        device="cuda" if config["resources"]["extract"]["gpu"] else "cpu",
    # the pre-training features first: VL pre-training is on the critical path
    priority: lambda w: 10 if w.source == X.PRETRAIN else 0
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
        "vladapter extract-features --source {wildcards.source} --input {params.input:q}"
        " --backbone {params.backbone:q} --output {output:q} --batch-size {params.batch_size:q}"
        " --device {params.device:q} --workers {threads} --threads {threads} > {log:q} 2>&1"


rule probe:
    input:
        features=lambda w: features(w.source),
        raw="data/raw/toy_stats.json",
    output:
        "metrics/probe/{source}.json",
    params:
        n_tokens=config["features"]["n_image_tokens"],
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
        "vladapter probe --features {input.features:q}"
        " --attributes data/raw/{wildcards.source}/toy_attributes.json --n-tokens {params.n_tokens:q}"
        " --out {output:q} > {log:q} 2>&1"
