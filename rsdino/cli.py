"""The ``rsdino`` command: one subcommand per pipeline step.

Every Snakemake rule is one call of a subcommand below, and every subcommand runs on its own from
the shell (``rsdino <step> --help``). Settings come from ``--params`` (validated by
``rsdino.config``); every path is an argument. Errors in the user's input (settings, missing or
corrupt files, refused archives, failed downloads, bad checkpoints, a read-only or full disk, a
corrupt tracking store) end with one line ``rsdino <step>: error: <what>: <problem> (<what to do>)``
and exit status 2 (``rsdino.errors``); the traceback goes to ``logs/debug/<step>.log``, and to the
terminal too with ``rsdino --debug <step> ...``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rsdino.errors import UserError
from rsdino.tracking import configure_offline_environment, model_link_tags, run_name

configure_offline_environment()


def require(path: Path, what: str, hint: str = "") -> Path:
    """Return ``path`` if it exists, else raise a ``UserError`` naming it."""
    if not path.exists():
        raise UserError(f"{path}: {what} not found" + (f" ({hint})" if hint else ""))
    return path


def _device(name: str) -> str:
    """``--device`` resolved on this machine (``auto``: CUDA when present, else CPU; rsdino.devices)."""
    from rsdino.devices import resolve_device

    try:
        return resolve_device(name)
    except ValueError as error:
        raise UserError(str(error)) from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, default=Path("params.yaml"),
                        help="settings file (default: params.yaml)")
    parser.add_argument("--scale", default=None,
                        help="override the settings' scale (demo or full)")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide progress (a bar on a terminal, else a log line per epoch and every "
                             "progress.every_s seconds)")
    parser.add_argument("--quiet", action="store_true", help="log warnings and errors only (default: INFO)")


# ------------------------------------------------------------------------------------ subcommands


def cmd_setup(args: argparse.Namespace) -> None:
    """Make the project's Snakemake profiles reachable by name and create the local DVC remote."""
    from rsdino.workflow_support import install_profiles, prepare_dvc_remote

    for line in install_profiles(Path(args.project).resolve(), force=args.force):
        print(line)
    print(prepare_dvc_remote(Path(args.project).resolve()))


def cmd_make_demo(args: argparse.Namespace) -> None:
    """Generate a dataset's demo archive with its registered fake-data generator (or its catalogued fake).

    With ``--variant``: a seeded checkpoint in DINO's training layout, for a variant whose ``weights``
    it stands in for (the demo's imported variant).
    """
    from rsdino.config import load_params
    from rsdino.data.catalog import CATALOG, CATALOG_GENERATOR, make_fake
    from rsdino.data.fake import FAKE_GENERATORS

    params = load_params(args.params, args.scale)
    if args.variant is not None:
        from rsdino.models.importers.released import write_demo_checkpoint

        variant = _variant(params, args.variant)
        bands = variant.input_bands or params.datasets[variant.pretrain_data].bands
        print(f"wrote {write_demo_checkpoint(args.out, variant, len(bands))}")
        return
    if args.dataset is None:
        raise UserError("make-demo: give --dataset or --variant")
    dataset = _dataset(params, args.dataset)
    source = dataset.source
    if not source.generator:
        raise UserError(f"{args.params}: datasets.{args.dataset}.source has no generator")
    if source.generator == CATALOG_GENERATOR:
        if args.dataset not in CATALOG:
            raise UserError(f"{args.params}: datasets.{args.dataset}: no fake copy in rsdino.data.catalog")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        digest = make_fake(args.dataset, dataset, args.out, **source.generator_kwargs)
        print(f"wrote {args.out} (sha256 {digest})")
        return
    if source.generator not in FAKE_GENERATORS:
        raise UserError(f"{args.params}: datasets.{args.dataset}.source.generator: unknown generator "
                        f"{source.generator!r} (known: {CATALOG_GENERATOR}, {', '.join(FAKE_GENERATORS)})")
    digest = FAKE_GENERATORS[source.generator](args.out, **source.generator_kwargs)
    print(f"wrote {args.out} (sha256 {digest})")
    if source.sha256 and digest != source.sha256:
        print(f"warning: {args.out}: sha256 {digest} differs from datasets.{args.dataset}.source.sha256 "
              f"{source.sha256}; the download step will refuse it", file=sys.stderr)


