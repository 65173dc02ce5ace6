"""Acceptance: every bad input a user can give ends in one line, exit status 2, and no lost data.

One small demo project is built once for the module (a 50-image fake EuroSAT-MS, made, downloaded
and prepared through the CLI, plus a random-init exported backbone). Each case below then breaks one
thing (settings, data files, archives, downloads from a loopback server, checkpoints, the disk, the
tracking store) in a folder of its own (``bad/<case>``) and runs ``rsdino.cli.main`` in-process. Every
case must exit 2 with exactly one line on the terminal (file descriptors 1 and 2 captured, so C
libraries count too) that names the file and the problem, no traceback, and leave every file under
``data/``, ``models/`` and ``results/`` as it was. A few cases run again as real subprocesses.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import zipfile
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from rsdino.cli import main
from rsdino.data.version import data_version

ROOT = Path(__file__).resolve().parents[1]
DATASET = "demo_eurosat"
VARIANT = "demo_dino_vit"
N_PER_CLASS = 5
RAW = Path("data/raw") / DATASET
PREPARED = Path("data/prepared") / DATASET
MODEL = Path("models") / VARIANT
ARCHIVE = Path("data/demo/EuroSATallBands.demo.tar")
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


# --------------------------------------------------------------------------------- the demo project


class Server:
    """A loopback HTTP server: ``files`` by name, or ``status`` for every request, or a cut body."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.status: dict[str, int] = {}
        self.cut: dict[str, int] = {}
        state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                name = self.path.lstrip("/")
                if name in state.status:
                    self.send_error(state.status[name])
                    return
                data = state.files.get(name)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if name in state.cut:
                    self.close_connection = True
                    data = data[:state.cut[name]]
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def url(self, name: str) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/{name}"


@dataclass
class Project:
    root: Path
    params: dict
    server: Server

    def write_params(self, name: str, settings: dict) -> Path:
        path = self.root / "bad" / f"{name}.params.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.dump(settings, Dumper=DUMPER, sort_keys=False), encoding="utf-8")
        return path

    def settings(self) -> dict:
        return copy.deepcopy(self.params)


