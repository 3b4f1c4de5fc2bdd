# Raw data (toy world or downloads) -> prepared JSON-lines records -> sampled video frames.


rule toyworld:
    output:
        "data/raw/toy_stats.json",
    params:
        scale=config["world"].get("scale", "default"),
        seed=config["world"]["seed"],
    log:
        "logs/toyworld.log",
    benchmark:
        "logs/benchmarks/toyworld.tsv"
    threads: threads("extract")
    resources:
        **res("light"),
    conda:
        ENV
    shell:
        "vladapter toyworld --out data/raw --scale {params.scale:q} --seed {params.seed:q}"
        " --workers {threads} > {log:q} 2>&1"


rule download:
    output:
        directory("data/raw/{dataset}"),
    log:
        "logs/download/{dataset}.log",
    benchmark:
        "logs/benchmarks/download/{dataset}.tsv"
    threads: 1
    resources:
        **res("light"),
    conda:
        ENV
    shell:
        "vladapter download {wildcards.dataset} --out data/raw > {log:q} 2>&1"


rule prepare:
    input:
        raw_inputs,
    output:
        prepared("{dataset}"),
        summary="data/prepared/{dataset}/summary.json",
    log:
        "logs/prepare/{dataset}.log",
    benchmark:
        "logs/benchmarks/prepare/{dataset}.tsv"
    threads: 1
    resources:
        **res("light"),
    conda:
        ENV
    shell:
        "vladapter prepare --dataset {wildcards.dataset} --raw data/raw --out data/prepared"
        " > {log:q} 2>&1"


rule sample_frames:
    input:
        raw_inputs,
    output:
        "data/frames/{dataset}.h5",
    params:
        mode=config["features"]["frames"]["mode"],
        value=config["features"]["frames"]["value"],
        size=config["features"]["frame_size"],
    log:
        "logs/sample_frames/{dataset}.log",
    benchmark:
        "logs/benchmarks/sample_frames/{dataset}.tsv"
    threads: threads("extract")
    resources:
        **res("light"),
    conda:
        ENV
    shell:
        "vladapter sample-frames --dataset {wildcards.dataset} --videos data/raw/{wildcards.dataset}/videos"
        " --output {output:q} --{params.mode:q} {params.value:q} --size {params.size:q} --workers {threads}"
        " > {log:q} 2>&1"
