"""The Airflow DAG full_netflix_pipeline: its shape, and real runs (`dag.test()`) on a local stack."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netflix_elt import orchestrate
from netflix_elt.generate import generate_daily
from netflix_elt.stack import LocalStack
from tests import snapshots
from tests.conftest import REPO, make_stack

pytestmark = pytest.mark.slow(minutes=5)

DAG_ID = "full_netflix_pipeline"

SHAPE = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
if bag.import_errors:
    print(json.dumps({"import_errors": {k: str(v) for k, v in bag.import_errors.items()}}))
    sys.exit(0)
dag = bag.dags["full_netflix_pipeline"]
print(json.dumps({
    "tasks": {t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks},
    "groups": sorted(dag.task_group_dict),
    "schedule": str(dag.schedule), "catchup": dag.catchup, "max_active_runs": dag.max_active_runs,
    "doc_md": bool(dag.doc_md),
    "retries": {t.task_id: [t.retries, t.retry_exponential_backoff, t.retry_delay.total_seconds(),
                            t.execution_timeout and t.execution_timeout.total_seconds()] for t in dag.tasks},
}))
"""


@pytest.fixture(scope="module")
def parse_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What parsing the DAG needs, as `netflix-elt run` sets it up: the environment of a local stack (not started:
    parsing connects to nothing) and the dbt manifest the DAG renders its task group from."""
    root = tmp_path_factory.mktemp("dag-parse")
    stack = make_stack(root / "stack")
    env = orchestrate.airflow_env(stack.settings, landing=root / "landing")
    env["NETFLIX_ELT_DBT_MANIFEST"] = str(root / "dbt-target" / "manifest.json")
    orchestrate.ensure_manifest(env)
    return env


@pytest.fixture(scope="module")
def airflow_env(tmp_path_factory: pytest.TempPathFactory, parse_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A local stack on free ports with Airflow's home inside it, set up as `netflix-elt run` does: the environment
    (connections to the stack), the metadata database and the dbt manifest."""
    root = tmp_path_factory.mktemp("dag")
    stack = make_stack(root / "stack")
    stack.up()

    def stack_env() -> dict[str, str]:
        env = orchestrate.airflow_env(stack.settings, landing=root / "landing")
        env.update(
            {
                "NETFLIX_ELT_STACK_DIR": str(stack.root),
                "NETFLIX_ELT_S3_PORT": str(stack.s3.port),
                "NETFLIX_ELT_SNOWFLAKE_PORT": str(stack.snowflake.port),
                "NETFLIX_ELT_DBT_MANIFEST": parse_env["NETFLIX_ELT_DBT_MANIFEST"],  # parsed once for the module
                "NETFLIX_ELT_TASK_RETRIES": "0",
                "_ROOT": str(root),
            }
        )
        return env

    try:
        saved = dict(os.environ)
        os.environ.update(stack_env())
        try:
            snapshots.deploy(stack)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        env = stack_env()  # the credentials the stack was deployed with
        orchestrate.ensure_metadata_db(env)
        orchestrate.ensure_manifest(env)
        yield env
    finally:
        stack.down()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netflix_elt", *args], env=env, capture_output=True, text=True, timeout=900, cwd=REPO
    )


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


