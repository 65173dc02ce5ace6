"""Results tables from hand-written metrics files, with published numbers from the real seed CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from rsdino.config import load_params, parse_params
from rsdino.report.coverage import coverage, coverage_lines
from rsdino.report.plots import plot_ours_vs_published, plot_training_curves
from rsdino.report.published import AmbiguousPublishedValue, load_seed_tables, lookup, lookup_entry, row_key
from rsdino.report.tables import CSV_COLUMNS, MetricsFileError, build_tables, layout, write_summary

SEED_000 = "000_3c1603fd0c612d3c.txt"
ROOT = Path(__file__).resolve().parents[2]


def dataset(published_name=None):
    out = {"source": {"url": "file://data/demo/x.tar"}, "bands": ["R", "G", "B"]}
    if published_name:
        out["published_name"] = published_name
    return out


def settings(**overrides):
    raw = {
        "scale": "demo",
        "scales": {"demo": {"variants": ["vits", "tiny"], "evaluations": ["knn_ucm", "knn_euro"],
                            "tables": ["knn_table"]}},
        "datasets": {"ucm": dataset("UC Merced"), "euro": dataset("EuroSAT"), "pre": dataset()},
        "variants": {
            "vits": {"method": "dinov2", "backbone": "vit_small_patch16", "pretrain_data": "pre",
                     "published": {"model": "dinov2", "arch": "vit_small_patch16",
                                   "pretrain_data": "Million-AID+SkyScript"}},
            "tiny": {"method": "dino", "backbone": "vit_tiny_patch8", "pretrain_data": "pre"},
        },
        "evaluations": {"knn_ucm": {"protocol": "knn", "dataset": "ucm", "variants": ["vits", "tiny"]},
                        "knn_euro": {"protocol": "knn", "dataset": "euro", "variants": ["vits"]}},
        "tables": {"knn_table": {"title": "kNN test table", "evaluations": ["knn_ucm", "knn_euro"],
                                 "published_table": "dinov2rs_knn", "caption": "A test caption."},
                   "unused": {"title": "not selected", "evaluations": ["knn_ucm"]}},
    }
    raw.update(overrides)
    return parse_params(raw)


def write_metrics(folder, evaluation, variant, metrics, baselines=None, run_id="run123"):
    data = {"evaluation": evaluation, "protocol": "knn", "variant": variant, "dataset": "x",
            "metrics": metrics, "mlflow": {"run_id": run_id, "experiment": "rsdino"}}
    if baselines is not None:
        data["baselines"] = baselines
    path = folder / evaluation / f"{variant}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def metrics_files(tmp_path):
    folder = tmp_path / "metrics"
    return [
        write_metrics(folder, "knn_ucm", "vits", {"top1_k20": 81.234, "top5_k20": 97.0},
                      {"random_init": {"top1_k20": 40.5}}, run_id="run-vits-ucm"),
        write_metrics(folder, "knn_ucm", "tiny", {"top1_k20": 60.0}, run_id="run-tiny-ucm"),
        folder / "knn_euro" / "vits.json",  # never written: not run
    ]


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_published_lookup_reads_the_seed_csv():
    assert lookup("dinov2rs_knn", "dinov2", "vit_small_patch16", "Million-AID+SkyScript", "UC Merced",
                  "top1") == (87.143, SEED_000)
    assert lookup("dinov2rs_linear", "dino", "convvit_small", "Million-AID+SkyScript", "UC Merced",
                  "top1") == (98.095, SEED_000)
    assert lookup("dinov2rs_knn", "dinov2", "vit_tiny_patch8", "Million-AID+SkyScript", "UC Merced",
                  "top1") is None
    with pytest.raises(AmbiguousPublishedValue, match="protocol"):
        lookup("dinomc_eurosat_frozen", "dino_mc", "resnet50", "SeCo-100K", "EuroSAT", "top1")
    entry = lookup_entry("dinomc_eurosat_frozen", "dino_mc", "resnet50", "SeCo-100K", "EuroSAT", "top1",
                         protocol="knn_weighted_k20")
    assert (entry.value, entry.source) == (93.94, "001_49444cfd8d3d6406.txt")


def test_build_tables_cells_markdown_and_csv(tmp_path, metrics_files):
    written = build_tables(metrics_files, settings(), tmp_path / "tables")
    assert [p.name for p in written] == ["knn_table.md", "knn_table.csv", "coverage.json"]
    md = (tmp_path / "tables" / "knn_table.md").read_text()
    lines = md.splitlines()
    assert lines[0] == "# kNN test table"
    assert lines[2] == ("## weighted kNN (DINO): `top1_k20` (published table `dinov2rs_knn`)")
    assert "| model | dataset | ours | published | random init | ours − random init |" in lines
    assert "| vits | ucm | 81.23 | 87.14 | 40.50 | +40.73 |" in lines
    assert "| vits | euro | not run | 95.74 | — | — |" in lines
    assert "| tiny | ucm | 60.00 | — | — | — |" in lines
    assert not any(line.startswith("| tiny | euro") for line in lines)  # not part of that evaluation
    # the two models of the seed's kNN table that no variant here stands for: published only
    assert "| dinov2 vit_base_patch16 (published only) | ucm | not trained here | 87.14 | — | — |" in lines
    assert "| dino convvit_small (published only) | euro | not trained here | 94.07 | — | — |" in lines
    assert lines.index("| tiny | ucm | 60.00 | — | — | — |") < lines.index(
        "| dinov2 vit_base_patch16 (published only) | ucm | not trained here | 87.14 | — | — |")
    assert "- vits: dinov2, vit_small_patch16" in lines
    # sources named by paper title and arXiv id
    assert "DINOv2: Learning Robust Visual Features without Supervision" in md and "arXiv:2304.07193" in md
    assert "A test caption." in md and SEED_000 in md and "knn_faiss_majority_k20_90_10" in md
    assert "`run-vits-ucm`" in md and "`run-tiny-ucm`" in md

    rows = read_csv(tmp_path / "tables" / "knn_table.csv")
    assert tuple(rows[0]) == CSV_COLUMNS
    by_key = {(r["variant"], r["dataset"]): r for r in rows if r["published_only"] == "false"}
    assert set(by_key) == {("vits", "ucm"), ("vits", "euro"), ("tiny", "ucm")}
    published_only = {(r["variant"], r["dataset"]): r for r in rows if r["published_only"] == "true"}
    assert set(published_only) == {(f"{m} (published only)", d) for m in ("dinov2 vit_base_patch16",
                                                                          "dino convvit_small")
                                   for d in ("ucm", "euro")}
    cell = published_only["dino convvit_small (published only)", "ucm"]
    assert cell["ours"] == "" and float(cell["published"]) == 90.0 and cell["published_source"] == SEED_000
    vits_ucm = by_key["vits", "ucm"]
    assert float(vits_ucm["ours"]) == 81.234 and float(vits_ucm["random_init"]) == 40.5
    assert float(vits_ucm["published"]) == 87.143 and vits_ucm["published_source"] == SEED_000
    assert vits_ucm["mlflow_run_id"] == "run-vits-ucm" and vits_ucm["metric"] == "top1_k20"
    not_run = by_key["vits", "euro"]
    assert not_run["ours"] == "" and float(not_run["published"]) == 95.741
    assert by_key["tiny", "ucm"]["published"] == ""

    png = plot_ours_vs_published(tmp_path / "tables" / "knn_table.csv", tmp_path / "plots" / "knn.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_other_metric_and_no_published_table(tmp_path, metrics_files):
    params = settings()
    params.tables["knn_table"].metric = "top5_k20"
    params.tables["knn_table"].published_table = None
    build_tables(metrics_files, params, tmp_path)
    md = (tmp_path / "knn_table.md").read_text()
    assert "| vits | ucm | 97.00 | — | — | — |" in md
    assert "| vits | euro | not run | — | — | — |" in md
    assert "| tiny | ucm | — | — | — | — |" in md  # the file has no top5_k20
    assert SEED_000 not in md


def test_ambiguous_published_values_use_the_evaluations_protocol(tmp_path):
    params = settings()
    params.variants["vits"].published.model = "dino_mc"
    params.variants["vits"].published.pretrain_data = "SeCo-100K"
    params.tables["knn_table"].published_table = "dinomc_eurosat_frozen"
    build_tables([], params, tmp_path)  # default published_protocol: knn_weighted_k20
    rows = {(r["variant"], r["dataset"]): r for r in read_csv(tmp_path / "knn_table.csv")}
    assert float(rows["vits", "euro"]["published"]) == 93.41
    assert rows["vits", "ucm"]["published"] == ""


def test_malformed_metrics_files_are_named(tmp_path, metrics_files):
    params = settings()
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(MetricsFileError, match="broken.json"):
        build_tables([*metrics_files, broken], params, tmp_path / "out")
    bad_value = {"evaluation": "knn_ucm", "variant": "vits", "metrics": {"top1_k20": "high"}}
    broken.write_text(json.dumps(bad_value))
    with pytest.raises(MetricsFileError, match=r"broken.json: 'metrics'"):
        build_tables([broken], params, tmp_path / "out")
    broken.write_text(json.dumps({"variant": "vits", "metrics": {}}))
    with pytest.raises(MetricsFileError, match=r"broken.json: .*'evaluation'"):
        write_summary([broken], tmp_path / "summary.json")
    duplicate = write_metrics(tmp_path / "copy", "knn_ucm", "vits", {"top1_k20": 1.0})
    with pytest.raises(MetricsFileError, match="also in"):
        build_tables([*metrics_files, duplicate], params, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_write_summary(tmp_path, metrics_files):
    out = write_summary(metrics_files, tmp_path / "results" / "summary.json")
    assert json.loads(out.read_text()) == {"knn_ucm/tiny/top1_k20": 60.0, "knn_ucm/vits/top1_k20": 81.234,
                                           "knn_ucm/vits/top5_k20": 97.0}


def test_per_protocol_metrics_published_tables_and_reference_columns(tmp_path):
    params = settings(
        evaluations={"knn_ucm": {"protocol": "knn_faiss", "dataset": "ucm", "variants": ["vits"]},
                     "lin_ucm": {"protocol": "linear_logistic", "dataset": "ucm", "variants": ["vits"]},
                     "demo_knn": {"protocol": "knn", "dataset": "euro", "variants": ["tiny"]},
                     "knn_euro": {"protocol": "knn", "dataset": "euro", "variants": ["vits"]}},
        scales={"demo": {"variants": ["tiny"], "evaluations": ["demo_knn"], "tables": ["t"]}},
        tables={"t": {"title": "T", "evaluations": ["demo_knn"], "reference": ["knn_ucm", "lin_ucm"],
                      "metrics": {"knn_faiss": "top1_k20", "linear_logistic": ["top1", "top5"],
                                  "knn": "top1_k20"},
                      "published_tables": {"knn_faiss": "dinov2rs_knn",
                                           "linear_logistic": "dinov2rs_linear"}},
                "knn_euro_table": {"title": "unused", "evaluations": ["knn_euro"]}})
    metrics = [write_metrics(tmp_path / "m", "demo_knn", "tiny", {"top1_k20": 55.5}, run_id="run-demo"),
               write_metrics(tmp_path / "m", "lin_ucm", "vits", {"top1": 90.0, "top5": 99.0}, run_id="r2")]
    build_tables(metrics, params, tmp_path / "tables")
    lines = (tmp_path / "tables" / "t.md").read_text().splitlines()
    headings = [line for line in lines if line.startswith("## ")]
    assert headings == ["## weighted kNN (DINO): `top1_k20`",
                        "## kNN, FAISS L2 majority vote (DINOv2-RS): `top1_k20` "
                        "(published table `dinov2rs_knn`)",
                        "## logistic-regression linear probe: `top1` (published table `dinov2rs_linear`)",
                        "## logistic-regression linear probe: `top5` (published table `dinov2rs_linear`)"]
    # tiny: its demo run; vits: the reference columns, the kNN one not run at this scale beside the
    # published kNN number, the linear one with a metrics file (ours beside the published number)
    assert "| tiny | euro | 55.50 | — | — | — |" in lines
    assert "| vits | ucm | not run at this scale | 87.14 | — | — |" in lines
    assert "| vits | ucm | 90.00 | 99.05 | — | — |" in lines and "| vits | ucm | 99.00 | — | — | — |" in lines
    rows = read_csv(tmp_path / "tables" / "t.csv")
    assert {(r["evaluation"], r["metric"]) for r in rows} == {
        ("demo_knn", "top1_k20"), ("knn_ucm", "top1_k20"), ("lin_ucm", "top1"), ("lin_ucm", "top5")}


def test_reference_to_an_unknown_evaluation_names_the_table(tmp_path):
    params = settings(tables={"knn_table": {"title": "T", "evaluations": ["knn_ucm"],
                                            "reference": ["ghost"]}})
    with pytest.raises(ValueError, match=r"tables\.knn_table\.reference\.0: unknown evaluation 'ghost'"):
        build_tables([], params, tmp_path)


def test_a_cell_not_above_random_init_is_marked_in_markdown_csv_and_plot(tmp_path):
    metrics = [write_metrics(tmp_path / "m", "knn_ucm", "vits", {"top1_k20": 59.0},
                             {"random_init": {"top1_k20": 61.0}}),
               write_metrics(tmp_path / "m", "knn_ucm", "tiny", {"top1_k20": 70.0},
                             {"random_init": {"top1_k20": 20.0}})]
    build_tables(metrics, settings(), tmp_path / "tables")
    lines = (tmp_path / "tables" / "knn_table.md").read_text().splitlines()
    assert "| vits | ucm | 59.00 | 87.14 | 61.00 | **-2.00 ✗** |" in lines
    assert "| tiny | ucm | 70.00 | — | 20.00 | +50.00 |" in lines
    rows = {r["variant"]: r for r in read_csv(tmp_path / "tables" / "knn_table.csv") if r["dataset"] == "ucm"}
    assert rows["vits"]["beats_random_init"] == "false" and rows["tiny"]["beats_random_init"] == "true"
    assert rows["vits"]["protocol"] == "knn"
    png = plot_ours_vs_published(tmp_path / "tables" / "knn_table.csv", tmp_path / "knn_table.png")
    pixels = (imread(png)[..., :3] * 255).round().reshape(-1, 3)
    assert (np.abs(pixels - (214, 39, 40)).max(axis=1) <= 30).sum() > 10  # the red mark


def test_every_table_of_the_project_reads_on_a_screen(tmp_path):
    """Rows of every demo and full-scale table at most 130 characters; plots at most 2000 px wide."""
    for scale in ("demo", "full"):
        params = load_params(ROOT / "params.yaml", scale)
        for name, rows in layout(params).items():
            md = (build_tables([], params, tmp_path / scale)[0].parent / f"{name}.md").read_text()
            widest = max(len(line) for line in md.splitlines() if line.startswith("|"))
            assert widest <= 130, (name, widest)
            assert rows and md.count("\n## ") >= 1, name
    table = tmp_path / "full" / "table3_satdino.csv"
    png = plot_ours_vs_published(table, tmp_path / "table3_satdino.png")
    assert imread(png).shape[1] <= 2000


def test_training_curves_draw_every_history_and_name_a_bad_file(tmp_path):
    histories = []
    for variant, decay in (("dino_a", 0.5), ("dino_b", 0.9)):
        folder = tmp_path / variant
        folder.mkdir()
        steps = np.arange(1, 9)
        frame = pd.DataFrame({"step": steps, "epoch": steps / 4, "loss": 10 * decay ** steps,
                              "student_std": 0.1 + 0 * steps, "lr": 1e-3 * steps})
        frame.to_csv(folder / "history.csv", index=False)
        histories.append(folder / "history.csv")
    png = plot_training_curves(histories, tmp_path / "plots" / "training_curves.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    pixels = (imread(png)[..., :3] * 255).round().reshape(-1, 3)
    for colour in ((31, 119, 180), (255, 127, 14)):  # the first two line colours: one per variant
        assert (np.abs(pixels - colour).max(axis=1) <= 2).sum() > 200, colour
    bad = tmp_path / "bad" / "history.csv"
    bad.parent.mkdir()
    bad.write_text("step,loss\n1,2.0\n")
    with pytest.raises(ValueError, match=r"bad/history.csv.*epoch"):
        plot_training_curves([bad], tmp_path / "plots" / "bad.png")
    assert not (tmp_path / "plots" / "bad.png").exists()


def test_coverage_counts_paired_published_only_and_unplaced(tmp_path, metrics_files):
    written = build_tables(metrics_files, settings(), tmp_path)
    report = json.loads(written[-1].read_text())
    knn = report["tables"]["knn_table"]
    seed_knn = [r for r in load_seed_tables() if r["table"] == "dinov2rs_knn"]
    # vits: ucm (measured) and euro (not run) beside ours; the two other models: published only;
    # their 7 other datasets and vits's 7 others have no column here
    assert (knn["published"], knn["paired"], knn["paired_measured"], knn["published_only"]) == (
        len(seed_knn), 2, 1, 4)
    assert knn["unplaced"] == len(seed_knn) - 6 == len(knn["unplaced_numbers"])
    assert "dinov2rs_knn/dinov2/vit_small_patch16/Million-AID+SkyScript/knn_faiss_majority_k20_90_10/" \
           "RESISC45/top1" in knn["unplaced_numbers"]
    assert report["seeds"]["rows"] == len(load_seed_tables()) and report["seeds"]["placed"] == 6
    assert report["seeds"]["unclaimed"]["dinov2rs_linear"] == 27
    lines = coverage_lines(report)
    assert lines[0].startswith(f"knn_table: {len(seed_knn)} published numbers: 2 beside ours (1 measured), "
                               "4 in published-only rows")
    assert lines[-1].startswith(f"seed tables: 6/{len(load_seed_tables())} published numbers shown")


def test_every_published_number_has_a_cell_at_the_full_scale():
    """Laid out without any metrics file: every row of seed_tables.csv is beside ours or published-only."""
    params = load_params(ROOT / "params.yaml", "full")
    tables = layout(params)
    report = coverage(params, tables)
    assert {name: t["unplaced_numbers"] for name, t in report["tables"].items()} == {
        name: [] for name in params.selected.tables}
    assert report["seeds"]["unclaimed"] == {}
    assert report["seeds"]["placed"] == report["seeds"]["rows"] == len(load_seed_tables()) == 180
    comparison = [r for r in load_seed_tables() if r["note"] == "comparison row"]
    shown = {c.published.key for rows in tables.values() for row in rows if row.published_only
             for c in row.cells if c.published}
    assert shown == {row_key(r) for r in comparison} and len(comparison) == 24
    labels = [row.label for row in tables["table3_satdino"] if row.published_only]
    assert sorted(labels) == ["satmae vit_large_patch16 (published only)",
                              "scale_mae vit_large_patch16 (published only)"]


def test_every_csv_line_is_one_cell_with_its_provenance(tmp_path, metrics_files):
    record = json.loads(metrics_files[0].read_text())
    record["git_commit"] = "c0ffee"
    record["data_version"] = {"evaluation": {"dataset": "ucm", "version": "md5:aa.dir"},
                              "pretraining": {"dataset": "pre", "version": "sha256:bb"}}
    metrics_files[0].write_text(json.dumps(record))  # metrics_files[1]: written before provenance
    build_tables(metrics_files, settings(), tmp_path)
    rows = [r for r in read_csv(tmp_path / "knn_table.csv") if r["published_only"] == "false"]
    assert [(r["evaluation"], r["variant"]) for r in rows] == [("knn_ucm", "vits"), ("knn_euro", "vits"),
                                                              ("knn_ucm", "tiny")]  # n/a: no line
    by_key = {(r["evaluation"], r["variant"]): r for r in rows}
    assert {k: by_key["knn_ucm", "vits"][k] for k in ("mlflow_run_id", "git_commit", "data_version",
                                                      "pretrain_data_version")} == {
        "mlflow_run_id": "run-vits-ucm", "git_commit": "c0ffee", "data_version": "md5:aa.dir",
        "pretrain_data_version": "sha256:bb"}
    for key in (("knn_ucm", "tiny"), ("knn_euro", "vits")):  # older file; not run
        assert by_key[key]["git_commit"] == by_key[key]["data_version"] == ""
    record["data_version"] = {"evaluation": "md5:aa.dir"}
    metrics_files[0].write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"'knn_ucm', variant 'vits': 'data_version.evaluation' must be"):
        build_tables(metrics_files, settings(), tmp_path)


def test_released_weights_row_sits_beside_ours_and_the_published_number(tmp_path, metrics_files):
    raw_variants = {
        "vits": {"method": "dinov2", "backbone": "vit_small_patch16", "pretrain_data": "pre",
                 "published": {"model": "dinov2", "arch": "vit_small_patch16",
                               "pretrain_data": "Million-AID+SkyScript"}},
        "tiny": {"method": "dino", "backbone": "vit_tiny_patch8", "pretrain_data": "pre"},
    }
    raw_variants["vits_released"] = {**raw_variants["vits"], "weights": {"format": "dinov2", "path": "w.pth"}}
    params = settings(variants=raw_variants, evaluations={
        "knn_ucm": {"protocol": "knn", "dataset": "ucm", "variants": ["vits", "tiny", "vits_released"]},
        "knn_euro": {"protocol": "knn", "dataset": "euro", "variants": ["vits"]}})
    released = write_metrics(tmp_path / "metrics", "knn_ucm", "vits_released", {"top1_k20": 86.5})
    files = [*metrics_files, released]
    build_tables(files, params, tmp_path / "tables")
    lines = (tmp_path / "tables" / "knn_table.md").read_text().splitlines()
    assert "| vits | ucm | 81.23 | 87.14 | 40.50 | +40.73 |" in lines
    assert "| vits_released (released weights) | ucm | 86.50 | 87.14 | — | — |" in lines
