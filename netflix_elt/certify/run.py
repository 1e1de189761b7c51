"""One certification run: a throwaway database and S3 prefix, the whole pipeline on the certification dataset, the
checks, and the clean-up.

The steps are the project's own code paths, in the order a deployment runs them:

1. ``CREATE DATABASE NETFLIX_CERTIFY_<utc time>_<random>`` and ``pipeline.deploy`` (schemachange) into it, with the
   stage on ``s3://<bucket>/<certify prefix><run id>/``;
2. the uploader (``ratings.csv`` with a split threshold below its size, so it is staged in parts), then the DAG's
   load task ``run_db_raw_ingestion`` run by `netflix_elt.certify.dag_load` in a child process;
3. the uploader again for the daily files (bad rows included) and a duplicate file, then ``netflix-elt load``;
4. ``dbt build`` on the throwaway database (`netflix_elt.transform`);
5. the checks (`netflix_elt.certify.checks`), which also run both loads once more and expect nothing new;
6. ``DROP DATABASE`` and the deletion of every object under the prefix (and of the uploader's content index for
   it), also after a failure or Ctrl-C.

A step that fails stops the run (the checks after it are reported as not run), with one line saying what went
wrong and what to set or fix; there is no traceback.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import pipeline
from ..config import LOCAL_ACCOUNT, Settings
from ..stack import LocalStack
from . import dataset as data

DATABASE_PREFIX = "NETFLIX_CERTIFY_"
REQUIRED_FOR_ACCOUNT = (
    ("SNOWFLAKE_USER", "the user to log in as"),
    (
        "SNOWFLAKE_ROLE",
        "a role that may create a database, a warehouse and roles and grant on them (e.g. ACCOUNTADMIN)",
    ),
    ("NETFLIX_ELT_BUCKET", "the S3 bucket the stage reads"),
    ("NETFLIX_ELT_STORAGE_INTEGRATION", "the storage integration that may read the bucket's prefix"),
)


class StepFailed(Exception):
    """A step could not be done; the message is the one line the table shows."""


@dataclass
class Check:
    name: str
    ok: bool | None  # None: not run, because an earlier step failed
    detail: str

    @property
    def result(self) -> str:
        return {True: "PASS", False: "FAIL", None: "-"}[self.ok]


@dataclass
class Target:
    """Where a run works: the throwaway database, the S3 prefix, and the environment that points every client at
    them."""

    local: bool
    run_id: str
    settings: Settings
    workdir: Path

    @property
    def database(self) -> str:
        return DATABASE_PREFIX + self.run_id.upper()

    @property
    def prefix(self) -> str:
        return f"{self.settings.certify_prefix}{self.run_id.lower()}/"

    @property
    def stage_url(self) -> str:
        return f"s3://{self.settings.bucket}/{self.prefix}"

    def environment(self) -> dict[str, str]:
        """Variables set for the run (and restored after it): the pipeline's clients read them."""
        env = {
            "SNOWFLAKE_DATABASE": self.database,
            "NETFLIX_ELT_PREFIX": self.prefix,
            "NETFLIX_ELT_STAGE_URL": self.stage_url,
            "NETFLIX_ELT_UPLOAD_STATE_DIR": str(self.workdir / "upload-state"),
            "NETFLIX_ELT_DBT_MANIFEST": str(self.workdir / "dbt-target" / "manifest.json"),
        }
        if self.local:
            env["SNOWFLAKE_ACCOUNT"] = LOCAL_ACCOUNT
        else:
            env["NETFLIX_DBT_TARGET"] = os.environ.get("NETFLIX_DBT_TARGET") or "snowflake"
        return env

    def run_settings(self) -> Settings:
        return replace(self.settings, database=self.database, prefix=self.prefix)

    def s3_client(self) -> Any:
        if self.local:
            return LocalStack(self.settings).s3_client()
        from uploader import s3_client_from_env

        return s3_client_from_env()


def new_run_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "_" + secrets.token_hex(3)


def run_id_of(database: str) -> str:
    """The run id in a certification database's name (``--recheck``)."""
    name = database.strip().upper()
    if not name.startswith(DATABASE_PREFIX) or len(name) <= len(DATABASE_PREFIX):
        raise StepFailed(f"{database} is not a certification database (its name starts with {DATABASE_PREFIX})")
    return name[len(DATABASE_PREFIX) :]


