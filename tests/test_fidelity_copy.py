"""The emulator's COPY INTO <table> is as strict as Snowflake, and behaves like it, where the load relies on it.

Each test drives the emulator through the Snowflake connector against files in the local stack's S3 server, on an
external stage whose URL has a path (as the project's ``s3://<bucket>/movielens/``):

- METADATA$FILENAME, VALIDATION_MODE's FILE and the ABORT_STATEMENT error name the object's path in the bucket
  (stage URL path included); the COPY result and LIST show the full ``s3://`` URL
  (https://docs.snowflake.com/en/user-guide/querying-metadata);
- a COPY with a transformation ignores ERROR_ON_COLUMN_COUNT_MISMATCH; one without (and VALIDATION_MODE) rejects
  such records when the file format says TRUE (https://docs.snowflake.com/en/user-guide/data-load-transform);
- EMPTY_FIELD_AS_NULL = FALSE, IFF/NULLIF/CASE/IS NULL/casts in transformations, the clauses Snowflake refuses;
- a COPY without FILE_FORMAT uses the stage's (https://docs.snowflake.com/en/sql-reference/sql/copy-into-table);
- CURRENT_TIMESTAMP()/SYSDATE() in a transformation follow the session's TIMEZONE and the emulator's clock, also
  for files loaded on connections of their own.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from snowflake.connector.errors import ProgrammingError

from netflix_elt.stack import LocalStack


def run(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    cur.execute(sql)
    return list(cur.fetchall())


@pytest.fixture()
def landing(stack: LocalStack, sf: Any) -> dict[str, Any]:
    """A fresh ``<prefix>movielens/`` folder in the S3 server, an external stage on it, and a schema."""
    prefix = f"t{uuid.uuid4().hex[:8]}/movielens/"
    bucket = stack.settings.bucket
    schema = "C_" + uuid.uuid4().hex[:8].upper()
    run(sf, f"CREATE SCHEMA {schema}")
    run(sf, f"CREATE STAGE {schema}.LANDING URL = 's3://{bucket}/{prefix}'")
    s3 = stack.s3_client()

    def put(key: str, body: str) -> str:
        s3.put_object(Bucket=bucket, Key=prefix + key, Body=body.encode())
        return key

    return {"schema": schema, "prefix": prefix, "bucket": bucket, "put": put}


def test_metadata_filename_is_the_path_in_the_bucket(sf: Any, landing: dict[str, Any]) -> None:
    schema, prefix, bucket = landing["schema"], landing["prefix"], landing["bucket"]
    key = landing["put"]("ratings/20261130T061502Z_3f2a9c0d1e4b5a6f/ratings.csv", "userId,movieId\n1,2\nx,3\n")
    run(sf, f"CREATE FILE FORMAT {schema}.CSV TYPE = CSV SKIP_HEADER = 1")
    run(sf, f"CREATE TABLE {schema}.T (A NUMBER, B NUMBER, F VARCHAR)")
    rows = run(
        sf,
        f"COPY INTO {schema}.T FROM (SELECT $1, $2, METADATA$FILENAME FROM @{schema}.LANDING) "
        f"FILE_FORMAT = (FORMAT_NAME = '{schema}.CSV') ON_ERROR = CONTINUE",
    )
    assert rows[0][0] == f"s3://{bucket}/{prefix}{key}"  # the COPY result: the full URL
    assert run(sf, f"SELECT DISTINCT F FROM {schema}.T") == [(prefix + key,)]
    assert [r[0] for r in run(sf, f"LIST @{schema}.LANDING")] == [f"s3://{bucket}/{prefix}{key}"]

    run(sf, f"CREATE TABLE {schema}.U (A NUMBER, B NUMBER)")
    errors = run(
        sf,
        f"COPY INTO {schema}.U FROM @{schema}.LANDING FILE_FORMAT = (FORMAT_NAME = '{schema}.CSV') "
        "VALIDATION_MODE = RETURN_ERRORS",
    )
    assert [(e[1], e[2]) for e in errors] == [(prefix + key, 3)]
    with pytest.raises(ProgrammingError) as e:
        run(sf, f"COPY INTO {schema}.U FROM @{schema}.LANDING FILE_FORMAT = (FORMAT_NAME = '{schema}.CSV')")
    assert f"File '{prefix}{key}', line 3" in e.value.msg
    assert "Row 2 starts at line 3" in e.value.msg


SHAPES = "1,a,b,c\n2,a\n3,a,b,c,extra\n,a,b,c\n"  # a full record, a short one, a long one, one without A


def test_transformation_ignores_column_count_mismatch(sf: Any, landing: dict[str, Any]) -> None:
    schema = landing["schema"]
    landing["put"]("shapes/f.csv", SHAPES)
    run(sf, f"CREATE FILE FORMAT {schema}.STRICT TYPE = CSV ERROR_ON_COLUMN_COUNT_MISMATCH = TRUE")
    run(sf, f"CREATE TABLE {schema}.T (A NUMBER NOT NULL, B VARCHAR, D VARCHAR)")
    rows = run(
        sf,
        f"COPY INTO {schema}.T FROM (SELECT $1, $2, $4 FROM @{schema}.LANDING/shapes/) "  # $4: beyond T's 3 columns
        f"FILE_FORMAT = (FORMAT_NAME = '{schema}.STRICT') ON_ERROR = CONTINUE",
    )
    assert [(r[1], r[2], r[3], r[5]) for r in rows] == [("PARTIALLY_LOADED", 4, 3, 1)]
    assert rows[0][6] == "NULL result in a non-nullable column" and rows[0][7] == 4
    assert run(sf, f"SELECT A, B, D FROM {schema}.T ORDER BY A") == [(1, "a", "c"), (2, "a", None), (3, "a", "c")]


def test_copy_without_transformation_rejects_column_count_mismatch(sf: Any, landing: dict[str, Any]) -> None:
    schema = landing["schema"]
    landing["put"]("shapes/f.csv", SHAPES)
    run(sf, f"CREATE FILE FORMAT {schema}.STRICT TYPE = CSV ERROR_ON_COLUMN_COUNT_MISMATCH = TRUE")
    run(sf, f"CREATE TABLE {schema}.T (A NUMBER, B VARCHAR, C VARCHAR, D VARCHAR)")
    copy = f"COPY INTO {schema}.T FROM @{schema}.LANDING/shapes/ FILE_FORMAT = (FORMAT_NAME = '{schema}.STRICT')"
    errors = run(sf, copy + " VALIDATION_MODE = RETURN_ERRORS")
    mismatch = (
        "Number of columns in file ({}) does not match that of the corresponding table (4), "
        "use file format option error_on_column_count_mismatch=false to ignore this error"
    )
    assert [(e[0], e[2]) for e in errors] == [(mismatch.format(2), 2), (mismatch.format(5), 3)]
    rows = run(sf, copy + " ON_ERROR = CONTINUE")
    assert [(r[1], r[2], r[3], r[5]) for r in rows] == [("PARTIALLY_LOADED", 4, 2, 2)]
    # FALSE: the record's extra fields are dropped, its missing ones NULL
    run(sf, f"TRUNCATE TABLE {schema}.T")
    run(sf, copy.replace(f"FORMAT_NAME = '{schema}.STRICT'", "TYPE = CSV ERROR_ON_COLUMN_COUNT_MISMATCH = FALSE"))
    assert run(sf, f"SELECT A, B, C, D FROM {schema}.T ORDER BY A NULLS LAST") == [
        (1, "a", "b", "c"),
        (2, "a", None, None),
        (3, "a", "b", "c"),
        (None, "a", "b", "c"),
    ]


def test_empty_field_as_null_false_and_conditional_functions(sf: Any, landing: dict[str, Any]) -> None:
    schema = landing["schema"]
    landing["put"]("e/f.csv", '1,,"",x\n2,5,y,\n3,abc,z,w\n')
    run(
        sf,
        f"CREATE FILE FORMAT {schema}.KEEP TYPE = CSV FIELD_OPTIONALLY_ENCLOSED_BY = '\"' "
        "EMPTY_FIELD_AS_NULL = FALSE NULL_IF = ()",
    )
    run(
        sf,
        f"CREATE TABLE {schema}.T (ID NUMBER NOT NULL, RAW2 VARCHAR, RAW3 VARCHAR, MISSING VARCHAR, "
        "N NUMBER, M VARCHAR, K VARCHAR, HAS4 BOOLEAN)",
    )
    rows = run(
        sf,
        f"COPY INTO {schema}.T FROM (SELECT $1::NUMBER, $2, $3, $5, IFF($2 = '', NULL, $2::NUMBER), NULLIF($3, ''), "
        f"CASE WHEN $4 = '' THEN 'empty' ELSE $4 END, $5 IS NULL FROM @{schema}.LANDING/e/) "
        f"FILE_FORMAT = (FORMAT_NAME = '{schema}.KEEP') ON_ERROR = CONTINUE",
    )
    assert [(r[1], r[2], r[3], r[6]) for r in rows] == [
        ("PARTIALLY_LOADED", 3, 2, "Numeric value 'abc' is not recognized")
    ]
    assert run(sf, f"SELECT ID, RAW2, RAW3, MISSING, N, M, K, HAS4 FROM {schema}.T ORDER BY ID") == [
        (1, "", "", None, None, None, "x", True),
        (2, "5", "y", None, 5, "y", "empty", True),
    ]


def test_transformation_clauses_snowflake_refuses(sf: Any, landing: dict[str, Any]) -> None:
    schema = landing["schema"]
    landing["put"]("w/f.csv", "1\n2\n")
    run(sf, f"CREATE TABLE {schema}.T (A NUMBER)")
    for clause in ("WHERE $1 = '1'", "ORDER BY $1", "LIMIT 1"):
        with pytest.raises(ProgrammingError, match="not supported in a COPY transformation"):
            run(sf, f"COPY INTO {schema}.T FROM (SELECT $1 FROM @{schema}.LANDING/w/ {clause})")
    assert run(sf, f"SELECT count(*) FROM {schema}.T") == [(0,)]


def test_copy_without_file_format_uses_the_stages(stack: LocalStack, sf: Any, landing: dict[str, Any]) -> None:
    schema, prefix, bucket = landing["schema"], landing["prefix"], landing["bucket"]
    landing["put"]("h/f.csv", "id|name\n1|a\n")
    run(sf, f"CREATE FILE FORMAT {schema}.PIPES TYPE = CSV FIELD_DELIMITER = '|' SKIP_HEADER = 1")
    run(
        sf, f"CREATE STAGE {schema}.NAMED URL = 's3://{bucket}/{prefix}' FILE_FORMAT = (FORMAT_NAME = '{schema}.PIPES')"
    )
    run(
        sf,
        f"CREATE STAGE {schema}.INLINE URL = 's3://{bucket}/{prefix}' "
        "FILE_FORMAT = (TYPE = CSV FIELD_DELIMITER = '|' SKIP_HEADER = 1)",
    )
    run(sf, f"CREATE TABLE {schema}.T (ID NUMBER, NAME VARCHAR)")
    for stage in ("NAMED", "INLINE"):
        rows = run(sf, f"COPY INTO {schema}.T FROM @{schema}.{stage}/h/ FORCE = TRUE")
        assert [(r[1], r[2], r[3]) for r in rows] == [("LOADED", 1, 1)]
    assert run(sf, f"SELECT ID, NAME FROM {schema}.T") == [(1, "a"), (1, "a")]
    # the stage without a file format: CSV defaults (a comma, no header to skip), so the header is a bad row
    with pytest.raises(ProgrammingError, match="Number of columns in file"):
        run(sf, f"COPY INTO {schema}.T FROM @{schema}.LANDING/h/ FORCE = TRUE")


def test_current_timestamp_follows_session_timezone_and_clock(sf: Any, landing: dict[str, Any]) -> None:
    schema = landing["schema"]
    for n in range(4):  # several files: loaded at once, on DuckDB connections of their own
        landing["put"](f"ts/f{n}.csv", f"{n}\n")
    run(sf, f"CREATE TABLE {schema}.T (A NUMBER, LOCAL_TS TIMESTAMP_NTZ, UTC_TS TIMESTAMP_NTZ)")
    run(sf, "ALTER SESSION SET TIMEZONE = 'Asia/Tokyo'")
    run(sf, "SELECT SYSTEM$EMULATOR_SET_CLOCK('2026-11-01 08:50:00')")
    try:
        rows = run(
            sf,
            f"COPY INTO {schema}.T FROM (SELECT $1, CURRENT_TIMESTAMP()::TIMESTAMP_NTZ, SYSDATE() "
            f"FROM @{schema}.LANDING/ts/) ON_ERROR = CONTINUE",
        )
    finally:
        run(sf, "SELECT SYSTEM$EMULATOR_SET_CLOCK(NULL)")
    assert sorted(r[1] for r in rows) == ["LOADED"] * 4
    got = run(sf, f"SELECT A, LOCAL_TS, UTC_TS FROM {schema}.T ORDER BY A")
    assert [r[0] for r in got] == [0, 1, 2, 3]
    for _a, local, utc in got:
        assert dt.datetime(2026, 11, 1, 17, 50) <= local < dt.datetime(2026, 11, 1, 17, 55)  # Tokyo: UTC+9
        assert dt.datetime(2026, 11, 1, 8, 50) <= utc < dt.datetime(2026, 11, 1, 8, 55)


def test_copy_with_autocommit_off_is_part_of_the_transaction(sf: Any, landing: dict[str, Any]) -> None:
    """With AUTOCOMMIT off, a COPY (DML) begins a transaction: ROLLBACK undoes its rows, as for an INSERT."""
    schema = landing["schema"]
    landing["put"]("ac/1.csv", "1\n2\n")
    landing["put"]("ac/2.csv", "3\n")  # several files: each is loaded on a DuckDB connection of its own
    run(sf, f"CREATE TABLE {schema}.AC (A NUMBER)")
    sf.autocommit(False)
    try:
        assert sorted(r[1] for r in run(sf, f"COPY INTO {schema}.AC FROM @{schema}.LANDING/ac/")) == ["LOADED"] * 2
        sf.rollback()
    finally:
        sf.autocommit(True)
    assert run(sf, f"SELECT COUNT(*) FROM {schema}.AC") == [(0,)]
