# Shared helpers: settings, paths and the per-job settings digests that make Snakemake re-run
# exactly the jobs whose settings changed. No rules here.

import os
import re
import shutil
from pathlib import Path

from rsdino.config import ParamsError, load_params, settings_digest
from rsdino.models.folders import WEIGHTS_FILE, backbone_folder
from rsdino.data.version import has_files
from rsdino.tracking import configure_offline_environment

configure_offline_environment()

PARAMS_FILE = config.get("params", "params.yaml")
try:
    P = load_params(PARAMS_FILE, config.get("scale"))
except ParamsError as error:
    raise WorkflowError(str(error))
SCALE = P.scale
DATA = P.paths.data
MODELS = P.paths.models
RESULTS = P.paths.results
RSDINO = f"rsdino {{step}} --params {PARAMS_FILE} --scale {SCALE} --no-progress"


def rsdino(step):
    """The command prefix of one step."""
    return RSDINO.format(step=step)


def generated_archives():
    """Demo archives written by `rsdino make-demo` for the selected datasets: file name -> dataset name."""
    archives = {}
    for name in P.selected_datasets():
        dataset = P.datasets[name]
        if dataset.source.generator:
            path = Path(dataset.source.url[len("file://"):])
            if path.parent != Path(DATA) / "demo":
                raise WorkflowError(
                    f"{PARAMS_FILE}: datasets.{name}.source.url: a generated archive must live in "
                    f"{DATA}/demo/, not {path.parent}/"
                )
            archives[path.name] = name
    return archives


DEMO_ARCHIVES = generated_archives()


def one_of(names):
    """A wildcard constraint that matches exactly one of ``names``."""
    return "|".join(re.escape(name) for name in names) or "(?!)"


wildcard_constraints:
    dataset=one_of(P.datasets),
    variant=one_of(P.variants),
    evaluation=one_of(P.evaluations),


def demo_digest(wildcards):
    return settings_digest(P.resolved_for(dataset=DEMO_ARCHIVES[wildcards.filename]))


def local_source(wildcards):
    """The local archive a dataset is copied from (a generated demo archive), if any."""
    source = P.datasets[wildcards.dataset].source
    if source.url and source.url.startswith("file://"):
        return [source.url[len("file://"):]]
    return []


def dataset_digest(wildcards):
    return settings_digest(P.resolved_for(dataset=wildcards.dataset))


def variant_digest(wildcards):
    return settings_digest(P.resolved_for(variant=wildcards.variant))


def evaluation_digest(wildcards):
    settings = P.resolved_for(variant=wildcards.variant, evaluation=wildcards.evaluation)
    settings["evaluation"][wildcards.evaluation].pop("variants")
    return settings_digest(settings)


def pretrain_data(wildcards, folder):
    return f"{DATA}/{folder}/{P.variants[wildcards.variant].pretrain_data}"


def evaluation_model(wildcards):
    """The backbone weights an evaluation reads: the teacher's, or the student's (`backbone: student`)."""
    branch = getattr(P.evaluations[wildcards.evaluation], "backbone", "teacher")
    return str(backbone_folder(f"{MODELS}/{wildcards.variant}", branch) / WEIGHTS_FILE)


def evaluation_data(wildcards, folder):
    return f"{DATA}/{folder}/{P.evaluations[wildcards.evaluation].dataset}"


def table_jobs():
    """(evaluation, variant) of every cell of the selected tables."""
    return sorted({(evaluation, variant) for table in P.selected.tables
                   for evaluation in P.tables[table].evaluations
                   for variant in P.evaluations[evaluation].variants})


def metrics_files():
    return [f"{RESULTS}/metrics/{evaluation}/{variant}.json" for evaluation, variant in table_jobs()]


def history_files():
    """The pretraining histories of the tables' variants (the report's training curves)."""
    return [f"{MODELS}/{v}/history.csv" for v in sorted({variant for _, variant in table_jobs()})]


MODEL_FILES = [f"{MODELS}/{v}/model.safetensors" for v in P.selected_variants()]
TABLE_FILES = [f"{RESULTS}/tables/{t}.{ext}" for t in P.selected.tables for ext in ("md", "csv")]
SUMMARY = f"{RESULTS}/metrics/summary.json"
COVERAGE = f"{RESULTS}/tables/coverage.json"
PLOTS = [f"{RESULTS}/plots/{t}.png" for t in P.selected.tables] + [f"{RESULTS}/plots/training_curves.png"]
IN_DVC_REPO = Path(".dvc").is_dir() and shutil.which("dvc") is not None


def trackable(dataset):
    """Whether `track` can add data/raw/<dataset> to DVC: a downloaded dataset always, a manual one
    (source.manual) once it has been placed there (a missing one stops at its download job)."""
    return bool(P.datasets[dataset].source.url) or has_files(Path(DATA) / "raw" / dataset)


TRACKED_DATA = (
    [f"{DATA}/raw/{d}.dvc" for d in P.selected_datasets() if trackable(d)]
    if P.dvc.track_raw and IN_DVC_REPO
    else []
)
# dvc.yaml's `tables` stage records results/ (the default paths); a scale with paths of its own (mini)
# is not what `dvc repro` regenerates.
DVC_RECORD = [f"{RESULTS}/.dvc-recorded"] if IN_DVC_REPO and RESULTS == "results" else []


#: Protocols that train a network (fine-tuning, dense heads): a day of GPU time at full scale.
TRAINING_PROTOCOLS = {"finetune", "multilabel", "change_detection", "segmentation"}


ON_CPU = P.selected.device == "cpu"


def evaluation_gpus(wildcards):
    """One GPU per evaluation job on a GPU scale (full), none on a CPU scale (demo, mini)."""
    return 0 if ON_CPU else 1


def evaluation_runtime(wildcards):
    """Wall-clock minutes of one evaluation job."""
    if ON_CPU:
        return 30
    return 1440 if P.evaluations[wildcards.evaluation].protocol in TRAINING_PROTOCOLS else 240

