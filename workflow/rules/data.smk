# Data: generate the demo archives, download + verify + extract, track with DVC, split.


rule make_demo:
    output:
        f"{DATA}/demo/{{filename}}",
    params:
        dataset=lambda wc: DEMO_ARCHIVES[wc.filename],
        settings=demo_digest,
    log:
        "logs/make_demo/{filename}.log",
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
    log:
        "logs/download/{dataset}.log",
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
    log:
        "logs/track/{dataset}.log",
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
    log:
        "logs/prepare/{dataset}.log",
    conda:
        "../envs/rsdino.yaml"
    resources:
        mem_mb=4000,
        runtime=240,
    shell:
        f"{rsdino('prepare')} --dataset {{wildcards.dataset}} --raw {{input.raw}} --out {{output}} "
        f"> {{log}} 2>&1"
