# Evaluation: one job per (evaluation, variant); each writes one metrics file (and, for retrieval and
# the analyses, PNGs in <metrics file stem>_artifacts/ beside it).

rule evaluate:
    input:
        model=f"{MODELS}/{{variant}}/model.safetensors",
        raw=lambda wc: evaluation_data(wc, "raw"),
        data=lambda wc: evaluation_data(wc, "prepared"),
    output:
        f"{RESULTS}/metrics/{{evaluation}}/{{variant}}.json",
    params:
        settings=evaluation_digest,
        model=lambda wc, input: os.path.dirname(input.model),
        device=lambda wc: "cuda" if evaluation_gpus(wc) else "cpu",
    log:
        "logs/evaluate/{evaluation}/{variant}.log",
    conda:
        "../envs/rsdino.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc: 8000 if ON_CPU else 64000,
        runtime=evaluation_runtime,
        gpu=evaluation_gpus,
    shell:
        f"{rsdino('evaluate')} --evaluation {{wildcards.evaluation}} --variant {{wildcards.variant}} "
        f"--model {{params.model}} --raw {{input.raw}} --data {{input.data}} --out {{output}} "
        f"--device {{params.device}} --threads {{threads}} "
        f"> {{log}} 2>&1"
