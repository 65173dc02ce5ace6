# Data: generate the demo archives, download + verify + extract, track with DVC, split.


rule make_demo:
    output:
        f"{DATA}/demo/{{filename}}",
    params:
        dataset=lambda wc: DEMO_ARCHIVES[wc.filename],
        settings=demo_digest,
    message:
        "make_demo {output} (log: {log})"
    log:
        "logs/make_demo/{filename}.log",
    benchmark:
        "logs/benchmarks/make_demo/{filename}.tsv"
    conda:
        "../envs/rsdino.yaml"
    wildcard_constraints:
        filename=one_of(DEMO_ARCHIVES),
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        f"{rsdino('make-demo')} --dataset {{params.dataset}} --out {{output}} > {{log}} 2>&1"


rule download:
    input:
        archive=local_source,
    output:
        directory(f"{DATA}/raw/{{dataset}}"),
    params:
        settings=dataset_digest,
    message:
        "download {wildcards.dataset} (log: {log})"
    log:
        "logs/download/{dataset}.log",
    benchmark:
        "logs/benchmarks/download/{dataset}.tsv"
    conda:
        "../envs/rsdino.yaml"
    resources:
        downloads=1,
        mem_mb=2000,
        runtime=720,
    shell:
        f"{rsdino('download')} --dataset {{wildcards.dataset}} --downloads {DATA}/downloads "
        f"--out {{output}} > {{log}} 2>&1"


rule track:
    input:
        raw=f"{DATA}/raw/{{dataset}}",
    output:
        f"{DATA}/raw/{{dataset}}.dvc",
    message:
        "track {wildcards.dataset} (log: {log})"
    log:
        "logs/track/{dataset}.log",
    benchmark:
        "logs/benchmarks/track/{dataset}.tsv"
    conda:
        "../envs/rsdino.yaml"
    resources:
        dvc=1,
        mem_mb=2000,
        runtime=240,
    shell:
        f"{rsdino('track')} --path {{input.raw}} > {{log}} 2>&1"


rule prepare:
    input:
        raw=f"{DATA}/raw/{{dataset}}",
    output:
        directory(f"{DATA}/prepared/{{dataset}}"),
    params:
        settings=dataset_digest,
    message:
        "prepare {wildcards.dataset} (log: {log})"
    log:
        "logs/prepare/{dataset}.log",
    benchmark:
        "logs/benchmarks/prepare/{dataset}.tsv"
    conda:
        "../envs/rsdino.yaml"
    resources:
        mem_mb=4000,
        runtime=240,
    shell:
        f"{rsdino('prepare')} --dataset {{wildcards.dataset}} --raw {{input.raw}} --out {{output}} "
        f"> {{log}} 2>&1"
