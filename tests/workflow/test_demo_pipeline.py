"""End to end: the demo DAG from a fresh copy of the project, offline, idempotent, traceable."""

import csv

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(project, run_in) -> dict:
    out = run_in(project, "snakemake", "--profile", "local", "all")
    return {**project, "first_run": out}


def test_table_shows_pretrained_above_random_init(demo):
    table = demo["root"] / "results" / "tables" / "demo_knn.csv"
    rows = list(csv.DictReader(table.open()))
    assert rows, table.read_text()
    row = next(r for r in rows if r["variant"] == "demo_dino_vit")
    ours, random_init = float(row["ours"]), float(row["random_init"])
    print(f"demo kNN top-1: pretrained {ours:.2f}, random init {random_init:.2f}")
    assert ours > random_init
    markdown = (demo["root"] / "results" / "tables" / "demo_knn.md").read_text()
    assert "demo_dino_vit" in markdown and "random init" in markdown.lower()
    linear = next(csv.DictReader((demo["root"] / "results" / "tables" / "demo_linear.csv").open()))
    print(f"demo linear probe top-1: pretrained {float(linear['ours']):.2f}, "
          f"random init {float(linear['random_init']):.2f}")
    assert 0 < float(linear["ours"]) <= 100 and 0 < float(linear["random_init"]) <= 100
    assert (demo["root"] / "models" / "demo_dino_vit" / "params.resolved.yaml").is_file()
    assert (demo["root"] / "data" / "raw" / "demo_eurosat.dvc").is_file()


def test_report_shows_a_knn_probe_curve_per_pretrained_variant(demo):
    from matplotlib.image import imread

    from rsdino.config import load_params

    params = load_params(demo["root"] / "params.yaml")
    for variant in params.selected.variants:
        history = demo["root"] / "models" / variant / "history.csv"
        rows = [r for r in csv.DictReader(history.open()) if r.get("knn_probe_top1")]
        assert len(rows) >= 3 and rows[0]["step"] == "0", (variant, len(rows))
        print(f"{variant}: kNN probe {rows[0]['knn_probe_top1']} -> {rows[-1]['knn_probe_top1']} "
              f"over {rows[-1]['step']} steps")
        png = demo["root"] / "results" / "plots" / f"curves_{variant}.png"
        assert png.stat().st_size > 20_000, png
        height, width = imread(png).shape[:2]
        assert 800 <= width <= 2000 and height >= 300, (png, width, height)


def test_second_run_does_nothing_and_dvc_is_up_to_date(demo, run_in):
    again = run_in(demo, "snakemake", "--profile", "local", "all")
    assert "Nothing to be done" in again, again[-3000:]
    repro = run_in(demo, "dvc", "repro")
    assert "didn't change" in repro or "up to date" in repro, repro
    assert "Running stage" not in repro
    status = run_in(demo, "dvc", "status")
    assert "up to date" in status.lower() or status.strip() == "", status


def test_changing_an_evaluation_setting_reruns_only_that_evaluation(demo, job_counts, run_in):
    params = demo["root"] / "params.yaml"
    original = params.read_text()
    params.write_text(original.replace("    c: 1.0\n    random_baseline: true",
                                       "    c: 0.5\n    random_baseline: true", 1))  # demo_linear
    try:
        plan = run_in(demo, "snakemake", "--profile", "local", "-n", "all")
        counts = job_counts(plan)
        assert counts == {"evaluate": 1, "report": 1, "dvc_record": 1, "all": 1}, plan[-3000:]
    finally:
        params.write_text(original)


def test_mlflow_has_one_run_per_step_with_params_and_tags(demo):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{demo['root'] / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("rsdino")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    steps = {r.data.tags.get("rsdino.step") for r in runs}
    assert {"download", "prepare", "pretrain", "knn", "linear_logistic", "report"} <= steps
    pretraining = [r for r in runs if r.data.tags.get("rsdino.step") == "pretrain"]
    from rsdino.config.methods import METHODS

    trained = {r.data.params["method"] for r in pretraining}
    assert trained == set(METHODS)  # one tiny variant each
    pretrain = next(r for r in pretraining if r.data.params["method"] == "dino")
    assert pretrain.data.params["backbone"] == "vit_tiny_patch8"
    assert pretrain.data.params["dataset"] == "demo_eurosat"
    assert "loss" in pretrain.data.metrics and "lr" in pretrain.data.metrics
    dinov2 = next(r for r in pretraining if r.data.params["method"] == "dinov2")
    assert {"loss_dino", "loss_ibot", "loss_koleo", "teacher_entropy"} <= set(dinov2.data.metrics)
    assert len(client.get_metric_history(pretrain.info.run_id, "loss")) > 10
    parent_id = pretrain.data.tags["mlflow.parentRunId"]
    knn = [r for r in runs if r.data.tags.get("rsdino.step") == "knn"]
    import yaml

    evaluations = yaml.safe_load((demo["root"] / "params.yaml").read_text())["evaluations"]
    knn_variants = evaluations["demo_knn"]["variants"]
    assert len(knn) == len(knn_variants)
    assert [r.data.tags["mlflow.parentRunId"] for r in knn].count(parent_id) == 1
    assert client.get_run(parent_id).data.tags["rsdino.group"] == "demo_dino_vit"
    # every run names the data it read: the pretraining data, the evaluation data and the model's
    trained_on = pretrain.data.tags["rsdino.data_version.demo_eurosat"]
    assert trained_on.startswith(("md5:", "sha256:"))
    knn_dino = next(r for r in knn if r.data.tags["mlflow.parentRunId"] == parent_id)
    assert knn_dino.data.tags["rsdino.pretrain_data_version.demo_eurosat"] == trained_on
    assert knn_dino.data.tags["rsdino.data_version.demo_eurosat"].startswith(("md5:", "sha256:"))


def test_pretraining_logs_a_progress_line_per_epoch_and_the_profile_one_line_per_job(demo):
    """Through Snakemake (no terminal): each epoch of demo_dino_vit is one line with its ETA."""
    import re

    import yaml

    log = (demo["root"] / "logs" / "pretrain" / "demo_dino_vit.log").read_text()
    variants = yaml.safe_load((demo["root"] / "params.yaml").read_text())["variants"]
    epochs = variants["demo_dino_vit"]["optim"]["epochs"]
    lines = [line for line in log.splitlines() if re.search(r"demo_dino_vit: step \d+/\d+ ", line)]
    seen = [int(re.search(r"epoch (\d+)/", line).group(1)) for line in lines]
    assert seen == list(range(1, epochs + 1)), log[-2000:]
    assert all(re.search(r"ETA \d+:\d\d:\d\d", line) and "img/s" in line and "loss " in line
               for line in lines)
    out = demo["first_run"]
    assert re.search(r"pretrain demo_dino_vit \(log: logs/pretrain/demo_dino_vit\.log\)", out), out[-3000:]
    assert re.search(r"\d+ of \d+ steps \(\d+%\) done", out)
