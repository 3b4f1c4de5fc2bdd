# Raw data (toy world or downloads) -> prepared JSON-lines records -> sampled video frames
# (only the prepared records' videos, inside their timestamps; one file per feature source).


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


# Its output is the list of verified files, not the data folder: Snakemake deletes a failed
# job's outputs, and the folder holds verified files, partial downloads to resume, or the
# user's own data (which `vladapter download` only reads).
rule download:
    output:
        "data/raw/{dataset}.download.json",
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
        "vladapter download {wildcards.dataset:q} --out data/raw --manifest {output:q} > {log:q} 2>&1"


rule prepare:
    input:
        raw_inputs,
    output:
        prepared("{dataset}"),
        summary="data/prepared/{dataset}/summary.json",
    params:
        # video datasets: where their videos are, the missing-video policy, the feature source
        videos=prepare_args,
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
        " {params.videos:q} > {log:q} 2>&1"


rule sample_frames:
    input:
        lambda w: [p for d in sharing(w.dataset) for p in prepared(d)],
    output:
        "data/frames/{dataset}.h5",
    params:
        videos=lambda w: video_args(w.dataset),
        records=lambda w: [f"data/prepared/{d}" for d in sharing(w.dataset)],
        mode=config["features"]["frames"]["mode"],
        value=config["features"]["frames"]["value"],
        size=config["features"]["frame_size"],
        quality=frame_quality_args(),
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
        "vladapter sample-frames --dataset {wildcards.dataset} {params.videos:q} --records {params.records:q}"
        " --output {output:q} --{params.mode:q} {params.value:q} --size {params.size:q} {params.quality:q}"
        " --workers {threads} > {log:q} 2>&1"
