# Pretraining: one job per variant (method x backbone x pretraining data). The launcher
# (`--config launcher=...`, which the slurm profile sets to `submitit`, else each variant's
# `launcher` in params.yaml) decides how: `local` makes the rule's job the training itself;
# `submitit` runs the rule where snakemake runs, submitting the training as one multi-task SLURM
# job and waiting for it (rsdino.launch).

from rsdino.launch.workflow import launch_flags, rule_threads, submits_from_here

LAUNCHER = config.get("launcher")
SUBMIT_FROM_HERE = submits_from_here([P.variants[v] for v in P.selected_variants()], LAUNCHER)


rule pretrain:
    input:
        raw=lambda wc: pretrain_data(wc, "raw"),
        data=lambda wc: pretrain_data(wc, "prepared"),
    output:
        model=f"{MODELS}/{{variant}}/model.safetensors",
        meta=f"{MODELS}/{{variant}}/model.json",
        student=f"{MODELS}/{{variant}}/student/model.safetensors",
        student_meta=f"{MODELS}/{{variant}}/student/model.json",
        history=f"{MODELS}/{{variant}}/history.csv",
    params:
        settings=variant_digest,
        out=lambda wc, output: os.path.dirname(output.model),
        launch=lambda wc, resources: launch_flags(P.variants[wc.variant], LAUNCHER, resources),
    log:
        "logs/pretrain/{variant}.log",
    conda:
        "../envs/rsdino.yaml"
    localrule: SUBMIT_FROM_HERE
    threads: lambda wc: rule_threads(P.variants[wc.variant], LAUNCHER)
    resources:
        nodes=lambda wc: P.variants[wc.variant].resources.nodes,
        gpu=lambda wc: P.variants[wc.variant].resources.gpus_per_node,
        cpus_per_task=lambda wc: P.variants[wc.variant].resources.cpus_per_task,
        mem_mb=lambda wc: P.variants[wc.variant].resources.mem_mb,
        runtime=lambda wc: P.variants[wc.variant].resources.runtime_min,
    shell:
        f"{rsdino('pretrain')} --variant {{wildcards.variant}} --raw {{input.raw}} "
        f"--data {{input.data}} --out {{params.out}} --threads {{threads}} {{params.launch}} > {{log}} 2>&1"