def missing_account_settings() -> list[str]:
    """What a run on a real account needs and the environment does not give, one line each."""
    missing = [f"{name} ({why})" for name, why in REQUIRED_FOR_ACCOUNT if not os.environ.get(name)]
    if not (os.environ.get("SNOWFLAKE_PASSWORD") or os.environ.get("SNOWFLAKE_PRIVATE_KEY_PATH")):
        missing.append("SNOWFLAKE_PASSWORD or SNOWFLAKE_PRIVATE_KEY_PATH (how the user logs in)")
    key = os.environ.get("SNOWFLAKE_PRIVATE_KEY_PATH")
    if key and not Path(key).is_file():
        missing.append(f"SNOWFLAKE_PRIVATE_KEY_PATH names {key}, which is not a file")
    return missing


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class Certification:
    """A run against ``target``; ``say`` prints progress lines."""

    target: Target
    say: Callable[[str], None]
    keep: bool = False
    checks: list[Check] = field(default_factory=list)
    checks_after: list[Check] = field(default_factory=list)  # found by the steps, shown after them
    current: str = ""  # the step running
    loads: dict[str, Any] = field(default_factory=dict)  # the keys and summaries of the loads, for the checks

    # -- steps ----------------------------------------------------------------------------------------------------
    def step(self, name: str, fix: str, fn: Callable[[], str]) -> None:
        """Run one step and record it as a check; a failure stops the run (StepFailed) with ``fix`` appended."""
        self.say(f"{name} ...")
        self.current = name
        started = time.monotonic()
        try:
            detail = fn()
        except StepFailed as e:
            self.checks.append(Check(name, False, f"{e}{'; ' + fix if fix else ''}"))
            raise
        except Exception as e:  # an error of a client (connector, boto3, dbt): one line, and what to fix
            self.checks.append(Check(name, False, f"{_one_line(e)}{'; ' + fix if fix else ''}"))
            raise StepFailed(name) from e
        self.checks.append(Check(name, True, f"{detail} ({time.monotonic() - started:.0f} s)"))

    def create_database(self) -> str:
        with pipeline.connect(self.target.run_settings(), database=None) as conn:
            conn.cursor().execute(f"CREATE DATABASE {self.target.database}")
        return f"{self.target.database}, stage {self.target.stage_url}"

    def deploy(self) -> str:
        proc = pipeline.deploy(self.target.run_settings(), quiet=True)
        if proc.returncode != 0:
            raise StepFailed(f"schemachange deploy failed: {_schemachange_error(proc.stdout + proc.stderr)}")
        return f"{pipeline.applied_scripts(proc)} scripts applied"

    def upload(self, batch: str, **options: Any) -> Any:
        from uploader import upload

        settings = self.target.run_settings()
        report = upload(
            self.dataset.landing(batch),
            bucket=settings.bucket,
            prefix=settings.prefix,
            s3_client=self.target.s3_client(),
            progress=False,
            **options,
        )
        not_uploaded = [f"{f.name}: {f.status}" for f in report.files if f.status != "uploaded"]
        if not_uploaded:
            raise StepFailed(f"not uploaded: {', '.join(not_uploaded)}")
        return report

    def upload_snapshot(self) -> str:
        size = self.dataset.by_name("ratings.csv").path.stat().st_size
        split = self.upload("split", split_threshold=size // 3, part_size=max(1, size // 3))
        (ratings,) = split.files
        if ratings.parts < 2:
            raise StepFailed(f"ratings.csv ({size:,} bytes) was not split into parts: {ratings.parts} part(s)")
        snapshot = self.upload("snapshot")
        self.loads["snapshot_keys"] = split.uploaded_keys + snapshot.uploaded_keys
        self.loads["split_parts"] = ratings.parts
        return f"{len(snapshot.files) + 1} files, ratings.csv in {ratings.parts} parts"

    def upload_daily(self) -> str:
        # force: the duplicate's content is known to the uploader's index, and is to be staged again all the same
        daily = self.upload("daily", force=True)
        return f"{len(daily.files)} files ({', '.join(f.name for f in daily.files)})"

    def dag_load(self) -> str:
        # twice: the second run is a retry of the task with the same XCom, and must load nothing
        first, again = self.run_dag_task(self.loads["snapshot_keys"], runs=2)
        self.loads["dag"] = first
        self.checks_after.append(rerun_check("re-run: the DAG's load task loads nothing", again))
        return _describe(first)

    def cli_load(self) -> str:
        from .checks import Loaded

        summary = self.run_cli_load()
        self.loads["cli"] = summary
        with pipeline.connect(self.target.run_settings()) as conn:
            before = Loaded.read(conn).raw
        again = self.run_cli_load()
        with pipeline.connect(self.target.run_settings()) as conn:
            after = Loaded.read(conn).raw
        self.checks_after.append(rerun_check("re-run: netflix-elt load loads nothing", again, before, after))
        return _describe(summary)

    def dbt_build(self) -> str:
        from .. import transform

        result = transform.transform(quiet=True, env=self.dbt_env())
        done = sum(n for by in result["counts"].values() for status, n in by.items() if status in {"success", "pass"})
        if not result["success"]:
            failed = "; ".join(f"{f['name']}: {_flat(f['message'] or '')[:160]}" for f in result["failures"][:3])
            raise StepFailed(f"dbt build failed: {failed or _flat(result['error'] or '')[:400]}")
        return f"{done} models, snapshots and tests passed"

    # -- the project's clients ------------------------------------------------------------------------------------
    def dbt_env(self) -> dict[str, str]:
        env = pipeline.target_env(self.target.run_settings())
        env["DBT_TARGET_PATH"] = str(self.target.workdir / "dbt-target")
        env["DBT_LOG_PATH"] = str(self.target.workdir / "dbt-logs")
        return env

    def run_cli_load(self) -> dict[str, Any]:
        """``netflix-elt load --json`` in a child process, as a user runs it."""
        proc = subprocess.run(
            [sys.executable, "-m", "netflix_elt", "load", "--json"],
            capture_output=True,
            text=True,
            env=dict(os.environ),
            timeout=3600,
        )
        try:
            summary: dict[str, Any] = json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise StepFailed(f"netflix-elt load exited with {proc.returncode}: {_last_line(proc)}") from None
        if proc.returncode != 0:
            raise StepFailed(f"netflix-elt load exited with {proc.returncode}: {summary.get('message')}")
        return summary

    def run_dag_task(self, keys: list[str], runs: int = 1) -> list[dict[str, Any]]:
        """The DAG's load task for ``keys``, ``runs`` times, in a child process (`netflix_elt.certify.dag_load`)."""
        env = self.airflow_env()
        self.parse_dbt_project(env)
        work = self.target.workdir
        keys_file, out_file = work / "dag-keys.json", work / "dag-result.json"
        keys_file.write_text(json.dumps(keys))
        out_file.unlink(missing_ok=True)
        log = work / "dag-load.log"
        with log.open("w") as log_file:
            proc = subprocess.run(
                [sys.executable, "-m", "netflix_elt.certify.dag_load", str(keys_file), str(out_file), str(runs)],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=3600,
            )
        if not out_file.exists():
            tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-1:]
            raise StepFailed(f"the DAG's load task did not run (exit code {proc.returncode}): {' '.join(tail)}")
        out = json.loads(out_file.read_text())
        if "error" in out:
            raise StepFailed(f"the DAG's load task failed: {out['error']}")
        summaries: list[dict[str, Any]] = out["summaries"]
        return summaries

    def parse_dbt_project(self, env: Mapping[str, str]) -> None:
        """The dbt manifest the DAG renders its dbt task group from (``dbt parse``, as a deployment does in CI)."""
        from ..transform import run_dbt

        manifest = Path(env["NETFLIX_ELT_DBT_MANIFEST"])
        if manifest.exists():
            return
        result = run_dbt(["--quiet", "parse", "--target-path", str(manifest.parent)], env=env)
        if not result.success or not manifest.exists():
            raise StepFailed(f"dbt parse failed, so the DAG cannot be parsed: {result.exception or 'see dbt-logs'}")

    def airflow_env(self) -> dict[str, str]:
        """The environment of the DAG's task: Airflow's home in the work directory, the dbt manifest the DAG reads,
        and the ``snowflake_default`` connection to the throwaway database (replacing any the caller has)."""
        from ..orchestrate import airflow_env

        settings = self.target.run_settings()
        saved = os.environ.get("AIRFLOW_HOME")
        os.environ["AIRFLOW_HOME"] = str(self.target.workdir / "airflow")
        try:
            env = airflow_env(settings)
        finally:
            if saved is None:
                os.environ.pop("AIRFLOW_HOME", None)
            else:
                os.environ["AIRFLOW_HOME"] = saved
        env["DBT_TARGET_PATH"] = str(self.target.workdir / "dbt-target")
        env["DBT_LOG_PATH"] = str(self.target.workdir / "dbt-logs")
        if not self.target.local:
            env["AIRFLOW_CONN_SNOWFLAKE_DEFAULT"] = json.dumps(account_connection(settings))
        return env

    # -- clean-up -------------------------------------------------------------------------------------------------
    def clean_up(self) -> None:
        """Drop the database and delete the prefix; each outcome is a check. Ctrl-C is ignored meanwhile."""
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if self.keep:
                self.say(f"kept database {self.target.database} and {self.target.stage_url}")
                return
            self.say(f"dropping {self.target.database} and deleting {self.target.stage_url} ...")
            self.checks.append(self._drop_database())
            self.checks.append(self._delete_prefix())
        finally:
            signal.signal(signal.SIGINT, previous)

    def _drop_database(self) -> Check:
        name = "clean-up: database dropped"
        try:
            with pipeline.connect(self.target.run_settings(), database=None) as conn:
                cur = conn.cursor()
                cur.execute(f"DROP DATABASE IF EXISTS {self.target.database}")
                # LIKE's "_" matches any character: keep the rows of this very name (column "name")
                cur.execute(f"SHOW DATABASES LIKE '{self.target.database}'")
                left = [r for r in cur.fetchall() if str(r[1]).upper() == self.target.database]
        except Exception as e:
            return Check(name, False, f"{_one_line(e)}; drop it yourself: DROP DATABASE {self.target.database}")
        if left:
            return Check(name, False, f"{self.target.database} still exists; DROP DATABASE {self.target.database}")
        return Check(name, True, f"{self.target.database} is gone")

    def _delete_prefix(self) -> Check:
        name = "clean-up: S3 prefix deleted"
        bucket = self.target.settings.bucket
        from uploader import index_key

        # the objects, and the uploader's content index for the prefix (kept outside it)
        prefixes = (self.target.prefix, index_key(self.target.prefix, "").removesuffix(".json"))
        try:
            client = self.target.s3_client()
            deleted = sum(_delete_objects(client, bucket, p) for p in prefixes)
            left = sum(len(_keys(client, bucket, p)) for p in prefixes)
        except Exception as e:
            return Check(name, False, f"{_one_line(e)}; delete s3://{bucket}/{self.target.prefix} yourself")
        if left:
            return Check(name, False, f"{left} object(s) left under s3://{bucket}/{self.target.prefix}")
        return Check(name, True, f"{deleted} object(s) deleted under s3://{bucket}/{self.target.prefix}")

    @property
    def dataset(self) -> data.Dataset:
        ds: data.Dataset = self.loads["dataset"]
        return ds


