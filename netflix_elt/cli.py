"""``netflix-elt``: the command line of the pipeline and of its local stack."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

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
  netflix-elt run       start the stack, generate data if the landing directory is empty, and run the pipeline

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
    p = sub.add_parser("status", help="show the local stack's services")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("reset", help="stop the local stack and delete its state")
    p.set_defaults(func=cmd_reset)
    p = sub.add_parser("env", help="print shell exports that point clients at the local stack")
    p.set_defaults(func=cmd_env)

    from . import generate

    generate.register_cli(sub)

    p = sub.add_parser(
        "run",
        help="run the whole pipeline on the local stack",
        description="Start the local stack, generate data into the landing directory if it is empty, upload the "
        "landing files to the stage's S3 location and check the emulator sees every one of them.",
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
    _print_status(LocalStack())
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


def cmd_run(args: argparse.Namespace) -> int:
    from . import generate

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
    uploaded, skipped = _upload(stack, settings, existing)
    steps.append(("upload to S3", f"{uploaded} uploaded, {skipped} already there", time.monotonic() - t))

    t = time.monotonic()
    staged = _list_stage(stack, settings)
    missing = {p.name for p in existing} - {row[0].rsplit("/", 1)[-1] for row in staged}
    steps.append(("check stage", f"{len(staged)} files visible through LIST @stage", time.monotonic() - t))

    print()
    print("netflix-elt run")
    print("=" * 72)
    for name, detail, seconds in steps:
        print(f"  {name:<20} {seconds:7.1f} s   {detail}")
    print("-" * 72)
    print(f"  landing files: {landing.resolve()}")
    print(f"  stage:         {settings.stage_url} (S3 endpoint {settings.s3_endpoint})")
    print(f"  emulator:      127.0.0.1:{settings.snowflake_port}, database {settings.database}")
    if missing:
        print(f"  NOT visible on the stage: {', '.join(sorted(missing))}")
        return 1
    print("  every landing file is staged and visible to Snowflake.")
    return 0


def _upload(stack: LocalStack, settings: Settings, files: list[Path]) -> tuple[int, int]:
    s3 = stack.s3_client()
    uploaded = skipped = 0
    for path in files:
        dataset = contracts.contract_for(path.name).contract.dataset
        key = f"{settings.prefix}{dataset}/{path.name}"
        try:
            head: dict[str, Any] = s3.head_object(Bucket=settings.bucket, Key=key)
            if head["ContentLength"] == path.stat().st_size:
                skipped += 1
                continue
        except s3.exceptions.ClientError:
            pass
        s3.upload_file(str(path), settings.bucket, key)
        uploaded += 1
    return uploaded, skipped


def _list_stage(stack: LocalStack, settings: Settings) -> list[tuple[Any, ...]]:
    with stack.connect(schema="PUBLIC") as conn:
        cur = conn.cursor()
        cur.execute(f"CREATE TEMPORARY STAGE IF NOT EXISTS LANDING_CHECK URL = '{settings.stage_url}'")
        cur.execute("LIST @LANDING_CHECK")
        return list(cur.fetchall())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