def cmd_download(args: argparse.Namespace) -> None:
    """Download (or copy) a dataset archive, verify its checksum and extract it safely."""
    from rsdino.config import load_params, write_resolved
    from rsdino.data.download import download
    from rsdino.data.extract import extract_archives

    params = load_params(args.params, args.scale)
    dataset = _dataset(params, args.dataset)
    source = dataset.source
    if source.local is not None:  # a folder of your own images (its task's import_local)
        _import_local(args, params, dataset)
        return
    if source.url is None:
        raise UserError(f"{args.out}: dataset {args.dataset!r} must be downloaded by hand: {source.manual}")
    with _step(params, group=f"data:{args.dataset}", step="download",
               run_name=run_name(args.dataset, "download"),
               params={"dataset": args.dataset, "url": source.url}) as tracker:
        archive = download(source.url, args.downloads, sha256=source.sha256, md5=source.md5,
                           filename=source.filename, base_dir=Path.cwd(), progress=not args.no_progress,
                           refetch=args.refetch)
        extras = [download(extra.url, args.downloads, sha256=extra.sha256, md5=extra.md5,
                           filename=extra.filename, base_dir=Path.cwd(), progress=not args.no_progress,
                           refetch=args.refetch)
                  for extra in source.extra]
        extract_archives([archive, *extras], args.out, limits=params.extraction)
        resolved = write_resolved(params.resolved_for(dataset=args.dataset),
                                  args.out.with_name(args.out.name + ".params.yaml"))
        tracker.log_artifact(resolved)
        tracker.log_metrics({"archive_bytes": archive.stat().st_size})
    print(f"{args.dataset}: {archive} -> {args.out}")


def _import_local(args: argparse.Namespace, params, dataset) -> None:  # noqa: ANN001
    from rsdino.config import write_resolved
    from rsdino.data.local import LocalSourceError
    from rsdino.data.registry import TASKS, resolve

    source = dataset.source
    import_local = resolve(TASKS[dataset.task].import_local)
    try:
        n = import_local(Path(source.local), args.out, list_file=source.list_file, resize=source.resize)
    except LocalSourceError as error:
        raise UserError(f"{args.params}: datasets.{args.dataset}.source.local: {error}") from None
    write_resolved(params.resolved_for(dataset=args.dataset),
                   args.out.with_name(args.out.name + ".params.yaml"))
    print(f"{args.dataset}: {n} images from {source.local} -> {args.out}")


def cmd_track(args: argparse.Namespace) -> None:
    """Add a downloaded dataset folder to DVC (and push it to the default remote)."""
    from rsdino.config import load_params
    from rsdino.workflow_support import dvc_track

    params = load_params(args.params, args.scale)
    require(args.path, "dataset folder", "run `rsdino download` first")
    print(dvc_track(args.path, remote=params.dvc.remote if params.dvc.push else None))


def cmd_prepare(args: argparse.Namespace) -> None:
    """Split a downloaded dataset (seeded, per its task: ``rsdino.data.registry``); compute band stats."""
    from rsdino.config import load_params, write_resolved
    from rsdino.data.registry import prepare_dataset

    params = load_params(args.params, args.scale)
    dataset = _dataset(params, args.dataset)
    require(args.raw, "dataset folder", f"run `rsdino download --dataset {args.dataset}` first")
    with _step(params, group=f"data:{args.dataset}", step="prepare",
               run_name=run_name(args.dataset, "prepare"),
               params={"dataset": args.dataset, "test_fraction": dataset.split.test_fraction,
                       "seed": dataset.split.seed}) as tracker:
        try:
            summary = prepare_dataset(dataset, args.dataset, args.raw, args.out,
                                      progress=not args.no_progress)
        except NotImplementedError as err:
            raise UserError(f"{args.params}: datasets.{args.dataset}: {err}") from err
        tracker.log_metrics({k: float(v) for k, v in summary.items() if isinstance(v, int | float)})
        tracker.log_artifact(write_resolved(params.resolved_for(dataset=args.dataset),
                                            args.out / "params.resolved.yaml"))
    print(f"{args.dataset}: {summary}")


