# Evaluation: one job per (evaluation, variant); each writes one metrics file.


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
    log:
        "logs/evaluate/{evaluation}/{variant}.log",
    conda:
        "../envs/rsdino.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    shell:
        f"{rsdino('evaluate')} --evaluation {{wildcards.evaluation}} --variant {{wildcards.variant}} "
        f"--model {{params.model}} --raw {{input.raw}} --data {{input.data}} --out {{output}} "
        f"--threads {{threads}} "
        f"> {{log}} 2>&1"
