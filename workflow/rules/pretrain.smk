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
        probe_raw=lambda wc: probe_data(wc, "raw"),
        probe_data=lambda wc: probe_data(wc, "prepared"),
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
        probe=probe_flags,
    message:
        "pretrain {wildcards.variant} (log: {log})"
    log:
        "logs/pretrain/{variant}.log",
    benchmark:
        "logs/benchmarks/pretrain/{variant}.tsv"
    conda:
        "../envs/rsdino.yaml"
    localrule: SUBMIT_FROM_HERE
    wildcard_constraints:
        variant=one_of(TRAINED_VARIANTS),
    threads: lambda wc: rule_threads(P.variants[wc.variant], LAUNCHER)
    resources:
        nodes=lambda wc: P.variants[wc.variant].resources.nodes,
        gpu=lambda wc: P.variants[wc.variant].resources.gpus_per_node,
        cpus_per_task=lambda wc: P.variants[wc.variant].resources.cpus_per_task,
        mem_mb=lambda wc: P.variants[wc.variant].resources.mem_mb,
        runtime=lambda wc: P.variants[wc.variant].resources.runtime_min,
    shell:
        f"{rsdino('pretrain')} --variant {{wildcards.variant}} --raw {{input.raw}} "
        f"--data {{input.data}} {{params.probe}} --out {{params.out}} --threads {{threads}} {{params.launch}} "
        f"> {{log}} 2>&1"


# Released weights (`weights:` of a variant): downloaded, or read from their path (a manual
# download stops with how to get it), then imported into the same model folder pretraining writes.
rule import_weights:
    input:
        unpack(released_weights_inputs),
    output:
        model=f"{MODELS}/{{variant}}/model.safetensors",
        meta=f"{MODELS}/{{variant}}/model.json",
    params:
        settings=variant_digest,
        out=lambda wc, output: os.path.dirname(output.model),
        data=lambda wc, input: f"--raw {input.raw} --data {input.data}" if "data" in input.keys() else "",
    message:
        "import_weights {wildcards.variant} (log: {log})"
    log:
        "logs/import_weights/{variant}.log",
    conda:
        "../envs/rsdino.yaml"
    wildcard_constraints:
        variant=one_of(IMPORTED_VARIANTS),
    resources:
        downloads=1,
        mem_mb=4000,
        runtime=60,
    shell:
        f"{rsdino('import-weights')} --variant {{wildcards.variant}} --downloads {DATA}/downloads "
        f"{{params.data}} --out {{params.out}} > {{log}} 2>&1"


rule make_demo_weights:
    output:
        f"{DATA}/demo/{{filename}}",
    params:
        variant=lambda wc: DEMO_WEIGHTS[wc.filename],
        settings=lambda wc: settings_digest(P.resolved_for(variant=DEMO_WEIGHTS[wc.filename])),
    message:
        "make_demo_weights {output} (log: {log})"
    log:
        "logs/make_demo/{filename}.log",
    conda:
        "../envs/rsdino.yaml"
    wildcard_constraints:
        filename=one_of(DEMO_WEIGHTS),
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        f"{rsdino('make-demo')} --variant {{params.variant}} --out {{output}} > {{log}} 2>&1"
