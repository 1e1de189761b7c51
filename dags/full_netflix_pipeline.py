"""
### full_netflix_pipeline

Daily ELT of MovieLens files into Snowflake, in three steps that cannot run out of order:

1. **upload_landed_files**: checks every file in the landing directory against the file contracts and uploads
   new content to the stage's S3 location (nothing is uploaded if any file is invalid). XCom: the stage keys.
2. **run_db_raw_ingestion**: `CALL RAW.LOAD_RAW_FILES(<those keys>)`, with AUTOCOMMIT on. XCom: the procedure's
   JSON summary. The task fails, with the reason in one line of its log, when a file failed to load or when the
   share of rejected rows is above `NETFLIX_ELT_MAX_REJECTED_SHARE` (default 0.01); it is retried when files are
   held by another CALL or not completely staged (status WAITING). Either way dbt does not run on a partial load.
3. **netflix_dbt_run**: the dbt project (astronomer-cosmos): one task per model and snapshot (`dbt build` of it: the
   model, its tests and unit tests), one per source (freshness), and one per relationship test once both of its
   models are built. A model whose tests fail stops the models downstream of it.

Connections: `snowflake_default` (Snowflake; its extra `protocol: http` targets the local emulator; dbt uses it
too unless `NETFLIX_ELT_DBT_CONN_ID` names another; password, or key pair in extra `private_key_file` when
`SNOWFLAKE_PRIVATE_KEY_PATH` is set, with the key's passphrase as the password) and `aws_default` (S3; extra `endpoint_url` for an
S3-compatible server). Landing directory:
`NETFLIX_ELT_LANDING_DIR` (default `data/landing` in the repository). Rerun a failed run from the grid view:
every step is idempotent (uploads skip known content, the procedure skips loaded files, fct_ratings is
incremental).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, BaseHook, task
from cosmos import DbtTaskGroup, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
from cosmos.constants import (
    InvocationMode,
    LoadMode,
    SourceRenderingBehavior,
    TestBehavior,
    TestIndirectSelection,
)
from cosmos.profiles import (
    SnowflakeEncryptedPrivateKeyFilePemProfileMapping,
    SnowflakePrivateKeyFilePemProfileMapping,
    SnowflakeUserPasswordProfileMapping,
)

from netflix_elt.dbt_runtime import speed_up_dbt
from netflix_elt.load_task import LoadRawFilesOperator

REPO = Path(__file__).resolve().parent.parent
DBT_PROJECT = REPO / "netflix_dbt"
DBT_MANIFEST = Path(os.environ.get("NETFLIX_ELT_DBT_MANIFEST", DBT_PROJECT / "target" / "manifest.json"))
SNOWFLAKE_CONN_ID = "snowflake_default"
# dbt may use its own connection (e.g. with role NETFLIX_TRANSFORMER while the load uses NETFLIX_LOADER)
DBT_CONN_ID = os.environ.get("NETFLIX_ELT_DBT_CONN_ID", SNOWFLAKE_CONN_ID)
AWS_CONN_ID = "aws_default"


def _s3_client() -> Any:
    import boto3

    conn = BaseHook.get_connection(AWS_CONN_ID)
    extra = conn.extra_dejson
    return boto3.client(
        "s3",
        endpoint_url=extra.get("endpoint_url") or None,
        aws_access_key_id=conn.login or None,
        aws_secret_access_key=conn.password or None,
        region_name=extra.get("region_name", "us-east-1"),
    )


def _snowflake_profile_args() -> dict[str, Any]:
    """dbt profile settings beyond the connection's; host, port and protocol only for the local emulator."""
    args: dict[str, Any] = {"database": os.environ.get("SNOWFLAKE_DATABASE", "NETFLIX"), "schema": "ANALYTICS"}
    for key in ("host", "port", "protocol"):
        if value := os.environ.get(f"SNOWFLAKE_{key.upper()}"):
            args[key] = int(value) if key == "port" else value
    return args


