"""The Snowflake emulator, driven through the real clients: snowflake-connector-python, Snowpark and dbt."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import snowflake.connector
from snowflake.connector.errors import ProgrammingError

from netflix_elt.stack import LocalStack
from tests.conftest import REPO, free_port, snowpark_session

ECHO = """
CREATE OR REPLACE PROCEDURE {schema}.ECHO(A STRING, N NUMBER DEFAULT 2)
RETURNS VARIANT
LANGUAGE PYTHON
RUNTIME_VERSION = '3.11'
PACKAGES = ('snowflake-snowpark-python')
HANDLER = 'main'
AS
$$
import json

def main(session, a, n):
    answer = session.sql("select 40 + 2").collect()[0][0]
    return {{"a": a, "n": n, "answer": answer, "db": session.get_current_database()}}
$$
"""


def run(conn: Any, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    cur.execute(sql, params)
    return list(cur.fetchall())


def new_schema(conn: Any) -> str:
    name = "T_" + uuid.uuid4().hex[:8].upper()
    run(conn, f"CREATE SCHEMA {name}")
    run(conn, "USE SCHEMA PUBLIC")
    return name


# -- procedures ------------------------------------------------------------------------------------------------------


def test_python_procedure_created_and_called_through_the_connector(sf: Any) -> None:
    schema = new_schema(sf)
    assert run(sf, ECHO.format(schema=schema)) == [("Function ECHO successfully created.",)]

    (value,) = run(sf, f"CALL {schema}.ECHO('hello')")[0]
    assert json.loads(value) == {"a": "hello", "n": 2, "answer": 42, "db": '"NETFLIX"'}

    # named arguments, bound parameters, and the result column named after the procedure
    cur = sf.cursor()
    cur.execute(f"CALL {schema}.ECHO(N => 7, A => 'named')")
    assert json.loads(cur.fetchone()[0])["n"] == 7
    assert cur.description[0].name == "ECHO"
    cur.execute(f"CALL {schema}.ECHO(%s, %s)", ("bound", 9))
    assert json.loads(cur.fetchone()[0])["a"] == "bound"


def test_procedure_return_types(sf: Any) -> None:
    schema = new_schema(sf)
    for returns, body, expected in [
        ("STRING", "return 'ok'", "ok"),
        ("NUMBER", "return 41 + 1", 42),
        ("BOOLEAN", "return True", True),
        ("FLOAT", "return 0.5", 0.5),
    ]:
        run(
            sf,
            f"CREATE OR REPLACE PROCEDURE {schema}.R_{returns}() RETURNS {returns} LANGUAGE PYTHON "
            f"RUNTIME_VERSION='3.11' PACKAGES=('snowflake-snowpark-python') HANDLER='main' "
            f"AS $$\ndef main(session):\n    {body}\n$$",
        )
        assert run(sf, f"CALL {schema}.R_{returns}()")[0][0] == expected


def test_procedure_called_from_snowpark(stack: LocalStack, sf: Any) -> None:
    schema = new_schema(sf)
    run(sf, ECHO.format(schema=schema))
    session = snowpark_session(stack, schema)
    try:
        value = session.call(f"{schema}.ECHO", "snowpark", 3)
    finally:
        session.close()
    assert json.loads(value)["a"] == "snowpark"
    assert json.loads(value)["n"] == 3


def test_procedure_called_from_dbt_run_operation(stack: LocalStack, sf: Any) -> None:
    schema = new_schema(sf)
    run(sf, f"CREATE TABLE {schema}.CALLS (WHO VARCHAR)")
    run(
        sf,
        f"CREATE OR REPLACE PROCEDURE {schema}.MARK(WHO STRING) RETURNS STRING LANGUAGE PYTHON "
        "RUNTIME_VERSION='3.11' PACKAGES=('snowflake-snowpark-python') HANDLER='main' AS $$\n"
        "def main(session, who):\n"
        f"    session.sql(f\"insert into {schema}.CALLS values ('{{who}}')\").collect()\n"
        "    return 'marked ' + who\n$$",
    )
    env = {**os.environ, **stack.env()}
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "dbt"),
            "run-operation",
            "call_procedure",
            "--args",
            json.dumps({"name": f"{schema}.MARK", "args": ["'dbt'"]}),
            "--project-dir",
            str(REPO / "netflix_dbt"),
            "--profiles-dir",
            str(REPO / "netflix_dbt"),
            "--target-path",
            str(stack.root / "dbt-target"),
            "--log-path",
            str(stack.root / "dbt-logs"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{schema}.MARK returned: marked dbt" in proc.stdout
    assert run(sf, f"SELECT WHO FROM {schema}.CALLS") == [("dbt",)]


def test_procedure_errors_are_snowflake_errors(sf: Any) -> None:
    schema = new_schema(sf)
    header = (
        f"CREATE OR REPLACE PROCEDURE {schema}.{{name}}() RETURNS STRING LANGUAGE PYTHON RUNTIME_VERSION='3.11' "
        "PACKAGES=('snowflake-snowpark-python') HANDLER='main' AS $$\n"
    )
    run(sf, header.format(name="BOOM") + "def main(session):\n    raise ValueError('bad input file')\n$$")
    with pytest.raises(ProgrammingError) as e:
        run(sf, f"CALL {schema}.BOOM()")
    assert e.value.errno == 100357
    assert "ValueError: bad input file" in e.value.msg

    # the sandbox allows the standard library and snowpark, nothing else
    run(sf, header.format(name="NET") + "import requests\ndef main(session):\n    return 'x'\n$$")
    with pytest.raises(ProgrammingError) as e:
        run(sf, f"CALL {schema}.NET()")
    assert "No module named 'requests'" in e.value.msg

    with pytest.raises(ProgrammingError):
        run(sf, header.format(name="SYNTAX") + "def main(session) return 1\n$$")
    with pytest.raises(ProgrammingError) as e:
        run(sf, f"CALL {schema}.NOPE()")
    assert "Unknown user-defined function" in e.value.msg


def test_query_tag_and_cancel_all_queries(sf: Any) -> None:
    assert run(sf, "ALTER SESSION SET QUERY_TAG = 'netflix-elt test'")[0][0] == "Statement executed successfully."
    assert run(sf, "ALTER SESSION UNSET QUERY_TAG")[0][0] == "Statement executed successfully."
    assert run(sf, "SELECT SYSTEM$CANCEL_ALL_QUERIES(1)")[0][0] == "success"


# -- stages and COPY -----------------------------------------------------------------------------------------------

GOOD = "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n2,6,3.0,964982224\n"
BAD = (
    "userId,movieId,rating,timestamp\n"
    "1,1,4.0,964982703\n"  # row 1 ok
    "1,3,x,964981247\n"  # row 2 non-numeric rating
    "1,6,4.0\n"  # row 3 missing a field
    "1,47,5.0,964983815\n"  # row 4 ok
    "1,50,5.0,964982931,9\n"  # row 5 extra field
    "\xff\xfe,1,1,1\n"  # row 6 invalid UTF-8 (written as latin-1 below)
    "3,3,3.5,3\n"  # row 7 ok
)


@pytest.fixture()
def staged(stack: LocalStack, sf: Any) -> dict[str, str]:
    """A fresh prefix in the S3 server with nested keys, a stage on it, a file format and a RATINGS-shaped table."""
    s3 = stack.s3_client()
    prefix = f"t{uuid.uuid4().hex[:8]}/"
    bucket = stack.settings.bucket
    s3.put_object(Bucket=bucket, Key=prefix + "ratings/2026/11/30/ratings.csv", Body=GOOD.encode())
    s3.put_object(Bucket=bucket, Key=prefix + "ratings/2026/12/01/ratings_20261201.csv", Body=BAD.encode("latin-1"))
    s3.put_object(Bucket=bucket, Key=prefix + "movies/movies.csv", Body=b"movieId,title,genres\n1,Toy Story,Comedy\n")
    schema = new_schema(sf)
    run(sf, f"CREATE STAGE {schema}.LANDING URL = 's3://{bucket}/{prefix}'")
    run(
        sf,
        f"CREATE FILE FORMAT {schema}.CSV TYPE = CSV SKIP_HEADER = 1 FIELD_OPTIONALLY_ENCLOSED_BY = '\"' "
        "EMPTY_FIELD_AS_NULL = TRUE",
    )
    run(
        sf,
        f"CREATE TABLE {schema}.RATINGS (USER_ID NUMBER(38,0) NOT NULL, MOVIE_ID NUMBER(38,0) NOT NULL, "
        "RATING NUMBER(2,1) NOT NULL, EPOCH_SECONDS NUMBER(38,0) NOT NULL)",
    )
    run(
        sf,
        f"CREATE TABLE {schema}.RATINGS_LINEAGE (USER_ID NUMBER(38,0) NOT NULL, MOVIE_ID NUMBER(38,0) NOT NULL, "
        "RATING NUMBER(2,1) NOT NULL, EPOCH_SECONDS NUMBER(38,0) NOT NULL, SOURCE_FILE VARCHAR, "
        "SOURCE_ROW_NUMBER NUMBER(38,0), LOAD_ID VARCHAR, LOADED_AT TIMESTAMP_NTZ)",
    )
    return {"schema": schema, "prefix": prefix, "bucket": bucket}


def test_list_external_stage_with_nested_keys_and_pattern(sf: Any, staged: dict[str, str]) -> None:
    schema, base = staged["schema"], f"s3://{staged['bucket']}/{staged['prefix']}"
    rows = run(sf, f"LIST @{schema}.LANDING")
    assert [r[0] for r in rows] == [
        base + "movies/movies.csv",
        base + "ratings/2026/11/30/ratings.csv",
        base + "ratings/2026/12/01/ratings_20261201.csv",
    ]
    assert rows[1][1] == len(GOOD)
    assert [r[0] for r in run(sf, f"LIST @{schema}.LANDING/ratings/2026/11")] == [
        base + "ratings/2026/11/30/ratings.csv"
    ]
    assert [r[0] for r in run(sf, f"LIST @{schema}.LANDING PATTERN = '.*ratings_[0-9]{{8}}[.]csv'")] == [
        base + "ratings/2026/12/01/ratings_20261201.csv"
    ]


def test_copy_with_pattern_loads_once_then_skips(sf: Any, staged: dict[str, str]) -> None:
    schema = staged["schema"]
    copy = (
        f"COPY INTO {schema}.RATINGS FROM @{schema}.LANDING/ratings/ PATTERN = '.*/ratings[.]csv' "
        f"FILE_FORMAT = (FORMAT_NAME = '{schema}.CSV')"
    )
    rows = run(sf, copy)
    assert [(r[1], r[2], r[3]) for r in rows] == [("LOADED", 3, 3)]
    assert run(sf, f"SELECT count(*), sum(RATING) FROM {schema}.RATINGS")[0] == (3, pytest.approx(11.5))
    assert run(sf, copy) == [("Copy executed with 0 files processed.",)]
    assert [r[1] for r in run(sf, copy + " FORCE = TRUE")] == ["LOADED"]
    assert run(sf, f"SELECT count(*) FROM {schema}.RATINGS")[0][0] == 6


def test_truncate_forgets_load_history(sf: Any, staged: dict[str, str]) -> None:
    schema = staged["schema"]
    copy = (
        f"COPY INTO {schema}.RATINGS FROM @{schema}.LANDING/ratings/ PATTERN = '.*/ratings[.]csv' "
        f"FILE_FORMAT = (FORMAT_NAME = '{schema}.CSV')"
    )
    assert run(sf, copy)[0][1] == "LOADED"
    run(sf, f"TRUNCATE TABLE {schema}.RATINGS")
    assert run(sf, copy)[0][1] == "LOADED"  # as in Snowflake, TRUNCATE deletes the load metadata
    assert run(sf, f"SELECT count(*) FROM {schema}.RATINGS")[0][0] == 3
    run(sf, f"DELETE FROM {schema}.RATINGS")
    assert run(sf, copy) == [("Copy executed with 0 files processed.",)]  # DELETE does not


def test_copy_on_error_continue_records_every_rejected_row(sf: Any, staged: dict[str, str]) -> None:
    schema = staged["schema"]
    rows = run(
        sf,
        f"COPY INTO {schema}.RATINGS FROM @{schema}.LANDING/ratings/ FILES = ('2026/12/01/ratings_20261201.csv') "
        f"FILE_FORMAT = (FORMAT_NAME = '{schema}.CSV') ON_ERROR = CONTINUE",
    )
    (file, status, parsed, loaded, _limit, errors, first_error, first_line, _char, first_col) = rows[0]
    assert file.endswith("ratings/2026/12/01/ratings_20261201.csv")
    assert (status, parsed, loaded, errors) == ("PARTIALLY_LOADED", 7, 3, 4)
    assert parsed == loaded + errors
    assert first_error == "Numeric value 'x' is not recognized"
    assert first_line == 3  # line 3 of the file (the header is line 1)
    assert "RATING" in first_col

    rejected = run(
        sf, f"SELECT LINE, ROW_NUMBER, ERROR, REJECTED_RECORD FROM TABLE(VALIDATE({schema}.RATINGS, JOB_ID => '_last'))"
    )
    assert [(r[0], r[1]) for r in rejected] == [(3, 2), (4, 3), (6, 5), (7, 6)]
    assert "Number of columns in file (3)" in rejected[1][2]
    assert "Number of columns in file (5)" in rejected[2][2]
    assert "Invalid UTF8" in rejected[3][2]
    assert rejected[0][3] == "1,3,x,964981247"
    assert run(sf, f"SELECT MOVIE_ID FROM {schema}.RATINGS ORDER BY MOVIE_ID") == [(1,), (3,), (47,)]


def test_copy_skip_file_and_abort_statement(sf: Any, staged: dict[str, str]) -> None:
    schema = staged["schema"]
    base = (
        f"COPY INTO {schema}.RATINGS FROM @{schema}.LANDING/ratings/ "
        f"FILE_FORMAT = (FORMAT_NAME = '{schema}.CSV') FORCE = TRUE "
    )
    rows = {r[0].rsplit("/", 1)[-1]: r[1] for r in run(sf, base + "ON_ERROR = SKIP_FILE")}
    assert rows == {"ratings.csv": "LOADED", "ratings_20261201.csv": "LOAD_FAILED"}
    assert run(sf, f"SELECT count(*) FROM {schema}.RATINGS")[0][0] == 3

    rows = {r[0].rsplit("/", 1)[-1]: r[1] for r in run(sf, base + "ON_ERROR = SKIP_FILE_5")}
    assert rows["ratings_20261201.csv"] == "PARTIALLY_LOADED"  # 4 errors < 5

    before = run(sf, f"SELECT count(*) FROM {schema}.RATINGS")[0][0]
    with pytest.raises(ProgrammingError) as e:
        run(sf, base + "ON_ERROR = ABORT_STATEMENT")
    assert "Numeric value 'x' is not recognized" in e.value.msg
    assert "ratings_20261201.csv', line 3" in e.value.msg
    assert run(sf, f"SELECT count(*) FROM {schema}.RATINGS")[0][0] == before  # nothing from the statement


def test_copy_validation_mode_returns_errors_without_loading(sf: Any, staged: dict[str, str]) -> None:
    schema = staged["schema"]
    rows = run(
        sf,
        f"COPY INTO {schema}.RATINGS FROM @{schema}.LANDING/ratings/ FILES = ('2026/12/01/ratings_20261201.csv') "
        f"FILE_FORMAT = (FORMAT_NAME = '{schema}.CSV') VALIDATION_MODE = RETURN_ALL_ERRORS",
    )
    assert [r[2] for r in rows] == [3, 4, 6, 7]
    assert run(sf, f"SELECT count(*) FROM {schema}.RATINGS")[0][0] == 0


def test_copy_with_transformation_fills_lineage(sf: Any, staged: dict[str, str]) -> None:
    schema = staged["schema"]
    rows = run(
        sf,
        f"COPY INTO {schema}.RATINGS_LINEAGE (USER_ID, MOVIE_ID, RATING, EPOCH_SECONDS, SOURCE_FILE, "
        "SOURCE_ROW_NUMBER, LOAD_ID, LOADED_AT) FROM (SELECT $1, $2, $3, $4, METADATA$FILENAME, "
        f"METADATA$FILE_ROW_NUMBER, 'load-1', CURRENT_TIMESTAMP() FROM @{schema}.LANDING/ratings/) "
        f"PATTERN = '.*[.]csv' FILE_FORMAT = (FORMAT_NAME = '{schema}.CSV') ON_ERROR = CONTINUE",
    )
    # a COPY with a transformation ignores ERROR_ON_COLUMN_COUNT_MISMATCH: the row with an extra field loads
    assert sorted((r[1], r[2], r[3]) for r in rows) == [("LOADED", 3, 3), ("PARTIALLY_LOADED", 7, 4)]
    got = run(
        sf,
        f"SELECT SOURCE_FILE, SOURCE_ROW_NUMBER, MOVIE_ID, LOAD_ID FROM {schema}.RATINGS_LINEAGE "
        "ORDER BY SOURCE_FILE, SOURCE_ROW_NUMBER",
    )
    # METADATA$FILENAME: the object's path in the bucket, the stage URL's path included
    path = staged["prefix"]
    assert got == [
        (path + "ratings/2026/11/30/ratings.csv", 1, 1, "load-1"),
        (path + "ratings/2026/11/30/ratings.csv", 2, 3, "load-1"),
        (path + "ratings/2026/11/30/ratings.csv", 3, 6, "load-1"),
        (path + "ratings/2026/12/01/ratings_20261201.csv", 1, 1, "load-1"),
        (path + "ratings/2026/12/01/ratings_20261201.csv", 4, 47, "load-1"),
        (path + "ratings/2026/12/01/ratings_20261201.csv", 5, 50, "load-1"),
        (path + "ratings/2026/12/01/ratings_20261201.csv", 7, 3, "load-1"),
    ]
    # as in Snowflake, VALIDATE does not support loads with transformation
    with pytest.raises(ProgrammingError, match="transform"):
        run(sf, f"SELECT * FROM TABLE(VALIDATE({schema}.RATINGS_LINEAGE, JOB_ID => '_last'))")


def test_stage_read_through_the_s3_api_sees_the_same_files(stack: LocalStack, staged: dict[str, str]) -> None:
    """An emulator without the local-disk shortcut reads the stage through the S3 API (boto3 + s3fs)."""
    port = free_port()
    env = {**os.environ, **stack.env()}
    log = stack.root / "logs" / "snowflake-s3api.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "snowflake.emulator",
                "--port",
                str(port),
                "--s3-endpoint",
                stack.settings.s3_endpoint,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        import time

        from netflix_elt.stack import port_open

        deadline = time.monotonic() + 30
        while not port_open(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        conn = snowflake.connector.connect(
            account="emulator", user="u", password="p", host="127.0.0.1", port=port, protocol="http",
            database="NETFLIX", schema="PUBLIC", network_timeout=120,
        )  # fmt: skip
        schema = "S3API"
        run(conn, f"CREATE SCHEMA {schema}")
        run(conn, f"CREATE STAGE {schema}.LANDING URL = 's3://{staged['bucket']}/{staged['prefix']}'")
        run(conn, f"CREATE TABLE {schema}.R (A NUMBER, B NUMBER, C NUMBER(2,1), D NUMBER)")
        assert len(run(conn, f"LIST @{schema}.LANDING/ratings/")) == 2
        rows = run(
            conn,
            f"COPY INTO {schema}.R FROM @{schema}.LANDING/ratings/ FILE_FORMAT = (TYPE = CSV SKIP_HEADER = 1) "
            "ON_ERROR = CONTINUE",
        )
        assert sorted((r[1], r[2], r[3]) for r in rows) == [("LOADED", 3, 3), ("PARTIALLY_LOADED", 7, 3)]
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
