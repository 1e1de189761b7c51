"""``netflix-elt certify``: the certification that runs on a real account runs here on the local stack, so it cannot
rot, and it is shown not to be vacuous.

- ``certify --local --keep`` on a stack of its own: every check in the table passes, and the kept throwaway database
  holds what the run loaded;
- ``certify --local --recheck <database> --keep`` on it runs the checks again and they pass again;
- then a RAW row of that database is deleted and ``certify --local --recheck <database>`` runs the checks again: the
  exactly-once check FAILs (exit code 1) while the others still pass, and the run ends as every run does, by
  dropping the database and deleting its S3 prefix;
- without an account, ``certify`` skips with one line saying what to set (exit code 0); with an account but
  missing settings it names each of them (exit code 2).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from netflix_elt.certify import SKIPPED
from netflix_elt.stack import LocalStack
from tests import snapshots
from tests.conftest import REPO

pytestmark = [pytest.mark.slow(minutes=1.5), pytest.mark.stack]

ROW = re.compile(r"^  (?P<check>\S.*?)\s{2,}(?P<result>PASS|FAIL|-)\s{2,}(?P<detail>.*)$")
EXPECTED_CHECKS = {
    "deploy (schemachange)",
    "upload: snapshot, ratings.csv in parts",
    "load: the DAG's task run_db_raw_ingestion",
    "load: netflix-elt load",
    "dbt build",
    "re-run: the DAG's load task loads nothing",
    "re-run: netflix-elt load loads nothing",
    "tracking: parsed = loaded + rejected, per file",
    "tracking: parsed = loaded + rejected, in total",
    "tracking: each file's counts and status",
    "RAW: each file's good rows, exactly once",
    "split file: loaded from all its parts",
    "duplicate file: DUPLICATE, nothing loaded",
    "daily file: loaded with its bad rows rejected",
    "LOAD_REJECTS: every bad row, with file and line",
    "mart_movie_ratings = Python",
    "mart_genre_year_popularity = Python",
}
EXACTLY_ONCE = "RAW: each file's good rows, exactly once"
# what --recheck runs again on a kept database: the checks, not the steps that built it
RECHECKED = {c for c in EXPECTED_CHECKS if not c.startswith(("deploy", "upload", "load", "dbt", "re-run"))}


def certify(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``netflix-elt certify`` as a user runs it (in an empty directory: no .env of the repository's)."""
    return subprocess.run(
        [sys.executable, "-m", "netflix_elt", "certify", *args],
        cwd=tmp_path,
        env={**(os.environ if env is None else env), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=540,
    )


def table(output: str) -> dict[str, tuple[str, str]]:
    """The printed table: check -> (result, detail)."""
    rows = {}
    for line in output.splitlines():
        if m := ROW.match(line):
            rows[m["check"]] = (m["result"], m["detail"])
    rows.pop("check", None)
    return rows


def database_of(output: str) -> str:
    m = re.search(r"^database (NETFLIX_CERTIFY_\w+), stage (s3://\S+)$", output, re.M)
    assert m, output
    return m.group(1)


def databases(stack: LocalStack, name: str) -> list[object]:
    with stack.connect(database=None) as conn:
        cur = conn.cursor()
        cur.execute(f"SHOW DATABASES LIKE '{name}'")
        return [r for r in cur.fetchall() if r[1] == name]


def objects(stack: LocalStack, prefix: str) -> list[str]:
    s3 = stack.s3_client()
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=stack.settings.bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.fixture(scope="module")
def certify_stack(target_stack: LocalStack) -> LocalStack:
    """Not deployed: certify deploys into its throwaway database."""
    return target_stack


@pytest.fixture(scope="module")
def kept(certify_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> str:
    """``certify --local --keep``: its output (the database is kept for the next tests). In ``make mutation``, from a
    snapshot of an earlier run of the same code but the checks (tests/snapshots.py's ``ran``): a break in the checks
    shows in the tests that run them again with ``--recheck``."""
    root = tmp_path_factory.mktemp("certify-run")

    def run() -> str:
        proc = certify(root, "--local", "--keep")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    output, _ = snapshots.ran("certify", certify_stack, root, run, excluded=("netflix_elt/certify/checks.py",))
    return output


def test_certify_local_passes_every_check(certify_stack: LocalStack, kept: str) -> None:
    rows = table(kept)
    assert set(rows) >= EXPECTED_CHECKS, kept
    assert {check: result for check, (result, _) in rows.items() if result != "PASS"} == {}, kept
    assert re.search(r"^PASSED: all \d+ checks$", kept, re.M)
    assert "Traceback" not in kept
    assert databases(certify_stack, database_of(kept)), "--keep keeps the database"


def test_a_recheck_of_the_kept_database_passes_every_check(
    certify_stack: LocalStack, kept: str, tmp_path: Path
) -> None:
    database = database_of(kept)
    proc = certify(tmp_path, "--local", "--recheck", database, "--keep")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = table(proc.stdout)
    assert set(rows) >= RECHECKED, proc.stdout
    assert re.search(r"^PASSED: all \d+ checks$", proc.stdout, re.M)
    assert {check: result for check, (result, _) in rows.items() if result != "PASS"} == {}, proc.stdout
    assert databases(certify_stack, database), "--keep keeps the database"


def test_a_broken_invariant_fails_and_the_database_is_dropped(
    certify_stack: LocalStack, kept: str, tmp_path: Path
) -> None:
    database = database_of(kept)
    with certify_stack.connect(database=database, schema="RAW") as conn:
        conn.cursor().execute("DELETE FROM RAW.RATINGS WHERE SOURCE_ROW_NUMBER = 1 AND SOURCE_FILE LIKE '%part0001%'")

    proc = certify(tmp_path, "--local", "--recheck", database)

    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = table(proc.stdout)
    assert rows[EXACTLY_ONCE][0] == "FAIL", proc.stdout
    assert "ratings.csv: 999 rows in RAW.RATINGS, expected its 1,000 good rows" in rows[EXACTLY_ONCE][1]
    assert rows["tracking: each file's counts and status"][0] == "PASS"  # the checks say what is wrong, not more
    assert rows["clean-up: database dropped"][0] == "PASS", proc.stdout
    assert rows["clean-up: S3 prefix deleted"][0] == "PASS", proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr
    assert databases(certify_stack, database) == []
    run_id = database.removeprefix("NETFLIX_CERTIFY_").lower()
    assert [k for k in objects(certify_stack, "") if run_id in k] == []


def test_without_an_account_it_skips_with_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SNOWFLAKE_ACCOUNT"}
    proc = certify(tmp_path, env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, SKIPPED + "\n", "")
    assert "SNOWFLAKE_ACCOUNT" in SKIPPED and "--local" in SKIPPED


def test_an_account_without_its_settings_names_what_to_set(tmp_path: Path) -> None:
    names = ("SNOWFLAKE_USER", "SNOWFLAKE_ROLE", "SNOWFLAKE_PASSWORD", "SNOWFLAKE_PRIVATE_KEY_PATH")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SNOWFLAKE_", "NETFLIX_ELT_BUCKET"))}
    env.pop("NETFLIX_ELT_STORAGE_INTEGRATION", None)
    proc = certify(tmp_path, env={**env, "SNOWFLAKE_ACCOUNT": "xy12345.eu-west-1"})
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout.startswith("certify: cannot start on account xy12345.eu-west-1: set ")
    for name in (*names, "NETFLIX_ELT_BUCKET", "NETFLIX_ELT_STORAGE_INTEGRATION"):
        assert name in proc.stdout
    assert proc.stderr == ""