def cmd_pretrain(args: argparse.Namespace) -> None:
    """Pretrain one model variant and export its teacher backbone (here, or as a SLURM job)."""
    import os
    from contextlib import nullcontext

    from rsdino.config import load_params, write_resolved
    from rsdino.data.chips import chipped
    from rsdino.data.registry import open_dataset
    from rsdino.data.version import data_version, data_version_tags
    from rsdino.evaluate.provenance import record_model_data_version
    from rsdino.progress import set_interval
    from rsdino.tracking import NullTracker, record_pretraining_run, resolve_tracking_uri
    from rsdino.train.checkpointing import output_lock
    from rsdino.train.pretrain import run_pretraining

    params = load_params(args.params, args.scale)
    set_interval(params.progress.every_s)
    variant = _variant(params, args.variant)
    if variant.weights is not None:
        raise UserError(f"{args.params}: variants.{args.variant} declares released weights: "
                        f"`rsdino import-weights --variant {args.variant}` makes its model folder")
    dataset_cfg = params.datasets[variant.pretrain_data]
    require(args.raw, "dataset folder", f"run `rsdino download --dataset {variant.pretrain_data}` first")
    require(args.data, "prepared dataset folder", f"run `rsdino prepare --dataset {variant.pretrain_data}`")
    if (args.launcher or variant.launcher) == "submitit":
        _pretrain_on_slurm(args, variant)
        return
    _set_threads(args.threads)
    device = _device(args.device)
    # Any task: scenes, series, S1/S2 pairs. Temporal views of dated single images (fMoW) draw one
    # date per global crop and one for the locals.
    crops = variant.crops
    train = open_dataset(dataset_cfg, args.raw, args.data, "train",
                         series=crops.n_global + 1 if crops.temporal else 0)
    train = chipped(train, args.data, needs=("series",) if crops.temporal else ("image",))
    main_rank = int(os.environ.get("RANK", "0")) == 0  # other ranks of a distributed job log nothing
    step = (_step(params, group=args.variant, step="pretrain",
                  run_name=run_name(args.variant, "pretrain", variant.pretrain_data),
                  params={"method": variant.method, "backbone": variant.backbone,
                          "dataset": variant.pretrain_data, "epochs": variant.optim.epochs,
                          "batch_size": variant.optim.batch_size, "lr": variant.optim.lr,
                          "out_dim": variant.head.out_dim})
            if main_rank else nullcontext(NullTracker()))
    with output_lock(args.out) if main_rank else nullcontext(), step as tracker:  # one writer per folder
        model = run_pretraining(args.variant, variant, train, bands=dataset_cfg.bands,
                                rgb_bands=dataset_cfg.rgb_bands, mean=train.stats["mean"],
                                std=train.stats["std"], out_dir=args.out, tracker=tracker,
                                device=device, progress=not args.no_progress, gsd=dataset_cfg.gsd,
                                probe=_probe(params, variant, args))
        if main_rank and getattr(tracker, "run_id", None):  # evaluation runs link back to this run
            record_pretraining_run(args.out, tracker.run_id, resolve_tracking_uri(params.mlflow.tracking_uri))
        if main_rank:  # the data the weights came from, hashed after training (no rank waits for it)
            # the settings sidecar only after the model it describes: a failed run leaves the old pair
            tracker.log_artifact(write_resolved(params.resolved_for(variant=args.variant),
                                                args.out / "params.resolved.yaml"))
            version = {"dataset": variant.pretrain_data, **data_version(args.raw)}
            record_model_data_version(args.out, version)
            tracker.set_tags(data_version_tags("data_version", variant.pretrain_data, version))
    if main_rank:
        print(f"{args.variant}: {model}")


