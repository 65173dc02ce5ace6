# Pretraining: one job per variant (method x backbone x pretraining data).


rule pretrain:
    input:
        raw=lambda wc: pretrain_data(wc, "raw"),
        data=lambda wc: pretrain_data(wc, "prepared"),
    output:
        model=f"{MODELS}/{{variant}}/model.safetensors",
        meta=f"{MODELS}/{{variant}}/model.json",
    params:
        settings=variant_digest,
        out=lambda wc, output: os.path.dirname(output.model),
    log:
        "logs/pretrain/{variant}.log",
    conda:
        "../envs/rsdino.yaml"
    threads: lambda wc: P.variants[wc.variant].resources.cpus_per_task
    resources:
        nodes=lambda wc: P.variants[wc.variant].resources.nodes,
        gpu=lambda wc: P.variants[wc.variant].resources.gpus_per_node,
        cpus_per_task=lambda wc: P.variants[wc.variant].resources.cpus_per_task,
        mem_mb=lambda wc: P.variants[wc.variant].resources.mem_mb,
        runtime=lambda wc: P.variants[wc.variant].resources.runtime_min,
    shell:
        f"{rsdino('pretrain')} --variant {{wildcards.variant}} --raw {{input.raw}} "
        f"--data {{input.data}} --out {{params.out}} --threads {{threads}} > {{log}} 2>&1"