def _quiet_main(argv: list[str]) -> None:
    code = main(argv)
    assert code == 0, argv


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The demo project: made, downloaded and prepared through the CLI; a random-init model."""
    root = tmp_path_factory.mktemp("bad_inputs")
    settings = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    source = settings["datasets"][DATASET]["source"]
    source["generator_kwargs"]["n_per_class"] = N_PER_CLASS
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("RSDINO_WARM_SOCKET", raising=False)
        (root / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
        _quiet_main(["make-demo", "--dataset", DATASET, "--out", str(ARCHIVE)])
        source["sha256"] = hashlib.sha256(ARCHIVE.read_bytes()).hexdigest()
        (root / "params.yaml").write_text(yaml.safe_dump(settings, sort_keys=False), encoding="utf-8")
        _quiet_main(["download", "--dataset", DATASET, "--out", str(RAW), "--no-progress"])
        _quiet_main(["prepare", "--dataset", DATASET, "--raw", str(RAW), "--out", str(PREPARED),
                     "--no-progress"])
        _export_random_model(settings, root / MODEL)
        data_version(RAW)  # its cache file beside the raw data, written once by the first step needing it
        (root / "results").mkdir()
        (root / "results" / "keep.json").write_text("{}\n")
        yield Project(root=root, params=settings, server=Server())


def _export_random_model(settings: dict, out: Path) -> None:
    from rsdino.models.backbones import backbone_spec, build_backbone, export_backbone

    variant = settings["variants"][VARIANT]
    bands = settings["datasets"][DATASET]["bands"]
    size = variant["crops"]["global_size"]
    spec = backbone_spec(variant["backbone"], len(bands), size, **variant["backbone_kwargs"])
    model = build_backbone(variant["backbone"], len(bands), size, **variant["backbone_kwargs"])
    export_backbone(model, out, {**spec, "bands": bands, "variant": VARIANT, "method": "dino",
                                 "mean": [0.0] * len(bands), "std": [1.0] * len(bands)})


def _digests(root: Path) -> dict[str, str]:
    """sha256 of every file under data/, models/ and results/ of the project."""
    found = {}
    for top in ("data", "models", "results"):
        for path in sorted((root / top).rglob("*")):
            if path.is_file():
                found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


# ------------------------------------------------------------------------------------------ cases
# A case: (id, build(project, folder) -> (argv, words the line must hold)). ``folder`` is the case's
# own ``bad/<id>`` folder. Commands are given as lists; "{p}" is replaced by the case's params file.


def _params_case(edit, *words, command="prepare"):
    """A settings file changed by ``edit(settings)``, used by ``command`` on good data."""
    def build(project: Project, folder: Path):
        settings = project.settings()
        edit(settings)
        path = project.write_params(folder.name, settings)
        return _command(command, path, folder), [str(path), *words]
    return build


def _command(command: str, params: Path, folder: Path, **paths: Path | str) -> list[str]:
    """The argv of ``command`` reading the good data and writing into ``folder``."""
    raw, prepared, model = paths.get("raw", RAW), paths.get("data", PREPARED), paths.get("model", MODEL)
    common = ["--params", str(params), "--no-progress"]
    if command == "prepare":
        return ["prepare", *common, "--dataset", DATASET, "--raw", str(raw),
                "--out", str(folder / "prepared")]
    if command == "download":
        return ["download", *common, "--dataset", DATASET,
                "--downloads", str(paths.get("downloads", folder / "dl")),
                "--out", str(paths.get("out", folder / "raw"))]
    if command == "pretrain":
        return ["pretrain", *common, "--variant", VARIANT, "--raw", str(raw), "--data", str(prepared),
                "--out", str(paths.get("out", folder / "model")), "--threads", "1"]
    if command == "evaluate":
        return ["evaluate", *common, "--evaluation", "demo_knn", "--variant", VARIANT, "--model", str(model),
                "--raw", str(raw), "--data", str(prepared), "--out", str(folder / "metrics.json"),
                "--threads", "1"]
    if command == "make-demo":
        return ["make-demo", *common[:2], "--dataset", DATASET, "--out", str(paths["out"])]
    raise AssertionError(command)


def _set(path: str, value):
    """An edit that sets the dotted key ``path`` (``None`` value: delete it)."""
    def edit(settings: dict) -> None:
        *parents, last = path.split(".")
        node = settings
        for key in parents:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return edit


def _edits(*edits):
    def edit(settings: dict) -> None:
        for one in edits:
            one(settings)
    return edit


V = f"variants.{VARIANT}"
D = f"datasets.{DATASET}"
PARAMS_CASES = {
    "unknown_top_key": _params_case(_set("extra_section", 1), "extra_section", "unknown key"),
    "misspelt_mlflow_key": _params_case(_set("mlflow.experimnt", "x"), "mlflow.experimnt"),
    "epochs_not_a_number": _params_case(_set(f"{V}.optim.epochs", "many"), "optim.epochs"),
    "negative_lr": _params_case(_set(f"{V}.optim.lr", -1.0), "optim.lr"),
    "zero_batch": _params_case(_set(f"{V}.optim.batch_size", 0), "optim.batch_size"),
    "crop_not_divisible": _params_case(_set(f"{V}.crops.global_size", 30), VARIANT, "30"),
    "local_crop_not_divisible": _params_case(_set(f"{V}.crops.local_size", 13), VARIANT, "13"),
    "input_band_missing": _params_case(_set(f"{V}.input_bands", ["B04", "B99"]), "B99"),
    "unknown_backbone": _params_case(_set(f"{V}.backbone", "vit_gigantic_patch3"), "vit_gigantic_patch3"),
    "unknown_method": _params_case(_set(f"{V}.method", "byol"), "byol"),
    "evaluation_unknown_variant": _params_case(_set("evaluations.demo_knn.variants", ["nobody"]), "nobody"),
    "evaluation_unknown_dataset": _params_case(_set("evaluations.demo_knn.dataset", "atlantis"), "atlantis"),
    "knn_ks_not_numbers": _params_case(_set("evaluations.demo_knn.ks", "ten"), "ks"),
    "table_unknown_evaluation": _params_case(_set("tables.demo_knn.evaluations", ["ghost"]), "ghost"),
    "unknown_scale": _params_case(_set("scale", "huge"), "huge"),
    "test_fraction_above_one": _params_case(_set(f"{D}.split.test_fraction", 1.5), "test_fraction"),
    "extraction_ratio_below_one": _params_case(_set("extraction.max_ratio", 0.5), "extraction.max_ratio"),
    "extraction_members_negative": _params_case(_set("extraction.max_members", -1), "extraction.max_members"),
    "extraction_unknown_key": _params_case(_set("extraction.max_bombs", 1), "extraction.max_bombs"),
    "batch_larger_than_split": _params_case(_set(f"{V}.optim.batch_size", 4096), VARIANT, "4096"),
    "dataset_without_bands": _params_case(_set(f"{D}.bands", None), "bands"),
    "dataset_bands_do_not_match_files": _params_case(
        _edits(_set(f"{D}.bands", ["B01", "B02", "B03"]), _set(f"{D}.rgb_bands", ["B03", "B02", "B01"]),
               _set(f"{V}.input_bands", ["B01", "B02", "B03"])), "3"),
    "scales_missing": _params_case(_set("scales", None), "scales"),
    "mlflow_not_a_mapping": _params_case(_set("mlflow", "sqlite"), "mlflow"),
}


def _raw_text_params(text: str, *words):
    def build(project: Project, folder: Path):
        path = project.root / "bad" / f"{folder.name}.params.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return _command("prepare", path, folder), [str(path), *words]
    return build


def _missing_params(project: Project, folder: Path):
    path = project.root / "bad" / "nowhere.params.yaml"
    return _command("prepare", path, folder), [str(path), "not found"]


PARAMS_FILE_CASES = {
    "params_not_yaml": _raw_text_params("scale: [demo\n  : :", "YAML"),
    "params_a_list": _raw_text_params("- demo\n- full\n"),
    "params_empty": _raw_text_params(""),
    "params_missing": _missing_params,
}


# ----------------------------------------------------------------------------------- data files


def _copy_raw(project: Project, folder: Path) -> Path:
    raw = folder / "raw"
    shutil.copytree(project.root / RAW, raw)
    return raw


def _images(raw: Path) -> list[Path]:
    return sorted(raw.rglob("*.tif"))


def _raw_case(damage, *words, command="prepare"):
    """Good settings, a copy of the raw data damaged by ``damage(raw) -> the file it damaged``."""
    def build(project: Project, folder: Path):
        raw = _copy_raw(project, folder)
        damaged = damage(raw)
        return _command(command, project.root / "params.yaml", folder, raw=raw), [str(damaged.name), *words]
    return build


def _garbage_image(raw: Path) -> Path:
    image = _images(raw)[3]
    image.write_bytes(b"this is not a GeoTIFF" * 10)
    return image


def _truncated_image(raw: Path) -> Path:
    image = _images(raw)[5]
    image.write_bytes(image.read_bytes()[:300])
    return image


def _empty_image(raw: Path) -> Path:
    image = _images(raw)[7]
    image.write_bytes(b"")
    return image


def _three_band_image(raw: Path) -> Path:
    import numpy as np
    import rasterio

    image = _images(raw)[2]
    with rasterio.open(image, "w", driver="GTiff", width=32, height=32, count=3, dtype="uint16") as dst:
        dst.write(np.ones((3, 32, 32), dtype="uint16"))
    return image


def _png_named_tif(raw: Path) -> Path:
    from PIL import Image

    image = _images(raw)[9]
    Image.new("RGB", (32, 32)).save(image, format="PNG")
    return image


def _missing_raw(project: Project, folder: Path):
    raw = folder / "nothing_here"
    return _command("prepare", project.root / "params.yaml", folder, raw=raw), [str(raw), "not found"]


def _prepared_case(damage, *words, command="pretrain"):
    """Good settings and raw data, a copy of the prepared folder damaged by ``damage``."""
    def build(project: Project, folder: Path):
        prepared = folder / "prepared"
        shutil.copytree(project.root / PREPARED, prepared)
        damaged = damage(prepared)
        return (_command(command, project.root / "params.yaml", folder, data=prepared),
                [str(damaged.name), *words])
    return build


def _split_without_comma(prepared: Path) -> Path:
    split = prepared / "train.txt"
    lines = split.read_text().splitlines()
    split.write_text("\n".join([lines[0].replace(",", " "), *lines[1:]]) + "\n")
    return split


def _split_missing(prepared: Path) -> Path:
    (prepared / "train.txt").unlink()
    return Path("unknown split 'train'")


def _split_names_missing_image(prepared: Path) -> Path:
    split = prepared / "train.txt"
    lines = split.read_text().splitlines()
    label = lines[0].split(",")[1]
    split.write_text("\n".join(f"missing/image_{i}.tif,{label}" for i in range(len(lines))) + "\n")
    return Path("missing/image_")


def _stats_garbage(prepared: Path) -> Path:
    stats = next(p for p in prepared.iterdir() if p.name.startswith("stats") or p.name == "band_stats.json")
    stats.write_text("{not json")
    return stats


def _test_split_for_knn(prepared: Path) -> Path:
    split = prepared / "test.txt"
    split.write_text("only one field\n")
    return split


DATA_CASES = {
    "image_garbage": _raw_case(_garbage_image),
    "image_truncated": _raw_case(_truncated_image),
    "image_empty": _raw_case(_empty_image),
    "image_three_bands": _raw_case(_three_band_image, "3"),
    "image_png_named_tif": _raw_case(_png_named_tif),
    "raw_folder_missing": _missing_raw,
    "split_line_without_comma": _prepared_case(_split_without_comma, "relative_path,label"),
    "split_file_missing": _prepared_case(_split_missing),
    "split_names_missing_images": _prepared_case(_split_names_missing_image),
    "band_stats_garbage": _prepared_case(_stats_garbage),
    "test_split_malformed_for_evaluation": _prepared_case(_test_split_for_knn, "relative_path,label",
                                                          command="evaluate"),
}


# ------------------------------------------------------------------------------------ archives


def _archive_case(make, *words, settings_edit=None):
    """A download of the archive ``make(path)`` (its checksum right) into the case's folder."""
    def build(project: Project, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        archive = make(folder)
        settings = project.settings()
        settings["datasets"][DATASET]["source"].update(
            url=f"file://{archive}", sha256=hashlib.sha256(archive.read_bytes()).hexdigest())
        if settings_edit:
            settings_edit(settings)
        path = project.write_params(folder.name, settings)
        return _command("download", path, folder), [archive.name, *words]
    return build


def _tar_with(name: str, member: tarfile.TarInfo, content: bytes = b""):
    def make(folder: Path) -> Path:
        path = folder / name
        with tarfile.open(path, "w") as tar:
            member.size = len(content) if member.isfile() else 0
            tar.addfile(member, io.BytesIO(content) if member.isfile() else None)
        return path
    return make


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


def _zeros_zip(folder: Path) -> Path:
    path = folder / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("zeros.bin", "w") as out:
        block = bytes(1 << 20)
        for _ in range(64):
            out.write(block)
    return path


def _flood_tar(folder: Path) -> Path:
    """A tar of 100,000 empty members, headers patched from one template (fast)."""
    path = folder / "flood.tar"
    template = bytearray(tarfile.TarInfo("f0000000").tobuf(format=tarfile.USTAR_FORMAT))
    template[148:156] = b" " * 8
    base = sum(template) - sum(b"f0000000")
    with open(path, "wb") as handle:
        for index in range(100_000):
            name = b"f%07d" % index
            template[0:8] = name
            template[148:155] = b"%06o\0" % (base + sum(name))
            handle.write(template)
        handle.write(bytes(1024))
    return path


def _truncated_tar(folder: Path) -> Path:
    path = folder / "cut.tar"
    data = (ROOT_ARCHIVE[0]).read_bytes()
    path.write_bytes(data[: len(data) // 2 + 100])
    return path


def _garbage_gz(folder: Path) -> Path:
    path = folder / "garbage.tar.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00" + os.urandom(2000))
    return path


def _corrupt_zip(folder: Path) -> Path:
    path = folder / "broken.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.txt", os.urandom(5000))
    data = bytearray(path.read_bytes())
    data[60:120] = bytes(60)  # inside the compressed member: CRC or inflate fails
    path.write_bytes(bytes(data))
    return path


def _rar(folder: Path) -> Path:
    path = folder / "dataset.rar"
    path.write_bytes(b"Rar!\x1a\x07\x00" + bytes(100))
    return path


def _big_tar(folder: Path) -> Path:
    path = folder / "big.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("a.bin")
        info.size = 20_000
        tar.addfile(info, io.BytesIO(os.urandom(20_000)))
    return path


ROOT_ARCHIVE: list[Path] = []  # the project's good demo archive (set by the fixture below)

ARCHIVE_CASES = {
    "zip_bomb_default_limits": _archive_case(_zeros_zip, "times its size", "zip bomb"),
    "tar_100000_members": _archive_case(_flood_tar, "members", "extraction.max_members",
                                        settings_edit=_set("extraction.max_members", 10_000)),
    "tar_over_total_size": _archive_case(_big_tar, "extraction.max_total_gb",
                                         settings_edit=_set("extraction.max_total_gb", 1e-5)),
    "tar_parent_path": _archive_case(_tar_with("up.tar", _info("../evil.txt"), b"x"), "'..'"),
    "tar_absolute_path": _archive_case(_tar_with("abs.tar", _info("/etc/evil.txt"), b"x"), "absolute"),
    "tar_symlink": _archive_case(_tar_with("link.tar", _info("ln", tarfile.SYMTYPE, "/etc/passwd")), "link"),
    "tar_hardlink": _archive_case(_tar_with("hard.tar", _info("hl", tarfile.LNKTYPE, "x")), "link"),
    "tar_device": _archive_case(_tar_with("dev.tar", _info("dev", tarfile.CHRTYPE)), "device"),
    "tar_fifo": _archive_case(_tar_with("fifo.tar", _info("pipe", tarfile.FIFOTYPE)), "FIFO"),
    "tar_truncated": _archive_case(_truncated_tar, "truncated"),
    "tar_gz_garbage": _archive_case(_garbage_gz, "corrupt"),
    "zip_corrupt": _archive_case(_corrupt_zip, "corrupt"),
    "archive_unsupported_type": _archive_case(_rar, "unsupported archive type"),
}


# ------------------------------------------------------------------------------------ downloads


def _download_case(prepare_server, *words, checksum=None, md5=None, existing: bytes | None = None):
    """A download from the loopback server, set up by ``prepare_server(server, name) -> url``."""
    def build(project: Project, folder: Path):
        name = f"{folder.name}.tar"
        url = prepare_server(project.server, name)
        settings = project.settings()
        source = settings["datasets"][DATASET]["source"]
        source.update(url=url, sha256=checksum or source["sha256"], generator=None, generator_kwargs={})
        if md5:
            source.update(sha256=None, md5=md5)
        path = project.write_params(folder.name, settings)
        downloads = folder / "dl"
        if existing is not None:
            downloads.mkdir(parents=True)
            (downloads / name).write_bytes(existing)
        return _command("download", path, folder, downloads=downloads), [name, *words]
    return build


def _serve(body: bytes | None = None, status: int | None = None, cut: int | None = None):
    def prepare(server: Server, name: str) -> str:
        if status is not None:
            server.status[name] = status
        else:
            server.files[name] = body if body is not None else ROOT_ARCHIVE[0].read_bytes()
        if cut is not None:
            server.cut[name] = cut
        return server.url(name)
    return prepare


def _refused_port(server: Server, name: str) -> str:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}/{name}"


