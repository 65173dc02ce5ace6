# Shared helpers: settings, paths and the per-job settings digests that make Snakemake re-run
# exactly the jobs whose settings changed. No rules here.

import os
import re
import shutil
from pathlib import Path

from rsdino.config import PROTOCOLS, ParamsError, load_params, settings_digest
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
RSDINO = f"rsdino {{step}} --params {PARAMS_FILE} --scale {SCALE}"


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
    """The local archive a dataset is copied from (a generated demo archive), or its local folder, if any."""
    source = P.datasets[wildcards.dataset].source
    if source.local:
        return [source.local]
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


#: Variants that import released weights (`weights:` in params.yaml) instead of pretraining.
IMPORTED_VARIANTS = [name for name, variant in P.variants.items() if variant.weights is not None]
TRAINED_VARIANTS = [name for name in P.variants if name not in IMPORTED_VARIANTS]
#: Imported variants whose checkpoint `rsdino make-demo --variant` generates (a path under DATA/demo/).
DEMO_WEIGHTS = {
    Path(P.variants[name].weights.path).name: name
    for name in IMPORTED_VARIANTS
    if P.variants[name].weights.path and Path(P.variants[name].weights.path).parent == Path(DATA) / "demo"
}


def released_weights_inputs(wildcards):
    """What importing a variant's released weights reads: a generated demo checkpoint, and the
    pretraining data when the weights declare no mean / std (its statistics normalise the inputs)."""
    spec = P.variants[wildcards.variant].weights
    inputs = {}
    if spec.path and Path(spec.path).name in DEMO_WEIGHTS:
        inputs["checkpoint"] = spec.path
    if spec.mean is None:
        inputs["raw"] = pretrain_data(wildcards, "raw")
        inputs["data"] = pretrain_data(wildcards, "prepared")
    return inputs


def probe_data(wildcards, folder):
    """The variant's kNN-probe dataset folder (`variants.<v>.probe.dataset`), or none without a probe."""
    probe = P.variants[wildcards.variant].probe
    return [f"{DATA}/{folder}/{probe.dataset}"] if probe is not None else []


def probe_flags(wildcards, input):
    """`--probe-raw/--probe-data` for a variant with a kNN probe, else nothing."""
    if not input.probe_raw:
        return ""
    return f"--probe-raw {input.probe_raw} --probe-data {input.probe_data}"


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
    return [f"{MODELS}/{v}/history.csv" for v in sorted({variant for _, variant in table_jobs()})
            if v not in IMPORTED_VARIANTS]


MODEL_FILES = [f"{MODELS}/{v}/model.safetensors" for v in P.selected_variants()]
TABLE_FILES = [f"{RESULTS}/tables/{t}.{ext}" for t in P.selected.tables for ext in ("md", "csv")]
SUMMARY = f"{RESULTS}/metrics/summary.json"
COVERAGE = f"{RESULTS}/tables/coverage.json"
PLOTS = ([f"{RESULTS}/plots/{t}.png" for t in P.selected.tables] + [f"{RESULTS}/plots/training_curves.png"]
         + [f"{RESULTS}/plots/curves_{Path(h).parent.name}.png" for h in history_files()])
IN_DVC_REPO = Path(".dvc").is_dir() and shutil.which("dvc") is not None


def trackable(dataset):
    """Whether `track` can add data/raw/<dataset> to DVC: a downloaded dataset always, a manual one
    (source.manual) once it has been placed there (a missing one stops at its download job)."""
    source = P.datasets[dataset].source
    return bool(source.url or source.local) or has_files(Path(DATA) / "raw" / dataset)


TRACKED_DATA = (
    [f"{DATA}/raw/{d}.dvc" for d in P.selected_datasets() if trackable(d)]
    if P.dvc.track_raw and IN_DVC_REPO
    else []
)
# dvc.yaml's `tables` stage records results/ (the default paths); a scale with paths of its own (mini)
# is not what `dvc repro` regenerates.
DVC_RECORD = [f"{RESULTS}/.dvc-recorded"] if IN_DVC_REPO and RESULTS == "results" else []


#: What each evaluation job asks for: the scale's `evaluation_resources` in params.yaml, never its name.
EVALUATION_RESOURCES = P.selected.evaluation_resources


def evaluation_runtime(wildcards):
    """Wall-clock minutes of one evaluation job: `training_runtime_min` for a protocol that trains a
    network (its record's `trains`, rsdino.config.protocols)."""
    training = PROTOCOLS[P.evaluations[wildcards.evaluation].protocol].trains
    if training and EVALUATION_RESOURCES.training_runtime_min:
        return EVALUATION_RESOURCES.training_runtime_min
    return EVALUATION_RESOURCES.runtime_min

