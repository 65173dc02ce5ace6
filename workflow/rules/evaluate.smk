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
        device=P.selected.device,  # auto: CUDA where the job runs on a GPU machine, else CPU
    message:
        "evaluate {wildcards.evaluation} {wildcards.variant} (log: {log})"
    log:
        "logs/evaluate/{evaluation}/{variant}.log",
    benchmark:
        "logs/benchmarks/evaluate/{evaluation}/{variant}.tsv"
    conda:
        "../envs/rsdino.yaml"
    threads: EVALUATION_RESOURCES.threads  # on a CPU machine, two one-thread jobs beat one of two threads
    resources:
        mem_mb=EVALUATION_RESOURCES.mem_mb,
        runtime=evaluation_runtime,
        gpu=EVALUATION_RESOURCES.gpus,
    shell:
        f"{rsdino('evaluate')} --evaluation {{wildcards.evaluation}} --variant {{wildcards.variant}} "
        f"--model {{params.model}} --raw {{input.raw}} --data {{input.data}} --out {{output}} "
        f"--device {{params.device}} --threads {{threads}} "
        f"> {{log}} 2>&1"
