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
  netflix-elt status    the local stack, and what is staged, loaded and rejected
  netflix-elt run       all of it: start the stack, generate data if the landing directory is empty, deploy,
                        upload, load, transform

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
        description="Load staged files that are not loaded yet into their RAW tables and print the summary.",
    )
    p.add_argument("files", nargs="*", help="stage keys to load (default: every new staged file)")
    p.add_argument("--full-refresh", action="store_true", help="empty RAW and reload every staged file")
    p.add_argument("--dataset", action="append", choices=contracts.DATASETS, help="only these datasets")
    p.add_argument("--dry-run", action="store_true", help="say what would be loaded, change nothing")
    p.add_argument("--json", action="store_true", help="print the procedure's JSON result")
    p.set_defaults(func=cmd_load)
    transform.register_cli(sub)

    p = sub.add_parser(
        "run",
        help="run the whole pipeline on the local stack",
        description="Start the local stack, generate data into the landing directory if it is empty, deploy the "
        "Snowflake objects, upload the landing files and load them into RAW, then print a summary. Running it "
        "again loads only what is new.",
    )
    p.add_argument(
        "--landing", type=Path, default=Path("data/landing"), help="landing directory (default: %(default)s)"
    )
    p.add_argument("--scale", default="small", help="generator scale when the landing directory is empty")
    p.add_argument("--seed", type=int, default=42, help="generator seed (default: %(default)s)")
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
    print(f"\nstaged objects: {st['staged_objects']}")
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
    return 1 if summary["status"] == "FAILED" else 0


def cmd_run(args: argparse.Namespace) -> int:
    from uploader import upload

    from . import generate, pipeline, transform

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

    print()
    print("netflix-elt run")
    print("=" * 78)
    for name, detail, seconds in steps:
        print(f"  {name:<22} {seconds:7.1f} s   {detail}")
    print("-" * 78)
    print(f"  landing files: {landing.resolve()}")
    print(f"  stage:         {settings.stage_url} (S3 endpoint {settings.s3_endpoint})")
    print(f"  emulator:      127.0.0.1:{settings.snowflake_port}, database {settings.database}")
    print()
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
    if not built["success"]:
        print()
        print(textwrap.indent(transform.format_summary(built), "  "))
    return 1 if summary["status"] == "FAILED" or not built["success"] else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
