"""The local stack as users drive it: `netflix-elt up/status/down/run`, state kept across restarts, clear errors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netflix_elt.stack import LocalStack, StackError
from tests.conftest import REPO, free_port, make_stack

pytestmark = pytest.mark.slow(minutes=2.5)


def cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netflix_elt", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=env.get("CWD", str(REPO)),
    )


def stack_cli_env(root: Path) -> dict[str, str]:
    """Variables that point `netflix-elt` at a stack of its own in ``root`` on free ports (run from ``root``)."""
    return {
        "NETFLIX_ELT_STACK_DIR": str(root / "stack"),
        "NETFLIX_ELT_S3_PORT": str(free_port()),
        "NETFLIX_ELT_SNOWFLAKE_PORT": str(free_port()),
        "CWD": str(root),
        "DBT_TARGET_PATH": str(root / "dbt-target"),
        "DBT_LOG_PATH": str(root / "dbt-logs"),
    }


@pytest.fixture()
def cli_env(tmp_path: Path) -> dict[str, str]:
    return stack_cli_env(tmp_path)


def test_cli_up_status_down(cli_env: dict[str, str]) -> None:
    try:
        up = cli(cli_env, "up")
        assert up.returncode == 0, up.stderr
        assert "local stack is up" in up.stdout
        status = cli(cli_env, "status")
        assert status.stdout.count("running") == 2, status.stdout
        assert cli_env["NETFLIX_ELT_SNOWFLAKE_PORT"] in status.stdout
        # the state is where NETFLIX_ELT_STACK_DIR says, not in the working directory's .stack
        state = Path(cli_env["NETFLIX_ELT_STACK_DIR"])
        assert state.is_dir(), f"no stack state in {state}"
        assert {p.name for p in state.iterdir()} >= {"credentials.env", "s3", "snowflake", "s3.pid", "logs"}
        assert not (Path(cli_env["CWD"]) / ".stack").exists()
        again = cli(cli_env, "up")  # idempotent
        assert again.returncode == 0
    finally:
        down = cli(cli_env, "down")
    assert down.returncode == 0
    assert "snowflake" in down.stdout and "s3" in down.stdout
    assert cli(cli_env, "status").stdout.count("stopped") == 2
    for port in (cli_env["NETFLIX_ELT_S3_PORT"], cli_env["NETFLIX_ELT_SNOWFLAKE_PORT"]):
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", int(port))) != 0


def test_state_survives_a_restart(tmp_path: Path) -> None:
    stack = make_stack(tmp_path / "stack")
    stack.up()
    try:
        s3 = stack.s3_client()
        s3.put_object(Bucket=stack.settings.bucket, Key="movielens/ratings/a.csv", Body=b"h\n1,2,3.5,4\n")
        with stack.connect(schema="PUBLIC", network_timeout=120) as conn:
            cur = conn.cursor()
            cur.execute("CREATE SCHEMA RAW")
            cur.execute(f"CREATE STAGE RAW.LANDING URL = '{stack.settings.stage_url}'")
            cur.execute("CREATE FILE FORMAT RAW.CSV TYPE = CSV SKIP_HEADER = 1")
            cur.execute("CREATE TABLE RAW.R (A NUMBER, B NUMBER, C NUMBER(2,1), D NUMBER)")
            cur.execute(
                "CREATE PROCEDURE RAW.HELLO() RETURNS STRING LANGUAGE PYTHON RUNTIME_VERSION = '3.11' "
                "PACKAGES = ('snowflake-snowpark-python') HANDLER = 'main' AS $$\n"
                "def main(session):\n    return 'still here'\n$$"
            )
            cur.execute("COPY INTO RAW.R FROM @RAW.LANDING/ratings/ FILE_FORMAT = (FORMAT_NAME = 'RAW.CSV')")
            assert cur.fetchall()[0][1] == "LOADED"
        stack.down()
        assert not any(s["running"] for s in stack.status().values())

        stack.up()
        with stack.connect(schema="PUBLIC", network_timeout=120) as conn:
            cur = conn.cursor()
            cur.execute("CALL RAW.HELLO()")
            assert cur.fetchone()[0] == "still here"
            cur.execute("SELECT count(*) FROM RAW.R")
            assert cur.fetchone()[0] == 1
            cur.execute("LIST @RAW.LANDING")
            assert [r[0].rsplit("/", 1)[-1] for r in cur.fetchall()] == ["a.csv"]
            # load history survived too: the file is not loaded twice
            cur.execute("COPY INTO RAW.R FROM @RAW.LANDING/ratings/ FILE_FORMAT = (FORMAT_NAME = 'RAW.CSV')")
            assert cur.fetchall() == [("Copy executed with 0 files processed.",)]
    finally:
        stack.down()


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    stack = make_stack(tmp_path / "stack")
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", stack.s3.port))
        blocker.listen()
        with pytest.raises(StackError, match=r"already in use.*NETFLIX_ELT_S3_PORT"):
            stack.up(timeout=10)
    stack.down()


def test_credentials_are_generated_locally_and_not_in_the_repo(stack: LocalStack) -> None:
    creds = stack.credentials()
    assert stack.credentials_file.stat().st_mode & 0o077 == 0
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True).stdout.splitlines()
    for path in tracked:
        p = REPO / path
        if p.is_file() and p.stat().st_size < 2_000_000:
            text = p.read_text(errors="ignore")
            assert creds["AWS_SECRET_ACCESS_KEY"] not in text, path


@pytest.fixture(scope="module")
def direct_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A stack of its own for `run --direct`, and a path on which Airflow cannot even be imported, as on a machine
    without it: a package named `airflow` that refuses to load comes first."""
    root = tmp_path_factory.mktemp("direct")
    hidden = root / "no-airflow" / "airflow"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text('raise ModuleNotFoundError("No module named \'airflow\'", name="airflow")\n')
    path = [str(hidden.parent), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**stack_cli_env(root), "PYTHONPATH": os.pathsep.join(path)}
    try:
        yield env
    finally:
        cli(env, "down")


