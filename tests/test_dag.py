"""The Airflow DAG full_netflix_pipeline: its shape, and real runs (`dag.test()`) on a local stack."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netflix_elt import pipeline
from netflix_elt.generate import generate, generate_daily
from netflix_elt.stack import LocalStack
from netflix_elt.transform import run_dbt
from tests.conftest import REPO, make_stack

DAG_ID = "full_netflix_pipeline"

RUN_DAG = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
if bag.import_errors:
    print(json.dumps({"import_errors": {k: str(v) for k, v in bag.import_errors.items()}}))
    sys.exit(0)
dag = bag.dags["full_netflix_pipeline"]
if sys.argv[2] == "shape":
    print(json.dumps({
        "tasks": {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks},
        "groups": sorted(dag.task_group_dict),
        "schedule": str(dag.schedule), "catchup": dag.catchup, "max_active_runs": dag.max_active_runs,
        "doc_md": bool(dag.doc_md),
    }))
else:
    run = dag.test()
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    print(json.dumps({"state": str(run.state), "tasks": states}))
"""


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A local stack, deployed, with a dbt manifest, and an Airflow home whose connections point at it."""
    root = tmp_path_factory.mktemp("dag")
    stack = make_stack(root / "stack")
    stack.up()
    try:
        env = {
            **os.environ,
            **stack.env(),
            "NETFLIX_ELT_STACK_DIR": str(stack.root),
            "NETFLIX_ELT_S3_PORT": str(stack.s3.port),
            "NETFLIX_ELT_SNOWFLAKE_PORT": str(stack.snowflake.port),
            "NETFLIX_ELT_LANDING_DIR": str(root / "landing"),
            "NETFLIX_ELT_DBT_MANIFEST": str(root / "dbt-target" / "manifest.json"),
            "DBT_TARGET_PATH": str(root / "dbt-target"),
            "AIRFLOW_HOME": str(root / "airflow"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "AIRFLOW__COSMOS__CACHE_DIR": str(root / "cosmos-cache"),
            "NETFLIX_ELT_TASK_RETRIES": "0",
        }
        creds = stack.env()
        env["AIRFLOW_CONN_SNOWFLAKE_DEFAULT"] = json.dumps(
            {
                "conn_type": "snowflake",
                "login": creds["SNOWFLAKE_USER"],
                "password": creds["SNOWFLAKE_PASSWORD"],
                "extra": {
                    "account": "emulator",
                    "host": "127.0.0.1",
                    "port": stack.snowflake.port,
                    "protocol": "http",
                    "database": "NETFLIX",
                    "warehouse": "COMPUTE_WH",
                },
            }
        )
        env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
            {
                "conn_type": "aws",
                "login": creds["AWS_ACCESS_KEY_ID"],
                "password": creds["AWS_SECRET_ACCESS_KEY"],
                "extra": {"endpoint_url": creds["AWS_ENDPOINT_URL"]},
            }
        )
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            assert pipeline.deploy(stack.settings, quiet=True).returncode == 0
            assert run_dbt(["parse", "--target-path", env["DBT_TARGET_PATH"]]).success
        finally:
            os.environ.clear()
            os.environ.update(saved)
        migrate = subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "db", "migrate"], env=env, capture_output=True, text=True
        )
        assert migrate.returncode == 0, migrate.stdout + migrate.stderr
        env["_STACK_ROOT"] = str(root)
        yield env
    finally:
        stack.down()


def run_dag(env: dict[str, str], what: str = "test") -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", RUN_DAG, str(REPO / "dags"), what],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return dict(json.loads(lines[-1]))


def stack_of(env: dict[str, str]) -> LocalStack:
    from netflix_elt.config import Settings

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return LocalStack(Settings.from_env())
    finally:
        os.environ.clear()
        os.environ.update(saved)


def sql(env: dict[str, str], query: str) -> list[tuple[Any, ...]]:
    with stack_of(env).connect(schema="RAW", network_timeout=300) as conn:
        cur = conn.cursor()
        cur.execute(query)
        return list(cur.fetchall())


def test_dag_shape(airflow_env: dict[str, str]) -> None:
    shape = run_dag(airflow_env, "shape")
    assert "import_errors" not in shape, shape
    tasks = shape["tasks"]
    assert tasks["upload_landed_files"] == ["run_db_raw_ingestion"]
    dbt_tasks = [t for t in tasks if t.startswith("netflix_dbt_run.")]
    assert set(tasks) == {"upload_landed_files", "run_db_raw_ingestion", *dbt_tasks}
    # the load feeds the dbt group's entry points only; every dbt task is downstream of the load
    assert tasks["run_db_raw_ingestion"] and all(
        t.startswith("netflix_dbt_run.") for t in tasks["run_db_raw_ingestion"]
    )
    models = sorted(p.stem for p in (REPO / "netflix_dbt" / "models").rglob("*.sql"))
    for model in models:
        assert f"netflix_dbt_run.{model}" in shape["groups"], model
        assert f"netflix_dbt_run.{model}.run" in tasks, model
    assert (shape["schedule"], shape["catchup"], shape["max_active_runs"], shape["doc_md"]) == (
        "@daily",
        False,
        1,
        True,
    )


def test_dag_runs_end_to_end_then_loads_only_a_new_daily_file(airflow_env: dict[str, str]) -> None:
    landing = Path(airflow_env["NETFLIX_ELT_LANDING_DIR"])
    generate(landing, scale="tiny", seed=5)
    first = run_dag(airflow_env)
    assert first["state"] == "success", {t: s for t, s in first["tasks"].items() if s != "success"}
    assert all(state == "success" for state in first["tasks"].values()), first["tasks"]
    assert sql(airflow_env, "SELECT COUNT(*) FROM MARTS.MART_MOVIE_RATINGS")[0][0] > 0
    tracked = sql(airflow_env, "SELECT COUNT(*) FROM RAW.LOAD_TRACKING")[0][0]

    daily = Path(airflow_env["_STACK_ROOT"]) / "daily"
    generate_daily(daily, dt.date(2023, 10, 13), scale="tiny", seed=5)
    shutil.copy(daily / "ratings_20231013.csv", landing)
    new_rows = sum(1 for _ in (daily / "ratings_20231013.csv").open()) - 1
    facts = sql(airflow_env, "SELECT COUNT(*) FROM CORE.FCT_RATINGS")[0][0]
    second = run_dag(airflow_env)
    assert second["state"] == "success", second
    assert sql(airflow_env, "SELECT COUNT(*) FROM RAW.LOAD_TRACKING")[0][0] == tracked + 1
    assert sql(airflow_env, "SELECT COUNT(*) FROM CORE.FCT_RATINGS")[0][0] == facts + new_rows


def test_rejected_rows_over_the_limit_fail_the_load_and_skip_dbt(airflow_env: dict[str, str]) -> None:
    landing = Path(airflow_env["NETFLIX_ELT_LANDING_DIR"])
    bad = "userId,movieId,rating,timestamp\n" + "".join(f"9,{i},oops,1700000000\n" for i in range(1, 11))
    (landing / "ratings_20231020.csv").write_text(bad + "9,11,4.0,1700000000\n")
    result = run_dag(airflow_env)
    assert result["state"] == "failed", result
    assert result["tasks"]["upload_landed_files"] == "success"
    assert result["tasks"]["run_db_raw_ingestion"] == "failed"
    dbt_states = {t: s for t, s in result["tasks"].items() if t.startswith("netflix_dbt_run.")}
    assert dbt_states and all(s == "upstream_failed" for s in dbt_states.values()), dbt_states