def _probe(params, variant, args: argparse.Namespace):  # noqa: ANN001, ANN202
    """The variant's kNN probe (rsdino.train.probe) on --probe-raw/--probe-data, or None."""
    if variant.probe is None:
        return None
    if args.probe_raw is None or args.probe_data is None:
        import logging

        logging.getLogger(__name__).warning(
            "%s: variants.%s.probe is set but --probe-raw/--probe-data are not given: no kNN probe",
            args.params, args.variant)
        return None
    from rsdino.train.probe import open_probe

    name = variant.probe.dataset
    require(args.probe_data, "prepared probe dataset folder", f"run `rsdino prepare --dataset {name}`")
    return open_probe(variant.probe, params.datasets[name], args.probe_raw, args.probe_data)


def _pretrain_on_slurm(args: argparse.Namespace, variant) -> None:  # noqa: ANN001
    """``rsdino pretrain --launcher submitit``: the same command, run by every task of one SLURM job."""
    from rsdino.launch.submitit_launcher import (
        SlurmJobError,
        SlurmOptions,
        new_folder,
        parse_sbatch_options,
        run_on_slurm,
    )

    argv = ["pretrain", "--params", str(Path(args.params).resolve()), "--variant", args.variant,
            "--raw", str(Path(args.raw).resolve()), "--data", str(Path(args.data).resolve()),
            "--out", str(Path(args.out).resolve()), "--device", args.device, "--launcher", "local"]
    if args.scale:
        argv += ["--scale", args.scale]
    argv += ["--threads", str(variant.resources.cpus_per_task)]  # each task's own CPUs
    if args.probe_raw is not None and args.probe_data is not None:
        argv += ["--probe-raw", str(Path(args.probe_raw).resolve()),
                 "--probe-data", str(Path(args.probe_data).resolve())]
    if args.no_progress:
        argv.append("--no-progress")
    try:
        extra = parse_sbatch_options(" ".join(args.slurm_extra or []))
    except ValueError as error:
        raise UserError(f"--slurm-extra: {error}") from None
    options = SlurmOptions(folder=new_folder(args.slurm_folder, args.variant), partition=args.slurm_partition,
                           account=args.slurm_account, qos=args.slurm_qos, tasks_per_node=args.tasks_per_node,
                           extra=extra, poll_s=args.slurm_poll)
    try:
        run_on_slurm(argv, run_command, variant.resources, options,
                     job_name=f"rsdino-pretrain-{args.variant}")
    except SlurmJobError as error:
        raise UserError(str(error)) from None
    print(f"{args.variant}: {Path(args.out) / 'model.safetensors'}")


def cmd_import_weights(args: argparse.Namespace) -> None:
    """Import a published checkpoint (DINO, DINO-MC, SatDINO, DINOv2) into a standard model folder.

    Either ``--format`` and ``--checkpoint``, or ``--variant``: the variant's ``weights`` in the
    settings (downloaded, or read from its path; a manual download stops with how to get it).
    """
    from rsdino.models.importers.folder import import_weights

    def floats(text: str | None) -> list[float] | None:
        return None if text is None else [float(v) for v in text.split(",")]

    fmt, checkpoint, method = args.format, args.checkpoint, args.method
    bands, mean, std = (args.bands.split(",") if args.bands else None), floats(args.mean), floats(args.std)
    if args.variant is not None:
        fmt, checkpoint, method, bands, mean, std = _released_weights(args)
    elif fmt is None or checkpoint is None:
        raise UserError("import-weights: give --format and --checkpoint, or --variant")
    try:
        weights = import_weights(fmt, checkpoint, args.out, method=method, variant=args.variant,
                                 bands=bands, mean=mean, std=std)
    except ValueError as error:
        raise UserError(str(error)) from None
    print(f"{checkpoint} ({fmt}) -> {weights}")


