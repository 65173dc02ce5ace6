"""The ``rsdino`` command: one subcommand per pipeline step.

Every Snakemake rule is one call of a subcommand below, and every subcommand runs on its own from
the shell (``rsdino <step> --help``). Settings come from ``--params`` (validated by
``rsdino.config``); every path is an argument. Errors in the user's input (settings, missing or
corrupt files) end with one line naming the file and the problem, and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rsdino.tracking import configure_offline_environment

configure_offline_environment()


class UserError(Exception):
    """A problem with the user's input; reported as one line, no traceback."""


def require(path: Path, what: str, hint: str = "") -> Path:
    """Return ``path`` if it exists, else raise a ``UserError`` naming it."""
    if not path.exists():
        raise UserError(f"{path}: {what} not found" + (f" ({hint})" if hint else ""))
    return path


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, default=Path("params.yaml"),
                        help="settings file (default: params.yaml)")
    parser.add_argument("--scale", default=None,
                        help="override the settings' scale (demo or full)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


# ------------------------------------------------------------------------------------ subcommands


def cmd_setup(args: argparse.Namespace) -> None:
    """Make the project's Snakemake profiles reachable by name and create the local DVC remote."""
    from rsdino.workflow_support import install_profiles, prepare_dvc_remote

    for line in install_profiles(Path(args.project).resolve(), force=args.force):
        print(line)
    print(prepare_dvc_remote(Path(args.project).resolve()))


def cmd_make_demo(args: argparse.Namespace) -> None:
    """Generate a dataset's demo archive with its registered fake-data generator (or its catalogued fake)."""
    from rsdino.config import load_params
    from rsdino.data.catalog import CATALOG, CATALOG_GENERATOR, make_fake
    from rsdino.data.fake import FAKE_GENERATORS

    params = load_params(args.params, args.scale)
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
    from rsdino.config import load_params
    from rsdino.data.download import download
    from rsdino.data.extract import extract_archives
    from rsdino.workflow_support import write_resolved

    params = load_params(args.params, args.scale)
    dataset = _dataset(params, args.dataset)
    source = dataset.source
    if source.url is None:
        raise UserError(f"{args.out}: dataset {args.dataset!r} must be downloaded by hand: {source.manual}")
    with _step(params, group=f"data:{args.dataset}", step="download", run_name=f"download {args.dataset}",
               params={"dataset": args.dataset, "url": source.url}) as tracker:
        archive = download(source.url, args.downloads, sha256=source.sha256, md5=source.md5,
                           filename=source.filename, base_dir=Path.cwd(), progress=not args.no_progress)
        extras = [download(extra.url, args.downloads, sha256=extra.sha256, md5=extra.md5,
                           filename=extra.filename, base_dir=Path.cwd(), progress=not args.no_progress)
                  for extra in source.extra]
        extract_archives([archive, *extras], args.out)
        resolved = write_resolved(params.resolved_for(dataset=args.dataset),
                                  args.out.with_name(args.out.name + ".params.yaml"))
        tracker.log_artifact(resolved)
        tracker.log_metrics({"archive_bytes": archive.stat().st_size})
    print(f"{args.dataset}: {archive} -> {args.out}")


def cmd_track(args: argparse.Namespace) -> None:
    """Add a downloaded dataset folder to DVC (and push it to the default remote)."""
    from rsdino.config import load_params
    from rsdino.workflow_support import dvc_track

    params = load_params(args.params, args.scale)
    require(args.path, "dataset folder", "run `rsdino download` first")
    print(dvc_track(args.path, remote=params.dvc.remote if params.dvc.push else None))


def cmd_prepare(args: argparse.Namespace) -> None:
    """Split a downloaded dataset (seeded, per its task: ``rsdino.data.registry``); compute band stats."""
    from rsdino.config import load_params
    from rsdino.data.registry import prepare_dataset
    from rsdino.workflow_support import write_resolved

    params = load_params(args.params, args.scale)
    dataset = _dataset(params, args.dataset)
    require(args.raw, "dataset folder", f"run `rsdino download --dataset {args.dataset}` first")
    with _step(params, group=f"data:{args.dataset}", step="prepare", run_name=f"prepare {args.dataset}",
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

    from rsdino.config import load_params
    from rsdino.data.registry import open_dataset
    from rsdino.data.version import data_version, data_version_tags
    from rsdino.evaluate.provenance import record_model_data_version
    from rsdino.tracking import NullTracker
    from rsdino.train.pretrain import run_pretraining
    from rsdino.workflow_support import write_resolved

    params = load_params(args.params, args.scale)
    variant = _variant(params, args.variant)
    dataset_cfg = params.datasets[variant.pretrain_data]
    require(args.raw, "dataset folder", f"run `rsdino download --dataset {variant.pretrain_data}` first")
    require(args.data, "prepared dataset folder", f"run `rsdino prepare --dataset {variant.pretrain_data}`")
    if (args.launcher or variant.launcher) == "submitit":
        _pretrain_on_slurm(args, variant)
        return
    _set_threads(args.threads)
    # Any task: scenes, series, S1/S2 pairs. Temporal views of dated single images (fMoW) draw one
    # date per global crop and one for the locals.
    crops = variant.crops
    train = open_dataset(dataset_cfg, args.raw, args.data, "train",
                         series=crops.n_global + 1 if crops.temporal else 0)
    main_rank = int(os.environ.get("RANK", "0")) == 0  # other ranks of a distributed job log nothing
    resolved = (write_resolved(params.resolved_for(variant=args.variant), args.out / "params.resolved.yaml")
                if main_rank else None)
    step = (_step(params, group=args.variant, step="pretrain", run_name=f"pretrain {args.variant}",
                  params={"method": variant.method, "backbone": variant.backbone,
                          "dataset": variant.pretrain_data, "epochs": variant.optim.epochs,
                          "batch_size": variant.optim.batch_size, "lr": variant.optim.lr,
                          "out_dim": variant.head.out_dim})
            if main_rank else nullcontext(NullTracker()))
    with step as tracker:
        if resolved is not None:
            tracker.log_artifact(resolved)
        model = run_pretraining(args.variant, variant, train, bands=dataset_cfg.bands,
                                rgb_bands=dataset_cfg.rgb_bands, mean=train.stats["mean"],
                                std=train.stats["std"], out_dir=args.out, tracker=tracker,
                                device=args.device, progress=not args.no_progress, gsd=dataset_cfg.gsd)
        if main_rank:  # the data the weights came from, hashed after training (no rank waits for it)
            version = {"dataset": variant.pretrain_data, **data_version(args.raw)}
            record_model_data_version(args.out, version)
            tracker.set_tags(data_version_tags("data_version", variant.pretrain_data, version))
    if main_rank:
        print(f"{args.variant}: {model}")


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
        run_on_slurm(argv, variant.resources, options, job_name=f"rsdino-pretrain-{args.variant}")
    except SlurmJobError as error:
        raise UserError(str(error)) from None
    print(f"{args.variant}: {Path(args.out) / 'model.safetensors'}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    """Evaluate one pretrained variant with one evaluation protocol; write its metrics file."""
    from rsdino.config import load_params
    from rsdino.evaluate.run import run_evaluation
    from rsdino.models.backbones import backbone_folder

    params = load_params(args.params, args.scale)
    if args.evaluation not in params.evaluations:
        raise UserError(f"{args.params}: evaluations: no evaluation {args.evaluation!r} "
                        f"(defined: {', '.join(params.evaluations)})")
    evaluation = params.evaluations[args.evaluation]
    variant = _variant(params, args.variant)
    _set_threads(args.threads)
    branch = getattr(evaluation, "backbone", "teacher")
    require(backbone_folder(args.model, branch) / "model.safetensors", f"pretrained {branch} backbone",
            f"run `rsdino pretrain --variant {args.variant}` first")
    require(args.raw, "dataset folder", f"run `rsdino download --dataset {evaluation.dataset}` first")
    require(args.data, "prepared dataset folder", f"run `rsdino prepare --dataset {evaluation.dataset}`")
    with _step(params, group=args.variant, step=evaluation.protocol,
               run_name=f"{args.evaluation} {args.variant}",
               params={"method": variant.method, "backbone": variant.backbone,
                       "dataset": evaluation.dataset, "evaluation": args.evaluation,
                       **{k: v for k, v in evaluation.model_dump().items()
                          if k not in {"variants", "dataset", "protocol"}}}) as tracker:
        result = run_evaluation(args.evaluation, evaluation, args.variant, variant, model_dir=args.model,
                                raw_dir=args.raw, prepared_dir=args.data, out=args.out, params=params,
                                tracker=tracker, device=args.device, progress=not args.no_progress)
    print(f"{args.evaluation} {args.variant}: {result['metrics']}")


def cmd_report(args: argparse.Namespace) -> None:
    """Build the results tables (Markdown, CSV, coverage of the published numbers), summary and plots."""
    import json

    from rsdino.config import load_params
    from rsdino.report.coverage import COVERAGE_FILE, coverage_lines
    from rsdino.report.plots import TRAINING_CURVES, plot_ours_vs_published, plot_training_curves
    from rsdino.report.tables import build_tables, write_summary
    from rsdino.workflow_support import write_resolved

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
            written.append(curves)
    for path in written:
        print(path)
    for line in coverage_lines(json.loads((args.out / COVERAGE_FILE).read_text(encoding="utf-8"))):
        print(line)


def cmd_serve(args: argparse.Namespace) -> None:
    """Serve warm starts: hold torch, timm and MLflow imported and fork each step sent to the socket."""
    from rsdino.launch.warm import serve

    serve(args.socket)


def cmd_dvc_commit(args: argparse.Namespace) -> None:
    """Record the current outputs of a DVC stage in dvc.lock (after Snakemake built them)."""
    from rsdino.workflow_support import dvc_commit

    print(dvc_commit(args.stage))


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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``rsdino`` and all its subcommands."""
    parser = argparse.ArgumentParser(
        prog="rsdino", description="Reproducible DINO-family pretraining on remote-sensing imagery. "
        "Each subcommand is one pipeline step; `snakemake --profile local all` runs them all.")
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
    p.add_argument("--dataset", required=True, help="dataset name in params.yaml")
    p.add_argument("--out", type=Path, required=True, help="archive to write")

    p = add("download", cmd_download)
    _common(p)
    p.add_argument("--dataset", required=True, help="dataset name in params.yaml")
    p.add_argument("--downloads", type=Path, default=Path("data/downloads"), help="archive folder")
    p.add_argument("--out", type=Path, required=True, help="folder to extract the dataset into")

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
    p.add_argument("--out", type=Path, required=True, help="model folder to write")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
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

    p = add("evaluate", cmd_evaluate)
    _common(p)
    p.add_argument("--evaluation", required=True, help="evaluation name in params.yaml")
    p.add_argument("--variant", required=True, help="variant name in params.yaml")
    p.add_argument("--model", type=Path, required=True,
                   help="the variant's pretrained model folder (teacher backbone; the student's in student/)")
    p.add_argument("--raw", type=Path, required=True, help="downloaded evaluation dataset folder")
    p.add_argument("--data", type=Path, required=True, help="prepared evaluation dataset folder")
    p.add_argument("--out", type=Path, required=True, help="metrics JSON file to write")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
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

    p = add("dvc-commit", cmd_dvc_commit)
    p.add_argument("--stage", default="tables", help="DVC stage to record (default: tables)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rsdino`` console script."""
    import os

    from rsdino.launch.warm import SOCKET_ENV

    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get(SOCKET_ENV) and argv[:1] != ["serve"]:  # a warm server is up: let it run the step
        from rsdino.launch.warm import run_warm

        code = run_warm(argv)
        if code is not None:
            return code
    from rsdino.config import ParamsError
    from rsdino.data.bands import BandMismatchError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (UserError, ParamsError, BandMismatchError) as error:
        print(f"rsdino {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, FileExistsError) as error:
        print(f"rsdino {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
