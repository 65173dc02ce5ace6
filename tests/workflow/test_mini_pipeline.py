"""End to end: the full scale in miniature (``--config scale=mini``) from a fresh copy, offline.

Every variant, evaluation and table of the full scale runs on fake copies of the datasets in their
real layouts with tiny models, so that every change to params.yaml or to a step is tested the way a
cluster run would meet it. The closing numbers (jobs, and per table the published cells with our
value, in published-only rows and with neither) are printed (``pytest -s``) and checked.
"""

import csv
import json
import time

import pytest

from rsdino.config import load_params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mini(project, run_in, job_counts) -> dict:
    plan = run_in(project, "snakemake", "--profile", "local", "-n", "all", "--config", "scale=mini")
    start = time.monotonic()
    out = run_in(project, "snakemake", "--profile", "local", "all", "--config", "scale=mini", timeout=3000)
    elapsed = time.monotonic() - start
    params = load_params(project["root"] / "params.yaml", "mini")
    counts = job_counts(plan)
    print(f"\nmini scale: {sum(counts.values())} jobs ({counts}) in {elapsed / 60:.1f} min, 0 failed")
    return {**project, "out": out, "params": params, "counts": counts}


def test_every_job_of_the_full_scale_ran(mini):
    full = load_params(mini["root"] / "params.yaml", "full")
    counts = mini["counts"]
    assert counts["pretrain"] == len(full.selected_variants())
    cells = {(e, v) for t in full.selected.tables for e in full.tables[t].evaluations
             for v in full.evaluations[e].variants}
    assert counts["evaluate"] == len(cells)
    results = mini["root"] / mini["params"].paths.results
    for evaluation, variant in cells:
        record = json.loads((results / "metrics" / evaluation / f"{variant}.json").read_text())
        assert record["metrics"] and record["variant"] == variant, (evaluation, variant)


def test_every_published_cell_has_our_value_or_a_published_only_row(mini):
    results = mini["root"] / mini["params"].paths.results
    report = json.loads((results / "tables" / "coverage.json").read_text())
    for name, table in report["tables"].items():
        print(f"{name}: {table['paired']} published cells with our value "
              f"({table['paired_measured']} measured), {table['published_only']} published-only, "
              f"{table['unplaced']} with neither")
        assert table["unplaced"] == 0, (name, table["unplaced_numbers"])
        assert table["paired_measured"] == table["paired"], name
    assert report["seeds"]["placed"] == report["seeds"]["rows"] == 180, report["seeds"]["unplaced_numbers"]


def test_the_full_scale_tables_have_the_seeds_shape(mini):
    params, results = mini["params"], mini["root"] / mini["params"].paths.results
    for name in params.selected.tables:
        rows = list(csv.DictReader((results / "tables" / f"{name}.csv").open()))
        ours = [row for row in rows if row.get("published_only") != "true"]
        variants = {v for e in params.tables[name].evaluations for v in params.evaluations[e].variants}
        assert {row["variant"] for row in ours} == variants, name
        assert all(row["ours"] not in ("", None) for row in ours), name  # no cell left unmeasured
        assert (results / "plots" / f"{name}.png").is_file()


def test_a_second_run_does_nothing(mini, run_in):
    again = run_in(mini, "snakemake", "--profile", "local", "all", "--config", "scale=mini")
    assert "Nothing to be done" in again, again[-3000:]