@pytest.fixture(scope="module")
def first_direct_run(direct_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return cli(direct_env, "run", "--direct", "--scale", "tiny", timeout=600)


def test_run_direct_deploys_uploads_loads_and_builds_without_airflow(
    first_direct_run: subprocess.CompletedProcess[str],
) -> None:
    """`run --direct`: the pipeline's steps (start, deploy, upload, load, dbt build) without Airflow; the DAG path of
    `run` is tested in test_dag.py."""
    first = first_direct_run
    assert first.returncode == 0, first.stdout + first.stderr
    assert "SUCCESS: 6 file(s) loaded" in first.stdout
    assert "6 uploaded, 0 already there" in first.stdout
    # every change script of migrations/ (V__ versioned and R__ repeatable) applied once
    scripts = len([p for p in (REPO / "migrations").glob("*.sql") if p.name.startswith(("V", "R__"))])
    assert f"{scripts} scripts applied" in first.stdout


def test_run_direct_again_deploys_uploads_and_loads_nothing(
    direct_env: dict[str, str], first_direct_run: subprocess.CompletedProcess[str]
) -> None:
    assert first_direct_run.returncode == 0, first_direct_run.stdout + first_direct_run.stderr
    second = cli(direct_env, "run", "--direct", "--scale", "tiny", timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "0 uploaded, 6 already there" in second.stdout
    assert "0 scripts applied" in second.stdout
    assert "NOTHING_TO_LOAD" in second.stdout
    status = cli(direct_env, "status")
    assert "staged objects: 6" in status.stdout, status.stdout
    assert "ratings" in status.stdout


def test_env_command_prints_client_settings(cli_env: dict[str, str]) -> None:
    out = cli(cli_env, "env").stdout
    values: dict[str, Any] = dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())
    assert values["SNOWFLAKE_PROTOCOL"] == "http"
    assert values["SNOWFLAKE_PORT"] == cli_env["NETFLIX_ELT_SNOWFLAKE_PORT"]
    assert values["AWS_ENDPOINT_URL"].endswith(cli_env["NETFLIX_ELT_S3_PORT"])
    json.dumps(values)
