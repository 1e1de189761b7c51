"""``netflix-elt``: the command line of the pipeline and of its local stack."""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path

from . import contracts
from .config import Settings
from .stack import LocalStack, StackError

DESCRIPTION = """\
Snowflake-native ELT for MovieLens-format movie data.

Local stack (no cloud account needed):
  netflix-elt up        start the local S3 server and Snowflake emulator (state in .stack/)
  netflix-elt down      stop them (state is kept)
  netflix-elt status    show what is running and where
  netflix-elt reset     stop and delete all local state

Data and pipeline:
  netflix-elt generate  write synthetic MovieLens files (see generate --help)
  netflix-elt deploy    create or migrate the Snowflake objects (schemachange deploy of migrations/)
  netflix-elt upload    check landing files against the contracts and upload them to the stage's S3 location
  netflix-elt load      CALL RAW.LOAD_RAW_FILES: load new staged files into RAW
  netflix-elt transform dbt build of netflix_dbt: staging, dimensions and facts, marts, snapshot, tests
  netflix-elt docs      dbt docs of netflix_dbt (models, columns, lineage); --serve serves them on 127.0.0.1
  netflix-elt report    an HTML report (opens offline) of the marts and the pipeline's health
  netflix-elt status    the local stack, and what is staged, loaded and rejected
  netflix-elt run       all of it: start the stack, generate data if the landing directory is empty, deploy,
                        then one run of the Airflow DAG full_netflix_pipeline (upload >> load >> dbt)
  netflix-elt airflow   the Airflow UI on 127.0.0.1 with the DAG and connections to the local stack
  netflix-elt certify   certify the whole pipeline on your Snowflake account in a throwaway database
                        (--local: on the local stack)

Settings come from the environment or a .env file; see netflix_elt/config.py.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="netflix-elt", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("up", help="start the local stack")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("down", help="stop the local stack (keeps its state)")
    p.set_defaults(func=cmd_down)
    p = sub.add_parser("status", help="show the local stack, and what is staged, loaded and rejected")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("reset", help="stop the local stack and delete its state")
    p.set_defaults(func=cmd_reset)
    p = sub.add_parser("env", help="print shell exports that point clients at the local stack")
    p.set_defaults(func=cmd_env)

    from uploader import register_cli as register_upload

    from . import generate

    generate.register_cli(sub)
    register_upload(sub)

    p = sub.add_parser(
        "deploy",
        help="create or migrate the Snowflake objects with schemachange",
        description="Run `schemachange deploy` on migrations/ against the target (the local emulator by default, a "
        "real account when SNOWFLAKE_ACCOUNT is set). Re-running it applies nothing new.",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would be applied")
    p.set_defaults(func=cmd_deploy)

    from . import transform

    p = sub.add_parser(
        "load",
        help="CALL RAW.LOAD_RAW_FILES: load new staged files into RAW",
        description=(
            "Load staged files that are not loaded yet into their RAW tables and print the summary. Exit status: 0\n"
            "loaded (rejected rows, if any, are in RAW.LOAD_REJECTS); 1 a file failed; 3 files were held by another\n"
            "CALL or not completely staged (WAITING): run the load again later."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="*", help="stage keys to load (default: every new staged file)")
    p.add_argument(
        "--full-refresh",
        action="store_true",
        help="empty the datasets' RAW tables, tracking and rejects and load every staged file again "
        "(CALL RAW.FULL_REFRESH_RAW_FILES: administrative roles only, e.g. SNOWFLAKE_ROLE=SYSADMIN)",
    )
    p.add_argument("--dataset", action="append", choices=contracts.DATASETS, help="only these datasets")
    p.add_argument("--dry-run", action="store_true", help="say what would be loaded, change nothing")
    p.add_argument("--json", action="store_true", help="print the procedure's JSON result")
    p.set_defaults(func=cmd_load)
    transform.register_cli(sub)

    from . import docs

    docs.register_cli(sub)

    from . import orchestrate

    orchestrate.register_cli(sub)

    from . import report

    report.register_cli(sub)

    from . import certify

    certify.register_cli(sub)

    p = sub.add_parser(
        "run",
        help="run the whole pipeline on the local stack",
        description="Start the local stack, generate data into the landing directory if it is empty, deploy the "
        "Snowflake objects, then run the Airflow DAG full_netflix_pipeline once (upload the landing files, CALL "
        "RAW.LOAD_RAW_FILES, dbt build task by task) and print a summary. Running it again loads only what is new. "
        "--direct runs the same steps without Airflow.",
    )
    p.add_argument(
        "--landing", type=Path, default=Path("data/landing"), help="landing directory (default: %(default)s)"
    )
    p.add_argument("--scale", default="small", help="generator scale when the landing directory is empty")
    p.add_argument("--seed", type=int, default=42, help="generator seed (default: %(default)s)")
    p.add_argument("--direct", action="store_true", help="run upload, load and dbt build directly, not through Airflow")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json-report", type=Path, help="also write the steps, their times and the outcome to this file")
    p.set_defaults(func=cmd_run)

    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except StackError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # Snowflake refused (a login, a privilege): its message, not a traceback
        if not type(e).__module__.startswith("snowflake.connector"):
            raise
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1


def cmd_up(_args: argparse.Namespace) -> int:
    stack = LocalStack()
    t0 = time.monotonic()
    stack.up()
    print(f"local stack is up ({time.monotonic() - t0:.1f} s)")
    _print_status(stack)
    return 0


def cmd_down(_args: argparse.Namespace) -> int:
    stopped = LocalStack().down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def cmd_status(_args: argparse.Namespace) -> int:
    from . import pipeline

    if pipeline.is_local():
        stack = LocalStack()
        _print_status(stack)
        if not all(s["running"] for s in stack.status().values()):
            return 0
    try:
        st = pipeline.status()
    except Exception as e:
        print(f"pipeline status unavailable: {str(e).splitlines()[0]} (run `netflix-elt deploy` first?)")
        return 0
    staged = st["staged_objects"]
    print(f"\nstaged objects: {staged if staged is not None else 'not listed (this role may not use the stage)'}")
    print(
        f"  {'dataset':<14} {'files':>6} {'loaded':>7} {'partial':>8} {'failed':>7} {'dup':>5} {'rows loaded':>13} {'rejected':>9}"
    )
    for d in st["datasets"]:
        print(
            f"  {d['dataset']:<14} {d['files']:>6} {d['loaded']:>7} {d['partial']:>8} {d['failed']:>7} "
            f"{d['duplicate']:>5} {d['rows_loaded']:>13,} {d['rows_rejected']:>9,}"
        )
    return 0


def cmd_reset(_args: argparse.Namespace) -> int:
    stack = LocalStack()
    stack.reset()
    print(f"local stack stopped and {stack.root} deleted")
    return 0


def cmd_env(_args: argparse.Namespace) -> int:
    for k, v in LocalStack().env().items():
        print(f"export {k}={v}")
    return 0


def _print_status(stack: LocalStack) -> None:
    for name, s in stack.status().items():
        state = "running" if s["running"] else "stopped"
        print(f"  {name:<10} {state:<8} 127.0.0.1:{s['port']:<6} pid {s['pid'] or '-':<8} log {s['log']}")


def cmd_deploy(args: argparse.Namespace) -> int:
    from . import pipeline

    if pipeline.is_local():
        LocalStack().up()
    proc = pipeline.deploy(dry_run=args.dry_run)
    return 0 if proc.returncode == 0 else 1


def cmd_load(args: argparse.Namespace) -> int:
    import json

    from . import pipeline

    if pipeline.is_local():
        LocalStack().up()
    summary = pipeline.load(args.files or None, args.full_refresh, args.dataset, args.dry_run)
    print(json.dumps(summary, indent=2) if args.json else pipeline.format_load_summary(summary))
    # WAITING: files held by another CALL or not completely staged; a later load picks them up
    return {"FAILED": 1, "WAITING": 3}.get(summary["status"], 0)


def cmd_run(args: argparse.Namespace) -> int:
    from . import generate, pipeline

    settings = Settings.from_env()
    stack = LocalStack(settings)
    steps: list[tuple[str, str, float]] = []

    t = time.monotonic()
    stack.up()
    steps.append(("start local stack", "S3 and Snowflake emulator on 127.0.0.1", time.monotonic() - t))

    landing: Path = args.landing
    t = time.monotonic()
    existing = sorted(p for p in landing.glob("*") if contracts.match_file_name(p.name)) if landing.exists() else []
    if not existing:
        generate.generate(landing, scale=args.scale, seed=args.seed)
        existing = sorted(p for p in landing.glob("*") if contracts.match_file_name(p.name))
        steps.append(("generate data", f"{len(existing)} files, scale {args.scale}", time.monotonic() - t))
    else:
        steps.append(("generate data", f"skipped: {len(existing)} files already in {landing}", 0.0))

    t = time.monotonic()
    proc = pipeline.deploy(settings, quiet=True)
    if proc.returncode != 0:
        print(proc.stdout + proc.stderr, file=sys.stderr)
        raise StackError("schemachange deploy failed (output above)")
    steps.append(("deploy (schemachange)", f"{pipeline.applied_scripts(proc)} scripts applied", time.monotonic() - t))

    if args.direct:
        summary, ok = _run_direct(settings, stack, landing, steps)
    else:
        summary, ok = _run_dag(settings, landing, steps, progress=not args.no_progress)

    if args.json_report:
        import json

        args.json_report.write_text(
            json.dumps(
                {
                    "mode": "direct" if args.direct else "dag",
                    "success": ok,
                    "steps": [{"step": n, "detail": d, "seconds": round(sec, 3)} for n, d, sec in steps],
                    "load_summary": summary,
                },
                indent=2,
                default=str,
            )
        )

    print()
    print("netflix-elt run")
    print("=" * 82)
    for name, detail, seconds in steps:
        print(f"  {name:<26} {seconds:7.1f} s   {detail}")
    print("-" * 82)
    print(f"  landing files: {landing.resolve()}")
    print(f"  stage:         {settings.stage_url} (S3 endpoint {settings.s3_endpoint})")
    print(f"  emulator:      127.0.0.1:{settings.snowflake_port}, database {settings.database}")
    print()
    if summary:
        print(textwrap.indent(pipeline.format_load_summary(summary), "  "))
        print()
    print(f"  {'RAW table':<22} {'rows':>12}")
    with pipeline.connect(settings) as conn:
        cur = conn.cursor()
        for c in contracts.CONTRACTS.values():
            cur.execute(f"SELECT COUNT(*) FROM {c.qualified_raw_table}")
            print(f"  {c.qualified_raw_table:<22} {cur.fetchone()[0]:>12,}")
        print()
        print(f"  {'mart':<36} {'rows':>12}")
        for mart in ("MOVIE_RATINGS", "GENRE_YEAR_POPULARITY", "USER_COHORTS", "MOVIE_TOP_GENOME_TAGS"):
            cur.execute(f"SELECT COUNT(*) FROM MARTS.MART_{mart}")
            print(f"  {'MARTS.MART_' + mart:<36} {cur.fetchone()[0]:>12,}")
    if ok:
        from . import report

        print(f"\n  report: {report.write_report(settings=settings).path.resolve()}")
    return 0 if ok else 1


def _run_direct(
    settings: Settings, stack: LocalStack, landing: Path, steps: list[tuple[str, str, float]]
) -> tuple[dict | None, bool]:
    """upload, CALL RAW.LOAD_RAW_FILES and dbt build, one after the other in this process."""
    from uploader import upload

    from . import pipeline, transform

    t = time.monotonic()
    report = upload(
        landing, bucket=settings.bucket, prefix=settings.prefix, s3_client=stack.s3_client(), progress=False
    )
    new = sum(1 for f in report.files if f.status == "uploaded")
    already = sum(1 for f in report.files if f.status == "already uploaded")
    steps.append(("upload to S3", f"{new} uploaded, {already} already there", time.monotonic() - t))

    t = time.monotonic()
    summary = pipeline.load(settings=settings)
    totals = summary["totals"]
    steps.append(
        (
            "load into RAW",
            f"{totals['loaded'] + totals['partially_loaded']} files, {totals['rows_loaded']:,} rows, "
            f"{totals['rows_rejected']:,} rejected",
            time.monotonic() - t,
        )
    )

    t = time.monotonic()
    built = transform.transform(quiet=True)
    counts = built["counts"]
    done = sum(n for by in counts.values() for st, n in by.items() if st in {"success", "pass"})
    steps.append(
        (
            "transform (dbt build)",
            f"{'SUCCESS' if built['success'] else 'FAILED'}: {done} models, snapshots and tests passed, "
            f"{len(built['failures'])} failed",
            time.monotonic() - t,
        )
    )
    if not built["success"]:
        print(textwrap.indent(transform.format_summary(built), "  "), file=sys.stderr)
    return summary, summary["status"] not in ("FAILED", "WAITING") and bool(built["success"])


def _run_dag(
    settings: Settings, landing: Path, steps: list[tuple[str, str, float]], progress: bool
) -> tuple[dict | None, bool]:
    """One run of the Airflow DAG full_netflix_pipeline (dag.test(): no scheduler needed)."""
    from . import orchestrate

    t = time.monotonic()
    env = orchestrate.airflow_env(settings, landing)
    orchestrate.ensure_metadata_db(env)
    orchestrate.ensure_manifest(env)
    steps.append(("prepare Airflow", f"metadata DB and dbt manifest in {env['AIRFLOW_HOME']}", time.monotonic() - t))

    result = orchestrate.run_dag(env, progress=progress)
    if result.import_errors:
        raise StackError(f"the DAG failed to import: {result.import_errors}")
    upload_task = result.tasks.get("upload_landed_files", {})
    load_task = result.tasks.get("run_db_raw_ingestion", {})
    dbt_tasks = {t: v for t, v in result.tasks.items() if t.startswith("netflix_dbt_run.")}
    keys = result.uploaded_keys or []
    steps.append(
        (
            "upload_landed_files",
            f"{upload_task.get('state', 'not run')}: {len(keys)} new object(s) staged",
            upload_task.get("seconds") or 0.0,
        )
    )
    summary = result.load_summary
    load_detail = load_task.get("state", "not run")
    if summary:
        totals = summary["totals"]
        load_detail += (
            f": {totals['loaded'] + totals['partially_loaded']} files, {totals['rows_loaded']:,} rows, "
            f"{totals['rows_rejected']:,} rejected"
        )
    steps.append(("run_db_raw_ingestion", load_detail, load_task.get("seconds") or 0.0))
    ok_dbt = sum(1 for v in dbt_tasks.values() if v["state"] == "success")
    steps.append(
        (
            "netflix_dbt_run",
            f"{ok_dbt} of {len(dbt_tasks)} dbt tasks succeeded (a build per model, source freshness, relationships)",
            result.group_seconds("netflix_dbt_run."),
        )
    )
    steps.append((f"DAG {orchestrate.DAG_ID}", f"{result.state.upper()}, run {result.run_id}", result.seconds))
    if not result.success:
        failed = ", ".join(f"{t} ({result.tasks[t]['state']})" for t in result.failed_tasks()[:8])
        print(f"DAG run {result.state}: {failed}; task log: {result.log}", file=sys.stderr)
    return summary, result.success


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