def _literal(url: str):
    def prepare(server: Server, name: str) -> str:
        return url.replace("NAME", name)
    return prepare


WRONG = "0" * 64
DOWNLOAD_CASES = {
    "http_404": _download_case(_serve(status=404), "404"),
    "http_403": _download_case(_serve(status=403), "403"),
    "http_500": _download_case(_serve(status=500), "500", "nothing was saved"),
    "http_503": _download_case(_serve(status=503), "503", "nothing was saved"),
    "connection_refused": _download_case(_refused_port, "connection refused"),
    "short_read": _download_case(_serve(cut=1000), "received", "resumes"),
    "checksum_mismatch": _download_case(_serve(b"not the archive"), WRONG, "mismatch", checksum=WRONG),
    "md5_mismatch": _download_case(_serve(b"not the archive"), "f" * 32, "md5", md5="f" * 32),
    "existing_file_wrong_checksum_kept": _download_case(_serve(), "kept", "mismatch",
                                                        existing=b"my own copy"),
    "file_source_missing": _download_case(_literal("file:///nonexistent/NAME"), "does not exist"),
    "unsupported_scheme": _download_case(_literal("ftp://127.0.0.1/NAME"), "ftp"),
    "invalid_url": _download_case(_literal("http://[::1/NAME"), "URL"),
}


