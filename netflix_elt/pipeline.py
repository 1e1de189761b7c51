"""Pipeline steps as the CLI and the DAG run them: deploy (schemachange), load (CALL the procedure), status.

Targets: the local stack by default; a real Snowflake account when ``SNOWFLAKE_ACCOUNT`` is set to anything but
``emulator``. Credentials: ``SNOWFLAKE_USER`` with ``SNOWFLAKE_PASSWORD``, or a key pair with
``SNOWFLAKE_PRIVATE_KEY_PATH`` (and ``SNOWFLAKE_PRIVATE_KEY_PASSPHRASE`` for an encrypted key), for both targets (the
local stack defaults to its generated administrator's password).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import contracts
from .config import LOCAL_ACCOUNT, Settings
from .stack import LocalStack, StackError

REPO = Path(__file__).resolve().parent.parent
MIGRATIONS = REPO / "migrations"


def is_local() -> bool:
    return os.environ.get("SNOWFLAKE_ACCOUNT", LOCAL_ACCOUNT) in ("", LOCAL_ACCOUNT)


def target_env(settings: Settings | None = None) -> dict[str, str]:
    """Environment for schemachange and dbt: the local stack's, or the caller's own for a real account."""
    settings = settings or Settings.from_env()
    env = dict(os.environ)
    if is_local():
        env.update(LocalStack(settings).env())
    env.setdefault("SNOWFLAKE_DATABASE", settings.database)
    env.setdefault("SNOWFLAKE_WAREHOUSE", settings.warehouse)
    env.setdefault("NETFLIX_ELT_STAGE_URL", settings.stage_url)
    env.setdefault("SNOWFLAKE_NETWORK_TIMEOUT", "600")
    if key := env.get("SNOWFLAKE_PRIVATE_KEY_PATH"):
        # schemachange's names for the key pair (it reads the old ones too, with a deprecation warning)
        env.setdefault("SNOWFLAKE_PRIVATE_KEY_FILE", key)
        env.setdefault("SNOWFLAKE_AUTHENTICATOR", "snowflake_jwt")
        if passphrase := env.get("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"):
            env.setdefault("SNOWFLAKE_PRIVATE_KEY_FILE_PWD", passphrase)
    return env


@contextmanager
def connect(settings: Settings | None = None, **overrides: Any) -> Iterator[Any]:
    """A connector connection to the target (local emulator or real account), schema RAW, with AUTOCOMMIT on
    whatever the account's or user's default (a CALL in a session with AUTOCOMMIT off fails on Snowflake when the
    procedure's statements begin a transaction)."""
    settings = settings or Settings.from_env()
    overrides = {"autocommit": True, **overrides}
    if is_local():
        conn = LocalStack(settings).connect(schema="RAW", **overrides)
    else:
        import snowflake.connector

        params: dict[str, Any] = {
            "account": os.environ["SNOWFLAKE_ACCOUNT"],
            "user": os.environ["SNOWFLAKE_USER"],
            "database": settings.database,
            "schema": "RAW",
            "warehouse": settings.warehouse,
            "network_timeout": settings.snowflake_timeout,
        }
        if role := os.environ.get("SNOWFLAKE_ROLE"):
            params["role"] = role
        if key := os.environ.get("SNOWFLAKE_PRIVATE_KEY_PATH"):
            params["private_key_file"] = key
            if passphrase := os.environ.get("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"):
                params["private_key_file_pwd"] = passphrase
        else:
            params["password"] = os.environ.get("SNOWFLAKE_PASSWORD", "")
        params.update(overrides)
        conn = snowflake.connector.connect(**params)
    try:
        yield conn
    finally:
        conn.close()


def deploy(
    settings: Settings | None = None, dry_run: bool = False, quiet: bool = False, root: Path = MIGRATIONS
) -> subprocess.CompletedProcess[str]:
    """Run ``schemachange deploy`` with the project's configuration against the target (``root``: the folder of
    change scripts, normally migrations/)."""
    settings = settings or Settings.from_env()
    env = target_env(settings)
    # the role schemachange deploys as (the session's: SNOWFLAKE_ROLE, or the user's default role), which V1.6.0 and
    # the procedures' scripts make inherit the procedures' owner role, so that the next deploy may replace them
    with connect(settings) as conn:  # locally, also creates the database, where schemachange keeps its history
        cur = conn.cursor()
        cur.execute("SELECT CURRENT_ROLE()")
        env["NETFLIX_ELT_DEPLOY_ROLE"] = str(cur.fetchone()[0])
    argv = [
        str(Path(sys.executable).parent / "schemachange"),
        "deploy",
        "--config-folder",
        str(MIGRATIONS),
        "--schemachange-root-folder",
        str(root),
        "--schemachange-modules-folder",
        str(REPO),
    ]
    if dry_run:
        argv.append("--schemachange-dry-run")
    proc = subprocess.run(argv, env=env, cwd=REPO, capture_output=True, text=True)
    if not quiet:
        sys.stdout.write(_schemachange_lines(proc.stdout + proc.stderr))
    return proc


def _schemachange_lines(output: str) -> str:
    """The lines of schemachange's log that say what happened."""
    import re

    keep = []
    for line in output.splitlines():
        plain = re.sub(r"\x1b\[[0-9;]*m", "", line)
        if any(k in plain for k in ("Applying", "Completed", "error", "Error", "Skipping")):
            keep.append("  " + plain.split("] ", 1)[-1].strip())
    return "\n".join(keep) + ("\n" if keep else "")


def applied_scripts(proc: subprocess.CompletedProcess[str]) -> int | None:
    import re

    m = re.search(r"scripts_applied\S*?=\S*?(\d+)", re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout + proc.stderr))
    return int(m.group(1)) if m else None