def account_connection(settings: Settings) -> dict[str, Any]:
    """Airflow's ``snowflake_default`` connection to a real account, as JSON for ``AIRFLOW_CONN_SNOWFLAKE_DEFAULT``:
    the variables the rest of the pipeline reads, and the throwaway database."""
    extra: dict[str, Any] = {
        "account": os.environ["SNOWFLAKE_ACCOUNT"],
        "warehouse": settings.warehouse,
        "database": settings.database,
    }
    if role := os.environ.get("SNOWFLAKE_ROLE"):
        extra["role"] = role
    password = os.environ.get("SNOWFLAKE_PASSWORD", "")
    if key := os.environ.get("SNOWFLAKE_PRIVATE_KEY_PATH"):
        # the Snowflake provider reads the key's passphrase from the password field
        extra["private_key_file"] = key
        password = os.environ.get("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE", "")
    return {"conn_type": "snowflake", "login": os.environ["SNOWFLAKE_USER"], "password": password, "extra": extra}


def rerun_check(
    name: str,
    summary: Mapping[str, Any],
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> Check:
    """A load run again over what is loaded: it must load no row and handle no file (and leave RAW as it was)."""
    rows = int(summary.get("totals", {}).get("rows_loaded", 0) or 0)
    handled = [f["file"] for f in summary.get("files", []) if f.get("status") in {"LOADED", "PARTIALLY_LOADED"}]
    problems = []
    if rows or handled:
        problems.append(f"loaded {rows:,} rows from {len(handled)} file(s) again: {', '.join(handled[:3])}")
    if before != after:
        problems.append("RAW changed")
    if problems:
        return Check(name, False, "; ".join(problems))
    return Check(name, True, f"{summary.get('status')}: 0 rows loaded" + (", RAW unchanged" if before else ""))


def _keys(client: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def _delete_objects(client: Any, bucket: str, prefix: str) -> int:
    keys = _keys(client, bucket, prefix)
    for i in range(0, len(keys), 1000):
        client.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True}
        )
    return len(keys)


def _describe(summary: Mapping[str, Any]) -> str:
    t = summary.get("totals", {})
    return (
        f"{summary.get('status')}: {len(summary.get('files', []))} files, {t.get('rows_loaded', 0):,} rows loaded, "
        f"{t.get('rows_rejected', 0):,} rejected"
    )


def _schemachange_error(output: str) -> str:
    """The script and the error of a failed schemachange deploy, from its log, on one line."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", output)
    failed = re.search(r"a_script_name=(\S+) error_code=\S+ error_msg=\"(.*?)(?:\\n|\")", plain)
    if failed:
        return f"{failed.group(1)}: {failed.group(2)}"
    errors = [ln.split("]", 1)[-1].strip() for ln in plain.splitlines() if "error" in ln.lower() and ln.strip()]
    return " | ".join(e for e in errors if e)[-400:] or "(no error in its output)"


def _flat(text: str) -> str:
    return " ".join(text.split())


def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return f"{type(e).__name__}: {lines[0] if lines else ''}"[:400]


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def make_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="netflix-elt-certify-"))


def remove_workdir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