# ---------------------------------------------------------------------------------- checkpoints


def _model_case(damage, *words, command="evaluate"):
    """An evaluation of a copy of the exported model, damaged by ``damage(model_dir) -> file``."""
    def build(project: Project, folder: Path):
        model = folder / "model"
        shutil.copytree(project.root / MODEL, model)
        damaged = damage(model)
        return _command(command, project.root / "params.yaml", folder, model=model), [str(damaged), *words]
    return build


def _truncate_weights(model: Path) -> Path:
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return weights


def _garbage_weights(model: Path) -> Path:
    weights = model / "model.safetensors"
    weights.write_bytes(os.urandom(4096))
    return weights


def _empty_weights(model: Path) -> Path:
    weights = model / "model.safetensors"
    weights.write_bytes(b"")
    return weights


def _garbage_meta(model: Path) -> Path:
    meta = model / "model.json"
    meta.write_text("{")
    return meta


def _wrong_timm_name(model: Path) -> Path:
    meta = model / "model.json"
    data = json.loads(meta.read_text())
    data["timm_name"] = "resnet18"
    meta.write_text(json.dumps(data))
    return meta


def _other_shape_weights(model: Path) -> Path:
    meta = model / "model.json"
    data = json.loads(meta.read_text())
    data["timm_kwargs"]["embed_dim"] = 48
    meta.write_text(json.dumps(data))
    return model / "model.safetensors"