def load(
    files: Sequence[str] | None = None,
    full_refresh: bool = False,
    datasets: Sequence[str] | None = None,
    dry_run: bool = False,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """CALL RAW.LOAD_RAW_FILES (RAW.FULL_REFRESH_RAW_FILES for a full refresh) and return its summary."""
    from snowflake.connector.errors import HttpError, OperationalError, ProgrammingError

    if full_refresh and files:
        raise StackError(
            "a full refresh reloads every staged file of the datasets it rebuilds, so it takes no file names: "
            "choose datasets (--dataset) instead, or load the files without --full-refresh"
        )
    sql, params = load_call_sql(files, full_refresh, datasets, dry_run)
    with connect(settings) as conn:
        cur = conn.cursor()
        try:
            cur.execute(sql, params)
        except ProgrammingError as e:
            raise StackError(call_error(e, full_refresh)) from None
        except (HttpError, OperationalError) as e:
            raise StackError(
                f"the connection to Snowflake was lost during the CALL ({e}). The CALL may have stopped midway (the "
                "server restarted) or may still be running. Nothing is loaded twice: a file a stopped CALL was "
                "loading stays LOADING in RAW.LOAD_TRACKING and is taken over by a CALL made 60 minutes after it "
                "was claimed, which counts the rows that CALL had committed instead of loading them again. Run the "
                "load again to load the rest."
            ) from e
        row = cur.fetchone()
    value = row[0]
    return json.loads(value) if isinstance(value, str) else value


def call_error(error: Exception, full_refresh: bool = False) -> str:
    """What a failed CALL of a load procedure says, without the handler's traceback: Snowflake's message, or the
    handler's own (the last ``SomeError: ...`` line of a Python Interpreter Error), and what to do."""
    import re

    text = str(error).strip()
    raised = [m.group(1) for m in re.finditer(r"^[\w.]+(?:Error|Exception): (.+)$", text, re.MULTILINE)]
    if "Python Interpreter Error" in text and raised:
        message = raised[-1]
    else:
        message = " ".join(line.strip() for line in text.splitlines() if line.strip())
    message = re.sub(r"^\d{6} \(\w{5}\): ", "", message)
    message = re.sub(r"^SQL compilation error: ", "", message)
    # a role without USAGE on a procedure is told it does not exist (the emulator's words, or Snowflake's "Unknown
    # user-defined function")
    denied = "does not exist or not authorized" in message or "Unknown user-defined function" in message
    if full_refresh and denied:
        message += (
            " A full refresh empties RAW, so RAW.FULL_REFRESH_RAW_FILES is for administrative roles only: run it "
            "as a user with SYSADMIN (SNOWFLAKE_ROLE=SYSADMIN), or ask an administrator to"
        )
    elif denied:
        message += " Run `netflix-elt deploy` first, and use a role that has NETFLIX_LOADER (SNOWFLAKE_ROLE)."
    return f"the load failed: {message}"


def load_call_sql(
    files: Sequence[str] | None = None,
    full_refresh: bool = False,
    datasets: Sequence[str] | None = None,
    dry_run: bool = False,
) -> tuple[str, tuple[Any, ...]]:
    """The CALL statement (with bound parameters) that loads the given files (all new files when None), or with
    ``full_refresh`` rebuilds the datasets' RAW tables from every staged file."""
    # FILES and DATASETS are ARRAY parameters: the bound JSON text is parsed and cast to their type
    files_sql = "PARSE_JSON(%s)::ARRAY" if files else "NULL"
    datasets_sql = "PARSE_JSON(%s)::ARRAY" if datasets else "NULL"
    params: list[Any] = []
    if files:
        params.append(json.dumps(list(files)))
    if datasets:
        params.append(json.dumps(list(datasets)))
    if full_refresh:
        return f"CALL RAW.FULL_REFRESH_RAW_FILES({datasets_sql}, {'TRUE' if dry_run else 'FALSE'})", tuple(params)
    sql = f"CALL RAW.LOAD_RAW_FILES({files_sql}, FALSE, {datasets_sql}, {'TRUE' if dry_run else 'FALSE'})"
    return sql, tuple(params)


def format_load_summary(summary: dict[str, Any]) -> str:
    lines = [f"{summary['status']}: {summary['message']}", ""]
    files = summary.get("files", [])
    if files:
        lines.append(f"  {'file':<70} {'status':<17} {'parsed':>10} {'loaded':>10} {'rejected':>9}")
        for f in files:
            lines.append(
                f"  {f['file']:<70} {f['status']:<17} {f['rows_parsed']:>10,} {f['rows_loaded']:>10,} "
                f"{f['rows_rejected']:>9,}"
            )
            if f.get("first_error"):
                lines.append(f"      first error: {f['first_error']}")
            if f.get("duplicate_of"):
                lines.append(f"      same content as {f['duplicate_of']}")
    lines.append(f"  load id {summary['load_id']}, {summary['seconds']:.1f} s")
    return "\n".join(lines)


def status(settings: Settings | None = None) -> dict[str, Any]:
    """What is staged (None when the role may not use the stage: NETFLIX_LOADER only calls the procedure and reads
    its tracking), loaded and rejected, per dataset."""
    from snowflake.connector.errors import ProgrammingError

    with connect(settings) as conn:
        cur = conn.cursor()
        staged: int | None = None
        try:
            cur.execute("LIST @RAW.LANDING")
            staged = sum(1 for r in cur.fetchall() if contracts.parse_stage_key("/".join(r[0].split("/")[-3:])))
        except ProgrammingError as e:
            if "not authorized" not in str(e):
                raise
        cur.execute(
            "SELECT DATASET, COUNT(*), COUNT_IF(STATUS = 'LOADED'), COUNT_IF(STATUS = 'PARTIALLY_LOADED'), "
            "COUNT_IF(STATUS = 'FAILED'), COUNT_IF(STATUS = 'DUPLICATE'), COUNT_IF(STATUS = 'LOADING'), "
            "COALESCE(SUM(ROWS_LOADED), 0), COALESCE(SUM(ROWS_REJECTED), 0), MAX(FINISHED_AT) "
            "FROM RAW.LOAD_TRACKING GROUP BY DATASET ORDER BY DATASET"
        )
        rows = cur.fetchall()
    cols = [
        "dataset",
        "files",
        "loaded",
        "partial",
        "failed",
        "duplicate",
        "loading",
        "rows_loaded",
        "rows_rejected",
        "last_load",
    ]
    datasets = [dict(zip(cols, r, strict=True)) for r in rows]
    for d in datasets:  # sums come back as floats from some backends
        for k in cols[1:-1]:
            d[k] = int(d[k] or 0)
    return {"staged_objects": staged, "datasets": datasets}