def _released_weights(args: argparse.Namespace) -> tuple:
    """``(format, file, method, bands, mean, std)`` of ``--variant``'s declared ``weights``."""
    from rsdino.config import load_params
    from rsdino.data.download import DownloadError
    from rsdino.models.importers.released import checkpoint_file

    params = load_params(args.params, args.scale)
    variant = _variant(params, args.variant)
    spec = variant.weights
    if spec is None:
        raise UserError(f"{args.params}: variants.{args.variant} declares no weights (it is pretrained)")
    try:
        path = checkpoint_file(spec, args.variant, args.downloads, base_dir=Path.cwd(),
                               progress=not args.no_progress)
    except (ValueError, DownloadError) as error:
        raise UserError(str(error)) from None
    bands, mean, std = spec.bands, spec.mean, spec.std
    if mean is None:  # the pretraining data's bands and training-split statistics
        from rsdino.data.registry import open_dataset

        dataset_cfg = params.datasets[variant.pretrain_data]
        hint = f"run `rsdino prepare --dataset {variant.pretrain_data}` first, or give weights.mean / std"
        if args.raw is None or args.data is None:
            raise UserError(f"{args.params}: variants.{args.variant}.weights has no mean / std: {hint}")
        require(args.data, "prepared dataset folder", hint)
        stats = open_dataset(dataset_cfg, args.raw, args.data, "train").stats
        bands, mean, std = bands or dataset_cfg.bands, stats["mean"], stats["std"]
    return spec.format, path, variant.method, bands, mean, std


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Evaluate one pretrained variant with one evaluation protocol; write its metrics file."""
    from rsdino.config import load_params
    from rsdino.evaluate.run import run_evaluation
    from rsdino.models.backbones import backbone_folder
    from rsdino.progress import set_interval

    params = load_params(args.params, args.scale)
    set_interval(params.progress.every_s)
    if args.evaluation not in params.evaluations:
        raise UserError(f"{args.params}: evaluations: no evaluation {args.evaluation!r} "
                        f"(defined: {', '.join(params.evaluations)})")
    evaluation = params.evaluations[args.evaluation]
    variant = _variant(params, args.variant)
    _set_threads(args.threads)
    device = _device(args.device)
    branch = getattr(evaluation, "backbone", "teacher")
    require(backbone_folder(args.model, branch) / "model.safetensors", f"pretrained {branch} backbone",
            f"run `rsdino pretrain --variant {args.variant}` first")
    require(args.raw, "dataset folder", f"run `rsdino download --dataset {evaluation.dataset}` first")
    require(args.data, "prepared dataset folder", f"run `rsdino prepare --dataset {evaluation.dataset}`")
    weights = backbone_folder(args.model, branch) / "model.safetensors"
    with _step(params, group=args.variant, step=evaluation.protocol, summary=args.evaluation,
               run_name=run_name(args.variant, f"{args.evaluation} ({evaluation.protocol})",
                                 evaluation.dataset),
               tags={**model_link_tags(args.model, weights), "rsdino.evaluation": args.evaluation,
                     "rsdino.model_branch": branch},
               params={"method": variant.method, "backbone": variant.backbone,
                       "dataset": evaluation.dataset, "evaluation": args.evaluation,
                       **{k: v for k, v in evaluation.model_dump().items()
                          if k not in {"variants", "dataset", "protocol"}}}) as tracker:
        result = run_evaluation(args.evaluation, evaluation, args.variant, variant, model_dir=args.model,
                                raw_dir=args.raw, prepared_dir=args.data, out=args.out, params=params,
                                tracker=tracker, device=device, progress=not args.no_progress)
    print(f"{args.evaluation} {args.variant}: {result['metrics']}")


def cmd_report(args: argparse.Namespace) -> None:
    """Build the results tables (Markdown, CSV, coverage of the published numbers), summary and plots."""
    import json

    from rsdino.config import load_params, write_resolved
    from rsdino.report.coverage import COVERAGE_FILE, coverage_lines
    from rsdino.report.plots import (
        TRAINING_CURVES,
        VARIANT_CURVES,
        plot_ours_vs_published,
        plot_training_curves,
        plot_variant_curves,
    )
    from rsdino.report.tables import build_tables, write_summary

    params = load_params(args.params, args.scale)
    for path in args.metrics:
        require(path, "metrics file", "run the evaluation first")
    for path in args.histories:
        require(path, "training history", "run the pretraining first")
    with _step(params, group="report", step="report", run_name="report",
               params={"scale": params.scale, "tables": ",".join(params.selected.tables)}) as tracker:
        written = build_tables(list(args.metrics), params, args.out)
        write_summary(list(args.metrics), args.summary)
        write_resolved(params.resolved_for(), args.out / "params.resolved.yaml")
        for path in written:
            tracker.log_artifact(path, artifact_path="tables")
            if path.suffix == ".csv":
                png = args.plots / f"{path.stem}.png"
                png.parent.mkdir(parents=True, exist_ok=True)
                plot_ours_vs_published(path, png)
                tracker.log_artifact(png, artifact_path="plots")
        if args.histories:
            args.plots.mkdir(parents=True, exist_ok=True)
            curves = plot_training_curves(list(args.histories), args.plots / TRAINING_CURVES)
            tracker.log_artifact(curves, artifact_path="plots")
            for history in args.histories:
                png = args.plots / VARIANT_CURVES.format(variant=Path(history).parent.name)
                tracker.log_artifact(plot_variant_curves(history, png), artifact_path="plots")
            written.append(curves)
    for path in written:
        print(path)
    for line in coverage_lines(json.loads((args.out / COVERAGE_FILE).read_text(encoding="utf-8"))):
        print(line)


def cmd_serve(args: argparse.Namespace) -> None:
    """Serve warm starts: hold torch, timm and MLflow imported and fork each step sent to the socket."""
    from rsdino.launch.warm import serve

    serve(args.socket, entry=main)


def cmd_export(args: argparse.Namespace) -> None:
    """Write a model folder as a folder ready for a Hugging Face Hub upload (timm config, card); no upload."""
    from rsdino.models.hub_export import export_for_hub, read_model_meta, variant_metrics

    require(args.model, "model folder", "run `rsdino pretrain` first")
    try:
        meta = read_model_meta(args.model)
        records = variant_metrics(args.results, str(meta.get("variant", ""))) if args.results.is_dir() else []
        print(export_for_hub(args.model, args.out, records))
    except ValueError as error:
        raise UserError(str(error)) from None


def cmd_dvc_commit(args: argparse.Namespace) -> None:
    """Record the current outputs of a DVC stage in dvc.lock (after Snakemake built them)."""
    from rsdino.dvc_lock import write_lock_params
    from rsdino.workflow_support import dvc_commit

    if args.params_only:  # regenerate the lock's params section from the settings file, nothing else
        print(write_lock_params(Path.cwd(), args.stage, str(args.params)))
        return
    print(dvc_commit(args.stage, str(args.params)))


# ------------------------------------------------------------------------------------------ parser


def _dataset(params, name: str):  # noqa: ANN001, ANN202 - small lookup helpers
    if name not in params.datasets:
        raise UserError(f"datasets: no dataset {name!r} (defined: {', '.join(params.datasets)})")
    return params.datasets[name]


def _variant(params, name: str):  # noqa: ANN001, ANN202
    if name not in params.variants:
        raise UserError(f"variants: no variant {name!r} (defined: {', '.join(params.variants)})")
    return params.variants[name]


def _set_threads(threads: int | None) -> None:
    """Give torch exactly the cores the scheduler granted (oversubscribed threads crawl)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def _step(settings, **kwargs):  # noqa: ANN001, ANN202
    from rsdino.tracking import step_run

    return step_run(experiment=settings.mlflow.experiment, tracking_uri=settings.mlflow.tracking_uri,
                    artifact_location=settings.mlflow.artifact_location, **kwargs)