def _dbt_profile_mapping() -> Any:
    """How dbt logs in with the connection: user and password, or (``SNOWFLAKE_PRIVATE_KEY_PATH`` set) the
    connection's key pair (extra ``private_key_file``; with ``SNOWFLAKE_PRIVATE_KEY_PASSPHRASE`` set, an encrypted key
    whose passphrase is the connection's password)."""
    args = _snowflake_profile_args()
    if os.environ.get("SNOWFLAKE_PRIVATE_KEY_PATH"):
        if os.environ.get("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"):
            return SnowflakeEncryptedPrivateKeyFilePemProfileMapping(conn_id=DBT_CONN_ID, profile_args=args)
        return SnowflakePrivateKeyFilePemProfileMapping(conn_id=DBT_CONN_ID, profile_args=args)
    return SnowflakeUserPasswordProfileMapping(conn_id=DBT_CONN_ID, profile_args=args)


with DAG(
    dag_id="full_netflix_pipeline",
    description="MovieLens files -> S3 -> RAW (LOAD_RAW_FILES) -> dbt (staging, core, marts)",
    doc_md=__doc__,
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": int(os.environ.get("NETFLIX_ELT_TASK_RETRIES", "2")),
        "retry_delay": timedelta(seconds=int(os.environ.get("NETFLIX_ELT_TASK_RETRY_DELAY", "60"))),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": timedelta(hours=2),
    },
    tags=["netflix-elt", "movielens"],
) as dag:

    @task(execution_timeout=timedelta(hours=1))
    def upload_landed_files() -> list[str]:
        """Upload new landing files; returns the stage keys written (the load procedure's file list)."""
        from netflix_elt.config import Settings
        from uploader import upload

        settings = Settings.from_env()
        landing = Path(os.environ.get("NETFLIX_ELT_LANDING_DIR", REPO / "data" / "landing"))
        report = upload(landing, bucket=settings.bucket, prefix=settings.prefix, s3_client=_s3_client(), progress=False)
        print(report.summary())
        return report.uploaded_keys

    uploaded = upload_landed_files()

    load = LoadRawFilesOperator(
        task_id="run_db_raw_ingestion",
        conn_id=SNOWFLAKE_CONN_ID,
        # the keys just uploaded; with none, the procedure still picks up any staged file not loaded yet
        files="{{ ti.xcom_pull(task_ids='upload_landed_files') | tojson }}",
        show_return_value_in_logs=True,
        execution_timeout=timedelta(hours=2),
    )

    dbt = DbtTaskGroup(
        group_id="netflix_dbt_run",
        project_config=ProjectConfig(dbt_project_path=DBT_PROJECT, manifest_path=DBT_MANIFEST, install_dbt_deps=False),
        profile_config=ProfileConfig(
            profile_name="netflix_dbt",
            target_name="airflow",
            profile_mapping=_dbt_profile_mapping(),
        ),
        # a model's test task runs the tests whose models are all built by then (a relationship test to a model
        # in another branch runs with that model's tests instead)
        execution_config=ExecutionConfig(
            invocation_mode=InvocationMode.DBT_RUNNER, test_indirect_selection=TestIndirectSelection.BUILDABLE
        ),
        # one task per model (or snapshot): `dbt build` of the node with its tests and unit tests; a task per source
        # running the source's tests before anything reads it; a task for each test of two models (relationships)
        # once both are built. So a DAG run runs every test `dbt build` would.
        render_config=RenderConfig(
            load_method=LoadMode.DBT_MANIFEST,
            test_behavior=TestBehavior.BUILD,
            source_rendering_behavior=SourceRenderingBehavior.WITH_TESTS_OR_FRESHNESS,
            should_detach_multiple_parents_tests=True,
        ),
        # speed_up_dbt: a dbt invocation in a long-lived task process costs ~1 s instead of ~4 (see its module);
        # --no-populate-cache: a task builds one model, so dbt looks up only its relations instead of listing every
        # schema first
        operator_args={
            "install_deps": False,
            "on_execute_callback": speed_up_dbt,
            "dbt_cmd_global_flags": ["--no-populate-cache"],
        },
    )

    uploaded >> load >> dbt