def _missing_weights(model: Path) -> Path:
    weights = model / "model.safetensors"
    weights.unlink()
    return weights


def _checkpoint_case(write, *words):
    """A pretraining into a folder whose ``checkpoints/last.pt`` is ``write(path)``."""
    def build(project: Project, folder: Path):
        last = folder / "model" / "checkpoints" / "last.pt"
        last.parent.mkdir(parents=True)
        write(last)
        return _command("pretrain", project.root / "params.yaml", folder), [str(last), *words]
    return build


def _truncated_checkpoint(path: Path) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save({"step": 3, "weights": torch.zeros(1000)}, buffer)
    path.write_bytes(buffer.getvalue()[:700])


def _refused_checkpoint(path: Path) -> None:
    import torch

    torch.save({"step": 3, "object": Path("pickled objects are refused")}, path)


CHECKPOINT_CASES = {
    "weights_truncated": _model_case(_truncate_weights, "cannot read the weights"),
    "weights_garbage": _model_case(_garbage_weights, "cannot read the weights"),
    "weights_empty": _model_case(_empty_weights, "cannot read the weights"),
    "weights_missing": _model_case(_missing_weights, "not found"),
    "model_json_garbage": _model_case(_garbage_meta, "not a valid model description"),
    "model_json_wrong_timm_name": _model_case(_wrong_timm_name, "timm_name"),
    "weights_do_not_fit": _model_case(_other_shape_weights, "do not fit"),
    "checkpoint_truncated": _checkpoint_case(_truncated_checkpoint, "cannot read the checkpoint"),
    "checkpoint_garbage": _checkpoint_case(lambda path: path.write_bytes(os.urandom(3000)),
                                           "cannot read the checkpoint"),
    "checkpoint_refused_by_safe_loader": _checkpoint_case(_refused_checkpoint, "cannot read the checkpoint"),
}


