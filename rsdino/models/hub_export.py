"""``rsdino export``: a model folder as a folder ready for a Hugging Face Hub upload (nothing is uploaded).

The folder holds ``model.safetensors`` (timm state-dict keys), timm's ``config.json``
(``rsdino.models.timm_config``; ConvViT also ``convvit_stem.py``) and ``README.md``, a model card
whose YAML front matter has ``library_name: timm``, tags, the bands, the pretraining data, the method
and, when metrics files of the variant are given, a ``model-index`` of their results. No network
call is made here: the upload is the user's (``huggingface_hub.upload_folder``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from rsdino.io import atomic_directory
from rsdino.models.folders import META_FILE, WEIGHTS_FILE
from rsdino.models.timm_config import CONVVIT_LOADER_FILE, timm_config, write_timm_config

CARD_FILE = "README.md"


def read_model_meta(model_dir: Path) -> dict[str, Any]:
    """``model_dir/model.json``, with one clear error when it or the weights are missing or broken."""
    model_dir = Path(model_dir)
    for path in (model_dir / META_FILE, model_dir / WEIGHTS_FILE):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found (run `rsdino pretrain` to create the model folder)")
    try:
        meta = json.loads((model_dir / META_FILE).read_text(encoding="utf-8"))
        timm_config(meta)  # checks the keys the config needs
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{model_dir / META_FILE}: not a valid model description ({error!r})") from None
    return meta


def variant_metrics(results_dir: Path, variant: str) -> list[dict[str, Any]]:
    """The metrics files ``results_dir/<evaluation>/<variant>.json`` of ``variant`` (none if absent)."""
    records = []
    for path in sorted(Path(results_dir).glob(f"*/{variant}.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not a metrics file ({error})") from None
        if record.get("variant") == variant and isinstance(record.get("metrics"), dict):
            records.append(record)
    return records


def _model_index(name: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Hugging Face ``model-index``: one result per metrics file, its numeric metrics as values."""
    results = []
    for record in records:
        metrics = [{"type": key, "value": float(value), "name": f"{record.get('evaluation')} {key}"}
                   for key, value in sorted(record["metrics"].items())
                   if isinstance(value, (int, float)) and not isinstance(value, bool)]
        if metrics:
            results.append({"task": {"type": "image-feature-extraction",
                                     "name": f"{record.get('protocol', '?')} ({record.get('evaluation')})"},
                            "dataset": {"name": str(record.get("dataset")),
                                        "type": str(record.get("dataset"))},
                            "metrics": metrics})
    return [{"name": name, "results": results}] if results else []


def model_card(meta: dict[str, Any], config: dict[str, Any], records: list[dict[str, Any]]) -> str:
    """The ``README.md`` of an exported model: YAML front matter, then what it is and how to load it."""
    name = str(meta.get("variant", meta["backbone"]))
    method = str(meta.get("method", "unknown"))
    data = (meta.get("data_version") or {}).get("dataset")
    bands = [str(band) for band in meta.get("bands", [])]
    front: dict[str, Any] = {
        "library_name": "timm", "pipeline_tag": "image-feature-extraction",
        "tags": ["timm", "image-feature-extraction", "remote-sensing", "self-supervised", "rsdino", method,
                 meta["backbone"]],
        "bands": bands, "pretraining_data": data, "method": method,
        "backbone": meta["backbone"], "architecture": config["architecture"],
    }
    index = _model_index(name, records)
    if index:
        front["model-index"] = index
    if "loader" in config:
        load = ("import sys; sys.path.insert(0, 'path/to/this/folder')\n"
                "from convvit_stem import create_model\n"
                f"model = create_model('path/to/this/folder')  # {CONVVIT_LOADER_FILE}: timm + this stem")
    else:
        load = ("import timm\nmodel = timm.create_model('hf-hub:<user>/<repo>', pretrained=True)\n"
                "# or, from a local copy:\n"
                "# timm.create_model('local-dir:path/to/this/folder', pretrained=True)")
    cfg = config["pretrained_cfg"]
    lines = ["---", yaml.safe_dump(front, sort_keys=False).rstrip(), "---", "",
             f"# {name}", "",
             f"A {meta['backbone']} backbone (timm `{config['architecture']}`, no classifier) "
             f"pretrained with "
             f"{method} by rsdino on {data or 'unrecorded data'} "
             f"({meta.get('branch', 'teacher')} weights).", "",
             "## Input", "",
             f"{len(bands)} bands: {', '.join(bands) or 'not recorded'}; nominal size "
             f"{cfg['input_size'][1]} px" + (" (other sizes work: dynamic image size)."
                                              if config["model_args"].get("dynamic_img_size") else "."),
             "Standardise each band in the data's native units: `(x - mean[c]) / std[c]` with", "",
             f"- mean: {cfg.get('mean', 'not recorded')}", f"- std: {cfg.get('std', 'not recorded')}", "",
             "## Load", "", "```python", load, "```", ""]
    if index:
        lines += ["## Results", "", "| evaluation | dataset | metric | value |", "| --- | --- | --- | --- |"]
        for result in index[0]["results"]:
            for metric in result["metrics"]:
                lines.append(f"| {result['task']['name']} | {result['dataset']['name']} | {metric['type']} "
                             f"| {metric['value']:g} |")
        lines.append("")
    return "\n".join(lines)


def export_for_hub(model_dir: Path, out_dir: Path, records: list[dict[str, Any]] | None = None) -> Path:
    """Write the upload-ready folder of ``model_dir`` to ``out_dir`` (replaced as a whole); return it.

    Args:
        model_dir: A model folder (``model.safetensors`` + ``model.json``), e.g. ``models/<variant>``
            or its ``student/``.
        out_dir: The folder to write: ``config.json``, ``model.safetensors``, ``README.md``.
        records: Metrics files of the variant (``variant_metrics``) for the card's results.
    """
    meta = read_model_meta(model_dir)
    config = timm_config(meta)
    with atomic_directory(out_dir) as tmp:
        shutil.copyfile(Path(model_dir) / WEIGHTS_FILE, tmp / WEIGHTS_FILE)
        write_timm_config(tmp, meta)
        (tmp / CARD_FILE).write_text(model_card(meta, config, records or []), encoding="utf-8")
    return Path(out_dir)
