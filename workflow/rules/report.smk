# Report: the results tables, their coverage of the published numbers, the summary metrics (DVC) and
# the plots, from the metrics files only.


rule report:
    input:
        metrics=metrics_files(),
        histories=history_files(),
    output:
        tables=TABLE_FILES,
        coverage=COVERAGE,
        summary=SUMMARY,
        plots=PLOTS,
    params:
        settings=lambda wc: settings_digest({t: P.tables[t].model_dump() for t in P.selected.tables}),
    message:
        "report (log: {log})"
    log:
        "logs/report.log",
    benchmark:
        "logs/benchmarks/report.tsv"
    conda:
        "../envs/rsdino.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        f"{rsdino('report')} --metrics {{input.metrics}} --out {RESULTS}/tables "
        f"--summary {{output.summary}} --plots {RESULTS}/plots --histories {{input.histories}} > {{log}} 2>&1"


rule dvc_record:
    input:
        tables=TABLE_FILES,
        summary=SUMMARY,
    output:
        touch(f"{RESULTS}/.dvc-recorded"),
    message:
        "dvc_record (log: {log})"
    log:
        "logs/dvc_record.log",
    benchmark:
        "logs/benchmarks/dvc_record.tsv"
    conda:
        "../envs/rsdino.yaml"
    resources:
        dvc=1,
    shell:
        f"rsdino dvc-commit --stage tables --params {PARAMS_FILE} > {{log}} 2>&1"