# --------------------------------------------------------------------------- disk and tracking


def _disk_case(command: str, *words, fail_errno: int | None = None, out: str | None = None):
    """``command`` writing where the OS refuses: a real read-only tree (``out``) or a simulated errno."""
    def build(project: Project, folder: Path):
        paths = {"out": Path(out)} if out else {}
        if command == "make-demo":
            paths = {"out": Path(out or folder / "demo.tar")}
        argv = _command(command, project.root / "params.yaml", folder, **paths)
        return argv, list(words), fail_errno
    return build


def _tracking_case(make_store, *words, via_env: bool = False):
    def build(project: Project, folder: Path):
        folder.mkdir(parents=True, exist_ok=True)
        store = make_store(project, folder)
        settings = project.settings()
        uri = f"sqlite:///{store}"
        env = {}
        if via_env:
            env["MLFLOW_TRACKING_URI"] = uri
        else:
            settings["mlflow"]["tracking_uri"] = uri
        path = project.write_params(folder.name, settings)
        return _command("prepare", path, folder), [str(store), *words], env
    return build


def _garbage_db(project: Project, folder: Path) -> Path:
    store = folder / "mlflow.db"
    store.write_bytes(b"definitely not sqlite" * 200)
    return store


def _truncated_db(project: Project, folder: Path) -> Path:
    store = folder / "mlflow.db"
    store.write_bytes((project.root / "mlflow.db").read_bytes()[:3000])
    return store


