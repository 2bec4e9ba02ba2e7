"""`s3ft` command line: `s3ft run CONFIG [--set key=value ...]`, `s3ft validate CONFIG`, `s3ft preview CONFIG`,
`s3ft judge-check CONFIG`, `s3ft export RUN_DIR --arm ARM OUT`, `s3ft tracking-server [--root runs --port 5000]`."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from flows.environment import check_before_work, default_mirror, prepare_environment, reexec_with_preload
from flows.interrupts import interrupted, terminate_like_ctrl_c
from tasks.core.config import ExperimentConfig
from tasks.core.config_file import load_config
from tasks.core.errors import ConfigError, InputError, disk_full


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="s3ft", description="Selective Self-to-Supervised Fine-Tuning experiments")
    sub = p.add_subparsers(dest="command", required=True)
    for name, help_text in (("run", "run an experiment end to end"), ("validate", "check a config and print it")):
        c = sub.add_parser(name, help=help_text)
        c.add_argument("config", type=Path, help="experiment YAML, e.g. configs/quickstart.yaml")
        c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set training.learning_rate=1e-4 (repeatable)")
        c.add_argument("--seeds", type=int, metavar="N", help="train each arm with N seeds (training.seed, +1, ...) "
                       "and report mean ± stderr across seeds; generations are shared")
    c = sub.add_parser("preview", help="the first rendered prompts and gold answers, token lengths against the "
                       "caps, and the judge's verdict on every gold answer (no model is loaded)")
    c.add_argument("config", type=Path)
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    c.add_argument("-n", type=int, default=5, help="prompts to show (default 5)")
    c.set_defaults(seeds=None)
    c = sub.add_parser("export", help="one arm of a finished run as a ready-to-serve model with a model card")
    c.add_argument("run_dir", type=Path, help="the run folder `s3ft run` printed (runs/<name>/<timestamp>)")
    c.add_argument("out", type=Path, help="a new folder to write")
    c.add_argument("--arm", default="s3ft")
    c.add_argument("--seed", type=int, default=None, help="the training seed, in a run with several")
    kind = c.add_mutually_exclusive_group()
    kind.add_argument("--merged", dest="kind", action="store_const", const="merged", help="merged model (default)")
    kind.add_argument("--adapter", dest="kind", action="store_const", const="adapter", help="the LoRA adapter")
    c.set_defaults(kind="merged")
    c = sub.add_parser("judge-check", help="agreement of the QA judge (normalized match, then LLM) with "
                       "the labelled cases in tests/data/qa_judge_cases.jsonl")
    c.add_argument("config", type=Path, help="config naming the judge model, e.g. configs/nq_quickstart.yaml")
    c.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    c.add_argument("--cases", type=Path, default=None, help="a JSONL of labelled cases (default: the tests' set)")
    c.set_defaults(seeds=None)
    c = sub.add_parser("tracking-server", help="serve MLflow (`mlflow server`) over output_dir's runs, with "
                       "artifacts proxied over HTTP; flows log to it with MLFLOW_TRACKING_URI=http://HOST:PORT")
    c.add_argument("--root", type=Path, default=Path("runs"), help="the output_dir whose mlflow.db it serves")
    c.add_argument("--port", type=int, default=5000)
    c.add_argument("--host", default="127.0.0.1")
    return p


def fail(err: InputError) -> int:
    """One line per problem on stderr; exit code 2 for a bad command line or config, 1 for the rest."""
    for line in str(err).splitlines():
        print(f"s3ft: error: {line}", file=sys.stderr)
    return 2 if isinstance(err, ConfigError) else 1


def read_config(args: argparse.Namespace) -> ExperimentConfig:
    """The validated, frozen config of a command (read once per process)."""
    if args.seeds is not None and args.seeds < 1:
        raise ConfigError(f"--seeds {args.seeds}: must be at least 1. Fix: e.g. --seeds 3")
    cfg = load_config(args.config, args.overrides)
    return cfg.with_seed_count(args.seeds) if args.seeds is not None else cfg


def _print_summary(summary: dict, cfg: ExperimentConfig) -> None:
    print(Path(summary["report"]["markdown"]).read_text())
    print(f"generations performed: {summary['generations_performed']}; "
          f"cache hits: {sum(s['cached'] for s in summary['stages'])}/{len(summary['stages'])} stages; "
          f"wall {summary['wall_seconds']:.0f} s")
    print(f"report: {summary['report']['markdown']} and {summary['report']['plot']}")
    print(f"summary: {Path(summary['run_dir']) / 'summary.json'}")
    print(f"MLflow parent run {summary['mlflow_run_id']} (tracking URI {cfg.tracking_uri()})")


def _execute(args: argparse.Namespace, cfg: ExperimentConfig) -> int:
    if args.command == "judge-check":
        from flows.judge_check import DEFAULT_CASES, run_check

        print(json.dumps(run_check(cfg, args.cases or DEFAULT_CASES), indent=1))
        return 0
    from flows.experiment import experiment  # Prefect reads its settings at import

    _print_summary(experiment(config=cfg, config_path=str(args.config)), cfg)
    return 0


def internal_error(err: Exception) -> int:
    """Not an input problem: one line that says it is a bug, with the traceback in a file (exit code 70)."""
    import tempfile
    import traceback

    fd, path = tempfile.mkstemp(prefix="s3ft-crash-", suffix=".log")
    with os.fdopen(fd, "w") as log:
        log.write("".join(traceback.format_exception(err)))
    message = " ".join(str(err).split())[:300]
    print(f"s3ft: error: internal error (a bug in s3ft, not your input): {type(err).__name__}: {message}; "
          f"traceback in {path}; please report it to the s3ft maintainers with that file", file=sys.stderr)
    return 70


def main(argv: list[str] | None = None) -> int:
    """Every error ends here as one `s3ft: error:` line: an InputError with its fix, a signal (exit 130/143), a
    lost server, or a bug (exit 70)."""
    terminate_like_ctrl_c()
    try:
        return _main(argv)
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (flows/interrupts.py)
        line, code = interrupted(err)
        print(f"s3ft: error: {line}", file=sys.stderr)
        return code
    except InputError as err:
        return fail(err)
    except Exception as err:  # noqa: BLE001 - the boundary: a bug is reported, not dumped
        from flows.services import lost_service

        # outside a stage (the report, MLflow's store, Prefect's records) a full disk is still the operator's
        known = lost_service(err) or disk_full(err, Path.cwd())
        return fail(known) if known is not None else internal_error(err)


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    default_mirror()  # before a re-exec: the child inherits it
    if args.command == "tracking-server":
        from flows.services import serve_tracking

        serve_tracking(args.root, args.port, args.host)
    if args.command == "export":  # reads a finished run, not a config
        from flows.export import export

        try:
            out = export(args.run_dir, args.arm, args.out, args.kind, args.seed)
        except InputError as err:
            return fail(err)
        print(f"exported {args.arm} ({args.kind}) to {out}")
        return 0
    if args.command not in ("validate", "preview"):
        reexec_with_preload(argv)  # before reading the config: the process that runs it reads it, once
    try:
        cfg = read_config(args)
        if args.command == "validate":
            print(json.dumps(cfg.model_dump(mode="json"), indent=1))
            return 0
        if args.command == "preview":
            from flows.preview import preview

            print(preview(cfg, args.n))
            return 0
        check_before_work(cfg)
        if args.command == "run":
            from flows.preview import check_gold

            check_gold(cfg)  # your own data: the judge must accept gold before any compute
    except InputError as err:
        return fail(err)
    prepare_environment(cfg)
    try:
        if args.command == "run":
            from flows.prefect_server import start_temporary_server
            from flows.services import check_services

            check_services(cfg)
            start_temporary_server()  # out of Ctrl-C's reach (flows/prefect_server.py)
        return _execute(args, cfg)
    except InputError as err:  # bad data, model, cache entry: one clear line; finished stages stay cached
        return fail(err)


if __name__ == "__main__":
    sys.exit(main())
