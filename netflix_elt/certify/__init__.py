"""``netflix-elt certify``: certify the whole pipeline on a Snowflake account and S3 bucket, in a throwaway database.

    netflix-elt certify            # on the account in SNOWFLAKE_ACCOUNT (skips, exit 0, when it is not set)
    netflix-elt certify --local    # the same code on the local stack (the emulator and the local S3 server)
    netflix-elt certify --keep     # keep the database and the S3 prefix afterwards, to look at them
    netflix-elt certify --recheck NETFLIX_CERTIFY_...   # the checks again on a kept database, then drop it

The tests check the pipeline on the local emulator; this command checks the same invariants on the real thing, so
what the emulator does not reproduce shows up there. A run deploys the migrations into a database of its own
(``NETFLIX_CERTIFY_<utc time>_<random>``) with its stage on a prefix of its own, loads a small generated dataset
through the DAG's load task and through ``netflix-elt load``, runs ``dbt build``, checks the results against a
computation in Python, prints a table (check, result, detail), and drops the database and deletes the prefix, also
after a failure or Ctrl-C. Exit code: 0 every check passed (or skipped without an account), 1 a check failed, 2 a
setting is missing, 130 interrupted. See `netflix_elt.certify.run` for the steps and
`netflix_elt.certify.checks` for the checks.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from ..config import LOCAL_ACCOUNT, Settings, load_dotenv_file
from ..stack import LocalStack, StackError
from .run import (
    Certification,
    Check,
    StepFailed,
    Target,
    environment,
    make_workdir,
    missing_account_settings,
    new_run_id,
    remove_workdir,
    run_id_of,
)

SKIPPED = (
    "certify: skipped: SNOWFLAKE_ACCOUNT is not set. To certify the pipeline on your account, set SNOWFLAKE_ACCOUNT, "
    "SNOWFLAKE_USER, SNOWFLAKE_PASSWORD (or SNOWFLAKE_PRIVATE_KEY_PATH), SNOWFLAKE_ROLE, SNOWFLAKE_WAREHOUSE, "
    "NETFLIX_ELT_BUCKET and NETFLIX_ELT_STORAGE_INTEGRATION (README: Certify on your account); "
    "`netflix-elt certify --local` certifies it on the local stack."
)
NOT_RUN = "not run: an earlier step failed"


def account_given() -> bool:
    load_dotenv_file()
    return os.environ.get("SNOWFLAKE_ACCOUNT", "") not in ("", LOCAL_ACCOUNT)


def say(message: str) -> None:
    print(f"certify: {message}", flush=True)


def certify(local: bool = False, keep: bool = False, recheck: str | None = None) -> int:
    """Run a certification (see the module docstring) and print its table; returns the exit code."""
    if not local and not account_given():
        print(SKIPPED)
        return 0
    if not local and (missing := missing_account_settings()):
        print(f"certify: cannot start on account {os.environ['SNOWFLAKE_ACCOUNT']}: set " + "; ".join(missing))
        return 2
    try:
        run_id = run_id_of(recheck) if recheck else new_run_id()
    except StepFailed as e:
        print(f"certify: {e}")
        return 2
    workdir = make_workdir()
    target = Target(local, run_id, Settings.from_env(), workdir)
    cert = Certification(target, say, keep=keep)
    interrupted = False
    try:
        with environment(target.environment()):
            try:
                _run(cert, recheck=recheck is not None)
            except StepFailed:
                cert.checks += cert.checks_after
                cert.checks.append(Check("invariant checks", None, NOT_RUN))
            except KeyboardInterrupt:
                interrupted = True
                cert.checks += cert.checks_after
                cert.checks.append(Check("interrupted", False, f"stopped by Ctrl-C during: {cert.current}"))
            finally:
                cert.clean_up()
    finally:
        remove_workdir(workdir)
    print(format_table(cert))
    if interrupted:
        return 130
    return 0 if all(c.ok for c in cert.checks) else 1


def _run(cert: Certification, recheck: bool) -> None:
    """The steps, then the checks (a step that fails raises StepFailed)."""
    from . import checks
    from . import dataset as data

    target = cert.target
    if target.local:
        cert.step("start the local stack", "see `netflix-elt status` and .stack/logs", _start_stack(target))
    cert.step("generate the dataset", "", lambda: _generate(cert, data))
    if not recheck:
        cert.step(
            "create the database",
            "the role (SNOWFLAKE_ROLE) needs CREATE DATABASE on the account",
            cert.create_database,
        )
        cert.step(
            "deploy (schemachange)",
            "the role needs CREATE WAREHOUSE (or usage on SNOWFLAKE_WAREHOUSE), CREATE ROLE and MANAGE GRANTS, and "
            "usage on the storage integration (README: Deploying to a real Snowflake account)",
            cert.deploy,
        )
        cert.step(
            "upload: snapshot, ratings.csv in parts",
            "the AWS credentials need s3:PutObject, s3:GetObject and s3:ListBucket on the bucket",
            cert.upload_snapshot,
        )
        cert.step(
            "load: the DAG's task run_db_raw_ingestion",
            "the storage integration must allow reading the prefix (STORAGE_ALLOWED_LOCATIONS); "
            f"the task's log: {target.workdir / 'dag-load.log'} (deleted at the end; use --keep)",
            cert.dag_load,
        )
        cert.step("upload: daily files and a duplicate", "", cert.upload_daily)
        cert.step("load: netflix-elt load", "", cert.cli_load)
        cert.step("dbt build", "the role needs to create tables and views in the database", cert.dbt_build)
    cert.checks += cert.checks_after
    cert.say("checking ...")
    cert.checks += checks.verify(cert)


def _start_stack(target: Target) -> Callable[[], str]:
    def start() -> str:
        stack = LocalStack(target.settings)
        try:
            stack.up()
        except StackError as e:
            raise StepFailed(str(e).splitlines()[0]) from e
        return f"emulator on 127.0.0.1:{stack.snowflake.port}, S3 on 127.0.0.1:{stack.s3.port}"

    return start


def _generate(cert: Certification, data: Any) -> str:
    ds = data.build(cert.target.workdir / "dataset")
    cert.loads["dataset"] = ds
    bad = sum(len(f.bad_lines) for f in ds.files)
    return f"{len(ds.files)} files, {sum(f.rows_parsed for f in ds.files):,} rows, {bad} bad rows"


def format_table(cert: Certification) -> str:
    target = cert.target
    where = (
        f"the local stack (emulator on 127.0.0.1:{target.settings.snowflake_port})"
        if target.local
        else f"account {os.environ.get('SNOWFLAKE_ACCOUNT')} as {os.environ.get('SNOWFLAKE_USER')}, role "
        f"{os.environ.get('SNOWFLAKE_ROLE')}"
    )
    width = max(len(c.name) for c in cert.checks)
    lines = [
        "",
        f"netflix-elt certify on {where}",
        f"database {target.database}, stage {target.stage_url}",
        "",
        f"  {'check':<{width}}  result  detail",
        f"  {'-' * width}  ------  {'-' * 40}",
    ]
    lines += [f"  {c.name:<{width}}  {c.result:<6}  {c.detail}" for c in cert.checks]
    failed = [c for c in cert.checks if c.ok is False]
    lines.append("")
    if failed:
        lines.append(f"FAILED: {len(failed)} of {len(cert.checks)} checks failed ({', '.join(c.name for c in failed)})")
    elif any(c.ok is None for c in cert.checks):
        lines.append("FAILED: not every check ran")
    else:
        lines.append(f"PASSED: all {len(cert.checks)} checks")
    return "\n".join(lines)


def register_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``certify`` subcommand."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "certify",
        help="certify the whole pipeline on your Snowflake account (or --local) in a throwaway database",
        description=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--local", action="store_true", help="certify on the local stack instead of SNOWFLAKE_ACCOUNT")
    p.add_argument("--keep", action="store_true", help="keep the database and the S3 prefix at the end")
    p.add_argument(
        "--recheck",
        metavar="DATABASE",
        help="run the checks again on a database kept by --keep (then drop it, unless --keep)",
    )
    p.set_defaults(func=lambda args: certify(local=args.local, keep=args.keep, recheck=args.recheck))
    return p


__all__ = ["SKIPPED", "certify", "format_table", "register_cli"]