def _zeroed_db(project: Project, folder: Path) -> Path:
    store = folder / "mlflow.db"
    data = bytearray((project.root / "mlflow.db").read_bytes())
    data[4096:] = bytes(len(data) - 4096)
    store.write_bytes(bytes(data))
    return store


SYS_DIR = "/sys/rsdino-bad-inputs"  # /sys refuses new entries even to root (EPERM or EROFS)
DISK_CASES = {
    "output_read_only_fs": _disk_case("prepare", "Read-only file system", fail_errno=errno.EROFS),
    "output_disk_full": _disk_case("prepare", "No space left on device", fail_errno=errno.ENOSPC),
    "output_forbidden": _disk_case("prepare", "Permission denied", fail_errno=errno.EACCES),
    "quota_exhausted": _disk_case("prepare", "quota", fail_errno=errno.EDQUOT),
    "download_into_sys": _disk_case("download", SYS_DIR, out=f"{SYS_DIR}/raw"),
    "make_demo_into_sys": _disk_case("make-demo", SYS_DIR, out=f"{SYS_DIR}/demo.tar"),
}
TRACKING_CASES = {
    "mlflow_db_garbage": _tracking_case(_garbage_db, "not a readable MLflow database"),
    "mlflow_db_garbage_via_env": _tracking_case(_garbage_db, "not a readable MLflow database", via_env=True),
    "mlflow_db_truncated": _tracking_case(_truncated_db, "MLflow"),
    "mlflow_db_zeroed_pages": _tracking_case(_zeroed_db, "MLflow"),
}

CASES = {**PARAMS_CASES, **PARAMS_FILE_CASES, **DATA_CASES, **ARCHIVE_CASES, **DOWNLOAD_CASES,
         **CHECKPOINT_CASES, **DISK_CASES, **TRACKING_CASES}


@pytest.fixture(scope="module")
def before(project):
    """The digests of data/, models/, results/ before any case ran; the good archive for the cases."""
    ROOT_ARCHIVE[:] = [project.root / ARCHIVE]
    return _digests(project.root)


