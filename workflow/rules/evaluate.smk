# Evaluation: one job per (evaluation, variant); each writes one metrics file (and, for retrieval and
# the analyses, PNGs in <metrics file stem>_artifacts/ beside it). It reads the variant's teacher
# backbone, or its student backbone (models/<variant>/student/) for an evaluation with `backbone: student`.

rule evaluate:
    input:
        model=evaluation_model,
        raw=lambda wc: evaluation_data(wc, "raw"),
        data=lambda wc: evaluation_data(wc, "prepared"),
    output:
        f"{RESULTS}/metrics/{{evaluation}}/{{variant}}.json",
    params:
        settings=evaluation_digest,
        model=lambda wc: f"{MODELS}/{wc.variant}",
        device=lambda wc: "cuda" if evaluation_gpus(wc) else "cpu",
    log:
        "logs/evaluate/{evaluation}/{variant}.log",
    conda:
        "../envs/rsdino.yaml"
    threads: 1 if ON_CPU else 2  # on a CPU scale, two one-thread jobs beat one of two threads
    resources:
        mem_mb=lambda wc: 8000 if ON_CPU else 64000,
        runtime=evaluation_runtime,
        gpu=evaluation_gpus,
    shell:
        f"{rsdino('evaluate')} --evaluation {{wildcards.evaluation}} --variant {{wildcards.variant}} "
        f"--model {{params.model}} --raw {{input.raw}} --data {{input.data}} --out {{output}} "
        f"--device {{params.device}} --threads {{threads}} "
        f"> {{log}} 2>&1"
