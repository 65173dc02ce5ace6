# Evaluation: one job per (evaluation, variant); each writes one metrics file (and, for retrieval and
# the analyses, PNGs in <metrics file stem>_artifacts/ beside it).

#: Protocols that train a network (fine-tuning, dense heads): a day of GPU time at full scale.
TRAINING_PROTOCOLS = {"finetune", "multilabel", "change_detection", "segmentation"}


def evaluation_gpus(wildcards):
    """One GPU per evaluation job at the full scale, none for the CPU demo."""
    return 0 if SCALE == "demo" else 1


def evaluation_runtime(wildcards):
    """Wall-clock minutes of one evaluation job."""
    if SCALE == "demo":
        return 30
    return 1440 if P.evaluations[wildcards.evaluation].protocol in TRAINING_PROTOCOLS else 240


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
        mem_mb=lambda wc: 8000 if SCALE == "demo" else 64000,
        runtime=evaluation_runtime,
        gpu=evaluation_gpus,
    shell:
        f"{rsdino('evaluate')} --evaluation {{wildcards.evaluation}} --variant {{wildcards.variant}} "
        f"--model {{params.model}} --raw {{input.raw}} --data {{input.data}} --out {{output}} "
        f"--device {{params.device}} --threads {{threads}} "
        f"> {{log}} 2>&1"