def _fail_writes(fail_errno: int, patch: pytest.MonkeyPatch) -> None:
    """Every atomic write (``rsdino.io``) meets a disk that says ``fail_errno``."""
    import rsdino.io

    def refuse(*args, dir=None, **kwargs):  # noqa: A002 - mkstemp's own name
        raise OSError(fail_errno, os.strerror(fail_errno), str(dir))

    patch.setattr(rsdino.io.tempfile, "mkstemp", refuse)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_loses_nothing(case, project, before, capfd):
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project.root)
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.delenv("RSDINO_WARM_SOCKET", raising=False)
        patch.setattr("rsdino.data.download.time.sleep", lambda seconds: None)  # retries without waiting
        folder = project.root / "bad" / case
        built = CASES[case](project, folder)
        argv, words = built[0], built[1]
        extra = built[2] if len(built) > 2 else None
        if isinstance(extra, int):
            _fail_writes(extra, patch)
        elif isinstance(extra, dict):
            for key, value in extra.items():
                patch.setenv(key, value)
        inputs = {path: path.read_bytes() for path in folder.rglob("*") if path.is_file()} \
            if folder.exists() else {}
        capfd.readouterr()
        code = main(argv)
        out, err = capfd.readouterr()
    step = next(arg for arg in argv if not arg.startswith("-"))
    assert code == 2, (case, err)
    assert out == ""
    # Off a terminal (a job's log) the step's INFO progress records may come first; the error line is
    # the only other line and the last. On a terminal it is the only line (the process cases below).
    lines = [line for line in err.splitlines() if not LOG_RECORD.match(line)]
    assert len(lines) == 1 and err.splitlines()[-1] == lines[0], (case, err)
    assert lines[0].startswith(f"rsdino {step}: error: "), lines[0]
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], (case, word, lines[0])
    assert _digests(project.root) == before
    for path, content in inputs.items():  # the case's own inputs, an existing download included
        assert path.read_bytes() == content, path


# ---------------------------------------------------------------------- the same, as processes


SUBPROCESS_CASES = ["params_not_yaml", "mlflow_db_garbage", "archive_unsupported_type"]
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO ")


def _run_on_a_terminal(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``rsdino`` with stderr on a pseudo-terminal: (exit code, stdout, what the terminal shows)."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "rsdino.cli", *argv], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=follower, text=True)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    out = proc.stdout.read()
    return proc.wait(timeout=300), out, shown.decode(errors="replace")


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_bad_input_as_a_process_prints_one_line(case, project, before):
    folder = project.root / "bad" / f"process_{case}"
    shutil.rmtree(folder, ignore_errors=True)
    built = CASES[case](project, folder)
    argv, words = built[0], built[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RSDINO_WARM"))}
    env["PYTHONPATH"] = str(ROOT)
    code, out, shown = _run_on_a_terminal(argv, project.root, env)
    assert code == 2, shown
    assert out == ""
    lines = shown.splitlines()
    assert len(lines) == 1, shown
    assert all(word in lines[0] for word in words), lines[0]
    assert _digests(project.root) == before


def test_debug_prints_the_traceback_and_the_log_keeps_it(project, capfd):
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project.root)
        argv, _ = PARAMS_FILE_CASES["params_not_yaml"](project, project.root / "bad" / "debug")
        capfd.readouterr()
        assert main(["--debug", *argv]) == 2
        err = capfd.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1].startswith("rsdino prepare: error: ")
    log = (project.root / "logs" / "debug" / "prepare.log").read_text()
    assert "Traceback" in log and "ParamsError" in log


@pytest.mark.parametrize(("argv", "words"), [
    (["prepare", "--dataset", DATASET], ["rsdino prepare: error: ", "--raw"]),
    (["pretrain", "--variant", VARIANT, "--raw", "r", "--data", "d", "--out", "o", "--bogus"],
     ["rsdino: error: ", "--bogus"]),
    (["no-such-step"], ["rsdino: error: ", "no-such-step"]),
])
def test_a_wrong_command_line_is_one_line_too(argv, words, capfd):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    out, err = capfd.readouterr()
    assert stop.value.code == 2 and out == ""
    assert len(err.splitlines()) == 1 and all(word in err for word in words), err