class _OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other error of ``rsdino``."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``rsdino`` and all its subcommands."""
    from rsdino.models.importers import FORMATS

    parser = _OneLineParser(
        prog="rsdino", description="Reproducible DINO-family pretraining on remote-sensing imagery. "
        "Each subcommand is one pipeline step; `snakemake --profile local all` runs them all.")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, print the traceback as well as the one-line message")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<step>")

    def add(name: str, func: Callable[[argparse.Namespace], None], **kw: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=func.__doc__.splitlines()[0], description=func.__doc__, **kw)
        p.set_defaults(func=func)
        return p

    p = add("setup", cmd_setup)
    p.add_argument("--project", default=".", help="project root (default: .)")
    p.add_argument("--force", action="store_true", help="replace existing profiles of the same name")

    p = add("make-demo", cmd_make_demo)
    _common(p)
    p.add_argument("--dataset", default=None, help="dataset name in params.yaml")
    p.add_argument("--variant", default=None, help="variant whose released checkpoint to stand in for")
    p.add_argument("--out", type=Path, required=True, help="archive to write")

    p = add("download", cmd_download)
    _common(p)
    p.add_argument("--dataset", required=True, help="dataset name in params.yaml")
    p.add_argument("--downloads", type=Path, default=Path("data/downloads"), help="archive folder")
    p.add_argument("--out", type=Path, required=True, help="folder to extract the dataset into")
    p.add_argument("--refetch", action="store_true",
                   help="fetch again an archive that is present but fails its checksum (replaced only "
                        "by a copy that verifies)")

    p = add("track", cmd_track)
    _common(p)
    p.add_argument("--path", type=Path, required=True, help="dataset folder to add to DVC")

    p = add("prepare", cmd_prepare)
    _common(p)
    p.add_argument("--dataset", required=True, help="dataset name in params.yaml")
    p.add_argument("--raw", type=Path, required=True, help="downloaded dataset folder")
    p.add_argument("--out", type=Path, required=True, help="prepared dataset folder to write")

    p = add("pretrain", cmd_pretrain)
    _common(p)
    p.add_argument("--variant", required=True, help="variant name in params.yaml")
    p.add_argument("--raw", type=Path, required=True, help="downloaded pretraining dataset folder")
    p.add_argument("--data", type=Path, required=True, help="prepared pretraining dataset folder")
    p.add_argument("--probe-raw", type=Path, help="downloaded folder of the variant's kNN-probe dataset")
    p.add_argument("--probe-data", type=Path, help="prepared folder of the variant's kNN-probe dataset")
    p.add_argument("--out", type=Path, required=True, help="model folder to write")
    p.add_argument("--device", default="auto",
                   help="torch device: auto (CUDA when this machine has a GPU, else CPU; default), cpu, cuda")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all)")
    p.add_argument("--launcher", choices=("local", "submitit"), default=None,
                   help="run here (local) or as one SLURM job (submitit); default: the variant's launcher")
    p.add_argument("--tasks-per-node", type=int, default=None,
                   help="submitit: processes per node (default: one per GPU, at least one)")
    p.add_argument("--slurm-partition", default=None, help="submitit: SLURM partition")
    p.add_argument("--slurm-account", default=None, help="submitit: SLURM account")
    p.add_argument("--slurm-qos", default=None, help="submitit: SLURM quality of service")
    p.add_argument("--slurm-extra", action="append", default=None,
                   help="submitit: more sbatch options, e.g. --slurm-extra='--constraint=a100' (repeatable)")
    p.add_argument("--slurm-folder", type=Path, default=Path("logs/submitit"),
                   help="submitit: folder for job pickles and logs (default: logs/submitit)")
    p.add_argument("--slurm-poll", type=float, default=15.0,
                   help="submitit: seconds between job-state checks (default: 15)")

    p = add("import-weights", cmd_import_weights)
    _common(p)
    p.add_argument("--format", choices=FORMATS, default=None, help="checkpoint layout")
    p.add_argument("--checkpoint", type=Path, default=None, help="the published .pth file")
    p.add_argument("--variant", default=None,
                   help="import the weights this variant declares (instead of --format / --checkpoint)")
    p.add_argument("--downloads", type=Path, default=Path("data/downloads"),
                   help="download folder (--variant)")
    p.add_argument("--raw", type=Path, default=None,
                   help="--variant: its pretraining dataset folder (statistics)")
    p.add_argument("--data", type=Path, default=None,
                   help="--variant: its prepared pretraining dataset folder")
    p.add_argument("--out", type=Path, required=True, help="model folder to write (models/<name>)")
    p.add_argument("--method", default=None, help="method recorded in model.json (default: the format's)")
    p.add_argument("--bands", default=None, help="comma-separated input band names (default: none recorded)")
    p.add_argument("--mean", default=None, help="comma-separated per-band mean (default: ImageNet RGB)")
    p.add_argument("--std", default=None, help="comma-separated per-band std (default: ImageNet RGB)")

    p = add("evaluate", cmd_evaluate)
    _common(p)
    p.add_argument("--evaluation", required=True, help="evaluation name in params.yaml")
    p.add_argument("--variant", required=True, help="variant name in params.yaml")
    p.add_argument("--model", type=Path, required=True,
                   help="the variant's pretrained model folder (teacher backbone; the student's in student/)")
    p.add_argument("--raw", type=Path, required=True, help="downloaded evaluation dataset folder")
    p.add_argument("--data", type=Path, required=True, help="prepared evaluation dataset folder")
    p.add_argument("--out", type=Path, required=True, help="metrics JSON file to write")
    p.add_argument("--device", default="auto",
                   help="torch device: auto (CUDA when this machine has a GPU, else CPU; default), cpu, cuda")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: all)")

    p = add("report", cmd_report)
    _common(p)
    p.add_argument("--metrics", type=Path, nargs="+", required=True, help="metrics JSON files")
    p.add_argument("--out", type=Path, required=True, help="folder for the tables")
    p.add_argument("--summary", type=Path, required=True, help="summary metrics JSON (for DVC)")
    p.add_argument("--plots", type=Path, required=True, help="folder for the plots")
    p.add_argument("--histories", type=Path, nargs="*", default=[],
                   help="pretraining history.csv files, drawn as training curves in the plots folder")

    p = add("serve", cmd_serve)
    p.add_argument("--socket", type=Path, required=True,
                   help="UNIX socket to listen on; steps find it through RSDINO_WARM_SOCKET")

    p = add("export", cmd_export)
    p.add_argument("--model", type=Path, required=True,
                   help="model folder (models/<variant> or its student/)")
    p.add_argument("--out", type=Path, required=True, help="folder to write (replaced as a whole)")
    p.add_argument("--results", type=Path, default=Path("results/metrics"),
                   help="metrics folder; the variant's results go into the model card "
                   "(default: results/metrics)")

    p = add("dvc-commit", cmd_dvc_commit)
    p.add_argument("--stage", default="tables", help="DVC stage to record (default: tables)")
    p.add_argument("--params", type=Path, default=Path("params.yaml"),
                   help="the settings file the run used; dvc.lock records it (default: params.yaml)")
    p.add_argument("--params-only", action="store_true",
                   help="only rewrite the stage's params section of dvc.lock from --params")
    return parser