def python_json(code: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    """Run ``code`` with ``python -c`` in ``env`` (from the repository, with ``args``): the JSON object it prints last."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=600, cwd=REPO
    )
    assert proc.stdout.strip(), proc.stderr[-3000:]
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def test_dag_shape(parse_env: dict[str, str]) -> None:
    defaults = {
        k: v for k, v in parse_env.items() if k not in {"NETFLIX_ELT_TASK_RETRIES", "NETFLIX_ELT_TASK_RETRY_DELAY"}
    }
    shape = python_json(SHAPE, defaults, str(REPO / "dags"))
    assert "import_errors" not in shape, shape
    tasks = shape["tasks"]
    assert tasks["upload_landed_files"] == ["run_db_raw_ingestion"]
    dbt_tasks = [t for t in tasks if t.startswith("netflix_dbt_run.")]
    assert set(tasks) == {"upload_landed_files", "run_db_raw_ingestion", *dbt_tasks}
    # the load feeds the dbt group's entry points only; every dbt task is downstream of the load
    assert tasks["run_db_raw_ingestion"] and all(
        t.startswith("netflix_dbt_run.") for t in tasks["run_db_raw_ingestion"]
    )
    # one `dbt build` task per model and snapshot, one per source, one per relationship test between two models
    models = sorted(p.stem for p in (REPO / "netflix_dbt" / "models").rglob("*.sql"))
    for model in models:
        assert f"netflix_dbt_run.{model}_model_build" in tasks, model
    assert "netflix_dbt_run.movies_snapshot_snapshot_build" in tasks
    sources = [t for t in dbt_tasks if t.endswith("_source")]
    assert len(sources) == 6, sources
    relationships = [t for t in dbt_tasks if t.startswith("netflix_dbt_run.relationships_")]
    assert relationships and all(t.endswith("__test") for t in relationships), relationships
    # a relationship test runs after both of its models
    for t in relationships:
        upstream = [u for u, down in tasks.items() if t in down]
        assert len(upstream) == 2, (t, upstream)
    assert (shape["schedule"], shape["catchup"], shape["max_active_runs"], shape["doc_md"]) == (
        "@daily",
        False,
        1,
        True,
    )
    # every task: 2 retries by default, with exponential backoff from 60 s, and a timeout (1 h for the upload, 2 h
    # for the load and each dbt task)
    retries = shape["retries"]
    assert {tuple(v[:3]) for v in retries.values()} == {(2, True, 60.0)}, retries
    assert retries["upload_landed_files"][3] == 3600, retries
    assert all(v[3] == 7200 for t, v in retries.items() if t != "upload_landed_files"), retries


@pytest.fixture(scope="module")
def first_run(airflow_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`netflix-elt run` on the module's stack: tiny generated data into the landing folder, then one run of the DAG."""
    landing = Path(airflow_env["NETFLIX_ELT_LANDING_DIR"])
    return cli(airflow_env, "run", "--scale", "tiny", "--seed", "5", "--landing", str(landing), "--no-progress")


@pytest.mark.timeout(900)  # a whole DAG run; make test's parallel workers share the cores
def test_make_run_runs_the_dag_end_to_end(
    airflow_env: dict[str, str], first_run: subprocess.CompletedProcess[str]
) -> None:
    first = first_run
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "DAG full_netflix_pipeline" in first.stdout and "SUCCESS, run manual__" in first.stdout
    assert "upload_landed_files" in first.stdout and "success: 6 new object(s) staged" in first.stdout
    assert "SUCCESS: 6 file(s) loaded" in first.stdout  # the load summary, from the load task's XCom
    nodes = sum(len(list((REPO / "netflix_dbt" / d).rglob("*.sql"))) for d in ("models", "snapshots"))
    counted = re.search(r"(\d+) of (\d+) dbt tasks succeeded", first.stdout)
    assert counted and counted.group(1) == counted.group(2) and int(counted.group(1)) > nodes, first.stdout
    assert sql(airflow_env, "SELECT COUNT(*) FROM MARTS.MART_MOVIE_RATINGS")[0][0] > 0


@pytest.mark.timeout(1200)  # two whole DAG runs when it runs alone
def test_the_next_run_loads_only_a_new_daily_file(
    airflow_env: dict[str, str], first_run: subprocess.CompletedProcess[str]
) -> None:
    """After a first run, a daily ratings file put in the landing folder: the next run stages, loads and transforms
    just that file."""
    assert first_run.returncode == 0, first_run.stdout[-3000:] + first_run.stderr[-3000:]
    landing = Path(airflow_env["NETFLIX_ELT_LANDING_DIR"])
    tracked = sql(airflow_env, "SELECT COUNT(*) FROM RAW.LOAD_TRACKING")[0][0]
    daily = Path(airflow_env["_ROOT"]) / "daily"
    generate_daily(daily, dt.date(2023, 10, 13), scale="tiny", seed=5)
    shutil.copy(daily / "ratings_20231013.csv", landing)
    new_rows = sum(1 for _ in (daily / "ratings_20231013.csv").open()) - 1
    facts = sql(airflow_env, "SELECT COUNT(*) FROM CORE.FCT_RATINGS")[0][0]
    second = cli(airflow_env, "run", "--landing", str(landing), "--no-progress")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "success: 1 new object(s) staged" in second.stdout
    assert "0 scripts applied" in second.stdout
    assert sql(airflow_env, "SELECT COUNT(*) FROM RAW.LOAD_TRACKING")[0][0] == tracked + 1
    assert sql(airflow_env, "SELECT COUNT(*) FROM CORE.FCT_RATINGS")[0][0] == facts + new_rows


def test_a_failed_load_is_not_retried_although_the_task_has_retries(airflow_env: dict[str, str]) -> None:
    """Rejected rows over the limit fail the load task at once, retries or not (a retry would load nothing new and
    fail the same way), and no dbt task runs."""
    landing = Path(airflow_env["NETFLIX_ELT_LANDING_DIR"])
    landing.mkdir(parents=True, exist_ok=True)  # this test may run alone
    bad = "userId,movieId,rating,timestamp\n" + "".join(f"9,{i},oops,1700000000\n" for i in range(1, 11))
    (landing / "ratings_20231020.csv").write_text(bad + "9,11,4.0,1700000000\n")
    retrying = {**airflow_env, "NETFLIX_ELT_TASK_RETRIES": "2", "NETFLIX_ELT_TASK_RETRY_DELAY": "1"}
    result = orchestrate.run_dag(retrying, progress=False)
    assert result.state == "failed", result
    states = {t: v["state"] for t, v in result.tasks.items()}
    assert states["upload_landed_files"] == "success"
    assert states["run_db_raw_ingestion"] == "failed"
    assert result.tasks["run_db_raw_ingestion"]["tries"] == 1, result.tasks["run_db_raw_ingestion"]
    dbt_states = {t: s for t, s in states.items() if t.startswith("netflix_dbt_run.")}
    assert dbt_states and all(s == "upstream_failed" for s in dbt_states.values()), dbt_states
    # the reason, in one line of the task's log
    assert result.log is not None
    reason = [line for line in result.log.read_text().splitlines() if "load rejected 10 of 11 rows" in line]
    assert reason and "NETFLIX_ELT_MAX_REJECTED_SHARE" in reason[0], result.log


UPLOAD_TASK = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
task = bag.dags["full_netflix_pipeline"].get_task("upload_landed_files")
print(json.dumps({"keys": task.python_callable()}))
"""


def test_the_upload_task_returns_the_keys_of_new_content_only(airflow_env: dict[str, str]) -> None:
    """The DAG's upload task (its own function, run outside the scheduler): every landing file the first time, then
    nothing, then only a daily file added since; the load task gets these keys."""
    landing = Path(airflow_env["_ROOT"]) / "upload-task-landing"
    env = {**airflow_env, "NETFLIX_ELT_LANDING_DIR": str(landing)}
    generate_daily(landing, dt.date(2023, 12, 1), scale="tiny", seed=12)

    def upload_task() -> list[str]:
        return list(python_json(UPLOAD_TASK, env, str(REPO / "dags"))["keys"])

    first = upload_task()
    assert sorted(k.split("/")[-1] for k in first) == sorted(p.name for p in landing.iterdir()), first
    assert upload_task() == []
    (landing / "ratings_20231202.csv").write_text("userId,movieId,rating,timestamp\n12,1,4.5,1701475200\n")
    assert [k.split("/")[-1] for k in upload_task()] == ["ratings_20231202.csv"]


OPERATOR = """
import json, sys
from netflix_elt.load_task import LoadRawFilesOperator
op = LoadRawFilesOperator(
    task_id="run_db_raw_ingestion", conn_id="snowflake_default", files=sys.argv[1], autocommit=sys.argv[2] == "on"
)
try:
    print(json.dumps({"summary": op.execute(context={})}))
except Exception as e:
    print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
"""


def test_load_operator_runs_the_call_with_autocommit_on(airflow_env: dict[str, str]) -> None:
    """The DAG's load task is SQLExecuteQueryOperator's own code path (SnowflakeHook.run). With its default,
    autocommit=False, the hook turns the session's AUTOCOMMIT off and Snowflake rolls back the procedure's open
    transaction with an error; the DAG's operator runs the CALL with AUTOCOMMIT on."""
    from netflix_elt.config import Settings
    from uploader import upload

    root = Path(airflow_env["_ROOT"])
    keys = {}
    for day in (dt.date(2023, 11, 1), dt.date(2023, 11, 2)):
        landing = root / f"operator-{day:%Y%m%d}"
        generate_daily(landing, day, scale="tiny", seed=11)
        for p in landing.iterdir():
            if not p.name.startswith("ratings_"):
                p.unlink()
        settings = stack_of(airflow_env).settings
        assert isinstance(settings, Settings)
        report = upload(
            landing,
            bucket=settings.bucket,
            prefix=settings.prefix,
            s3_client=stack_of(airflow_env).s3_client(),
            progress=False,
        )
        keys[day] = report.uploaded_keys

    def operate(files: list[str], autocommit: str) -> dict[str, Any]:
        return python_json(OPERATOR, airflow_env, json.dumps(files), autocommit)

    done = operate(keys[dt.date(2023, 11, 1)], "on")
    assert "summary" in done, done
    assert done["summary"]["status"] == "SUCCESS" and done["summary"]["totals"]["loaded"] == 1, done

    refused = operate(keys[dt.date(2023, 11, 2)], "off")
    assert "error" in refused, refused
    assert "Scoped transaction started in stored procedure is incomplete" in refused["error"], refused
    # what the rolled-back CALL had copied is gone: no row of that file in RAW
    (key,) = keys[dt.date(2023, 11, 2)]
    assert (
        sql(
            airflow_env,
            f"SELECT COUNT(*) FROM RAW.RATINGS WHERE LOAD_ID IN (SELECT LOAD_ID FROM "
            f"RAW.LOAD_TRACKING WHERE FILE_KEY = '{key}')",
        )[0][0]
        == 0
    )