def run_command(argv: Sequence[str]) -> None:
    """Run one ``rsdino`` command line here, letting its errors propagate (each task of a SLURM job)."""
    args = build_parser().parse_args(list(argv))
    args.func(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rsdino`` console script."""
    import os

    from rsdino.launch.warm import SOCKET_ENV

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # a global flag, accepted anywhere on the line
    step_argv = [arg for arg in argv if arg != "--debug"]
    if os.environ.get(SOCKET_ENV) and step_argv[:1] != ["serve"]:  # a warm server is up: it runs the step
        from rsdino.launch.warm import run_warm

        code = run_warm(argv)
        if code is not None:
            return code
    argv = step_argv
    args = build_parser().parse_args(argv)
    from rsdino.progress import configure_logging

    configure_logging(quiet=getattr(args, "quiet", False))  # warnings: held below, one place
    from rsdino.errors import held_warnings

    with held_warnings() as held:  # printed after success; with the traceback in the log on failure
        try:
            args.func(args)
        except Exception as error:  # noqa: BLE001 - the one error boundary (rsdino.errors)
            return report_error(args.command, argv, error, debug=debug, warnings=held.lines())
    for line in held.lines():
        print(f"rsdino {args.command}: warning: {line}", file=sys.stderr)
    return 0


def report_error(step: str, argv: list[str], error: Exception, *, debug: bool = False,
                 warnings: Sequence[str] = ()) -> int:
    """Report a failure the user can fix as one line (exit 2); re-raise anything else (a bug)."""
    import traceback

    from rsdino.errors import as_user_error, user_line, write_debug_log

    user = as_user_error(error)
    if user is None:
        for line in warnings:
            print(f"rsdino {step}: warning: {line}", file=sys.stderr)
        raise error
    trace = "".join(f"warning: {line}\n" for line in warnings) + "".join(traceback.format_exception(error))
    write_debug_log(step, argv, trace)
    if debug:
        print(trace, end="", file=sys.stderr)
    print(user_line(step, user), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
