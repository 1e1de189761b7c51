"""Session behaviour of the emulator that must be as strict as Snowflake's, through the real connector: AUTOCOMMIT
and scoped transactions in CALL, the TIMEZONE parameter and the emulator's clock, named temporary objects in
owner's-rights procedures, long statements answered "in progress" and polled (run once), and SQL errors that are
Snowflake errors (never HTTP 500)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from snowflake.connector.errors import DatabaseError, ProgrammingError

from netflix_elt import contracts
from netflix_elt.generate import generate_daily
from netflix_elt.stack import LocalStack
from tests.conftest import make_stack, upload_to

pytestmark = pytest.mark.slow(minutes=2)

RESULT_WAIT = 1  # seconds this module's emulator waits before answering "in progress"


def run(conn: Any, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    cur.execute(sql, params)
    return list(cur.fetchall())


def procedure(name: str, body: str, *, returns: str = "INT", args: str = "", rights: str = "OWNER") -> str:
    """CREATE PROCEDURE for a Python handler ``main(session, ...)``."""
    return (
        f"CREATE OR REPLACE PROCEDURE {name}({args}) RETURNS {returns} LANGUAGE PYTHON RUNTIME_VERSION = '3.11' "
        f"PACKAGES = ('snowflake-snowpark-python') HANDLER = 'main' EXECUTE AS {rights} AS $$\n{body}\n$$"
    )


@pytest.fixture(scope="module")
def quick_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack of its own whose emulator answers "in progress" after RESULT_WAIT seconds (keeps the tests short)."""
    stack = make_stack(tmp_path_factory.mktemp("session-stack"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SNOWFLAKE_EMULATOR_RESULT_WAIT", str(RESULT_WAIT))
        stack.up()
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture()
def connect(quick_stack: LocalStack) -> Iterator[Callable[..., Any]]:
    """Opens connector sessions in a fresh schema of the test's own; closes them at the end."""
    schema = "SESSION_" + uuid.uuid4().hex[:8].upper()
    opened: list[Any] = []

    def open_session(**kwargs: Any) -> Any:
        conn = quick_stack.connect(schema=schema, **{"network_timeout": 60, **kwargs})
        opened.append(conn)
        return conn

    admin = quick_stack.connect(network_timeout=60)
    opened.append(admin)
    run(admin, f"CREATE SCHEMA {schema}")
    yield open_session
    with contextlib.suppress(DatabaseError):
        run(admin, "SELECT SYSTEM$EMULATOR_SET_CLOCK(NULL)")
    for conn in opened:
        conn.close()


# -- AUTOCOMMIT and scoped transactions in CALL -----------------------------------------------------------------------

INSERT_ONLY = "def main(session):\n    session.sql('INSERT INTO T VALUES (1)').collect()\n    return 1"
INSERT_COMMITTED = (
    "def main(session):\n"
    "    session.sql('BEGIN TRANSACTION').collect()\n"
    "    session.sql('INSERT INTO T VALUES (1)').collect()\n"
    "    session.sql('COMMIT').collect()\n"
    "    return 1"
)
BEGIN_LEFT_OPEN = (
    "def main(session):\n"
    "    session.sql('BEGIN TRANSACTION').collect()\n"
    "    session.sql('INSERT INTO T VALUES (1)').collect()\n"
    "    return 1"
)


def test_call_under_autocommit_off_fails_when_the_procedure_leaves_its_transaction_open(connect: Any) -> None:
    conn = connect()
    run(conn, "CREATE TABLE T (A INT)")
    run(conn, procedure("INSERT_ONLY", INSERT_ONLY))
    run(conn, procedure("INSERT_COMMITTED", INSERT_COMMITTED))
    conn.autocommit(False)  # what Airflow's SQLExecuteQueryOperator does by default (SnowflakeHook.run)
    with pytest.raises(ProgrammingError) as e:
        run(conn, "CALL INSERT_ONLY()")
    assert e.value.errno == 90232
    assert "Scoped transaction started in stored procedure is incomplete and it was rolled back." in e.value.msg
    assert run(connect(), "SELECT COUNT(*) FROM T") == [(0,)]  # its insert was rolled back
    # a handler that commits what it started is fine with AUTOCOMMIT off
    assert run(conn, "CALL INSERT_COMMITTED()") == [(1,)]
    conn.commit()
    assert run(connect(), "SELECT COUNT(*) FROM T") == [(1,)]
    # with AUTOCOMMIT on, the same insert commits by itself
    conn.autocommit(True)
    assert run(conn, "CALL INSERT_ONLY()") == [(1,)]
    assert run(connect(), "SELECT COUNT(*) FROM T") == [(2,)]


def test_call_fails_when_the_procedure_leaves_an_explicit_transaction_open(connect: Any) -> None:
    conn = connect()
    run(conn, "CREATE TABLE T (A INT)")
    run(conn, procedure("BEGIN_LEFT_OPEN", BEGIN_LEFT_OPEN))
    with pytest.raises(ProgrammingError, match="Scoped transaction started in stored procedure is incomplete"):
        run(conn, "CALL BEGIN_LEFT_OPEN()")
    assert run(conn, "SELECT COUNT(*) FROM T") == [(0,)]


def test_call_inside_the_callers_open_transaction_is_refused(connect: Any) -> None:
    conn = connect()
    run(conn, "CREATE TABLE T (A INT)")
    run(conn, procedure("INSERT_COMMITTED", INSERT_COMMITTED))
    conn.autocommit(False)
    run(conn, "INSERT INTO T VALUES (5)")  # opens the caller's transaction
    with pytest.raises(ProgrammingError, match="inside an open transaction") as e:
        run(conn, "CALL INSERT_COMMITTED()")
    assert "COMMIT or ROLLBACK first" in e.value.msg
    conn.rollback()
    assert run(conn, "CALL INSERT_COMMITTED()") == [(1,)]
    conn.commit()
    assert run(connect(), "SELECT A FROM T") == [(1,)]


# -- TIMEZONE and the emulator's clock ---------------------------------------------------------------------------------

INSTANT = dt.datetime(2026, 11, 1, 8, 50)  # UTC: 01:50 PDT in Los Angeles (DST ends at 09:00 UTC), 09:50 in Paris
NOW_SQL = "SELECT CURRENT_TIMESTAMP()::TIMESTAMP_NTZ, SYSDATE(), CURRENT_TIMESTAMP(), CURRENT_DATE()"


def near(value: dt.datetime, expected: dt.datetime) -> bool:
    """The clock runs on from the instant set: allow the seconds a test takes."""
    return dt.timedelta(0) <= value - expected < dt.timedelta(seconds=30)


def test_current_timestamp_is_in_the_session_time_zone_and_sysdate_in_utc(connect: Any) -> None:
    admin = connect()
    assert run(admin, f"SELECT SYSTEM$EMULATOR_SET_CLOCK('{INSTANT:%Y-%m-%d %H:%M:%S}')")[0][0].startswith("2026-11-01")
    # default TIMEZONE: America/Los_Angeles, Snowflake's default
    local, utc, ltz, today = run(connect(), NOW_SQL)[0]
    assert near(local, INSTANT - dt.timedelta(hours=7))
    assert near(utc, INSTANT)
    assert near(ltz.astimezone(dt.UTC).replace(tzinfo=None), INSTANT)
    assert ltz.utcoffset() == dt.timedelta(hours=-7)  # shown in the session's zone (the answer's TIMEZONE)
    assert today == dt.date(2026, 11, 1)
    # at login
    paris = connect(timezone="Europe/Paris")
    local, utc, ltz, _ = run(paris, NOW_SQL)[0]
    assert near(local, INSTANT + dt.timedelta(hours=1))
    assert near(utc, INSTANT)
    assert ltz.utcoffset() == dt.timedelta(hours=1)
    # ALTER SESSION SET / UNSET
    run(paris, "ALTER SESSION SET TIMEZONE = 'UTC'")
    local, utc, _, _ = run(paris, NOW_SQL)[0]
    assert near(local, INSTANT) and near(utc, INSTANT)
    run(paris, "ALTER SESSION UNSET TIMEZONE")
    assert near(run(paris, NOW_SQL)[0][0], INSTANT - dt.timedelta(hours=7))
    with pytest.raises(ProgrammingError, match="for parameter 'TIMEZONE'"):
        run(paris, "ALTER SESSION SET TIMEZONE = 'Mars/Olympus_Mons'")
    # the real clock again
    run(admin, "SELECT SYSTEM$EMULATOR_SET_CLOCK(NULL)")
    (utc,) = run(admin, "SELECT SYSDATE()")[0]
    assert abs(utc - dt.datetime.now(dt.UTC).replace(tzinfo=None)) < dt.timedelta(minutes=1)


def test_epoch_seconds_convert_at_utc_whatever_the_time_zone(connect: Any) -> None:
    """TO_TIMESTAMP_NTZ(<seconds since the epoch>) is that instant in UTC (stg_ratings' rated_at depends on it)."""
    conn = connect()
    run(conn, "CREATE TABLE E (S NUMBER)")
    run(conn, "INSERT INTO E VALUES (1199141999)")
    for zone in ("America/Los_Angeles", "Asia/Tokyo"):
        run(conn, f"ALTER SESSION SET TIMEZONE = '{zone}'")
        assert run(conn, "SELECT TO_TIMESTAMP_NTZ(S), TO_TIMESTAMP_NTZ(1199141999) FROM E") == [
            (dt.datetime(2007, 12, 31, 22, 59, 59), dt.datetime(2007, 12, 31, 22, 59, 59))
        ]


def test_a_procedure_runs_with_its_callers_time_zone(connect: Any) -> None:
    admin = connect()
    body = (
        "def main(session):\n"
        "    row = session.sql('SELECT CURRENT_TIMESTAMP()::TIMESTAMP_NTZ, SYSDATE()').collect()[0]\n"
        "    return [str(row[0]), str(row[1])]"
    )
    run(admin, procedure("WALL_CLOCK", body, returns="ARRAY"))
    run(admin, f"SELECT SYSTEM$EMULATOR_SET_CLOCK('{INSTANT:%Y-%m-%d %H:%M:%S}')")
    tokyo = connect(timezone="Asia/Tokyo")
    local, utc = (dt.datetime.fromisoformat(v) for v in json.loads(run(tokyo, "CALL WALL_CLOCK()")[0][0]))
    assert near(local, INSTANT + dt.timedelta(hours=9))
    assert near(utc, INSTANT)


def test_only_administrators_set_the_clock(connect: Any) -> None:
    conn = connect()
    run(conn, "USE ROLE PUBLIC")
    with pytest.raises(ProgrammingError, match="Insufficient privileges"):
        run(conn, "SELECT SYSTEM$EMULATOR_SET_CLOCK('2030-01-01 00:00:00')")
    (utc,) = run(conn, "SELECT SYSDATE()")[0]
    assert abs(utc - dt.datetime.now(dt.UTC).replace(tzinfo=None)) < dt.timedelta(minutes=1)


# -- named temporary objects in owner's-rights procedures --------------------------------------------------------------

TEMP_TABLE = (
    "def main(session):\n    session.sql('CREATE OR REPLACE TEMPORARY TABLE SCRATCH (A INT)').collect()\n    return 1"
)


def test_named_temporary_objects_are_refused_in_owners_rights_procedures_only(connect: Any) -> None:
    conn = connect()
    run(conn, procedure("OWNER_TEMP", TEMP_TABLE, rights="OWNER"))
    run(conn, procedure("CALLER_TEMP", TEMP_TABLE, rights="CALLER"))
    with pytest.raises(ProgrammingError, match="Unsupported statement type 'temporary TABLE'"):
        run(conn, "CALL OWNER_TEMP()")
    assert run(conn, "CALL CALLER_TEMP()") == [(1,)]
    # an ordinary session (dbt's) may create them
    run(conn, "CREATE OR REPLACE TEMPORARY TABLE SCRATCH2 (A INT)")


# -- long statements: "in progress", polled, run once ------------------------------------------------------------------

SLOW_INSERT = (
    "import time\n"
    "def main(session, seconds):\n"
    "    time.sleep(seconds)\n"
    "    session.sql('INSERT INTO RUNS VALUES (1)').collect()\n"
    "    return session.sql('SELECT COUNT(*) FROM RUNS').collect()[0][0]"
)


def test_a_call_longer_than_the_connectors_socket_timeout_runs_once(connect: Any) -> None:
    conn = connect()
    run(conn, "CREATE TABLE RUNS (A INT)")
    run(conn, procedure("SLOW_INSERT", SLOW_INSERT, args="SECONDS FLOAT"))
    # a connector whose socket timeout is shorter than the CALL: a server holding the request open makes it send the
    # CALL again; Snowflake (and the emulator) answer "in progress" in time and the connector polls for the result
    impatient = connect(socket_timeout=RESULT_WAIT + 2)
    assert run(impatient, f"CALL SLOW_INSERT({RESULT_WAIT + 4})") == [(1,)]
    assert run(conn, "SELECT COUNT(*) FROM RUNS") == [(1,)]


def test_execute_async_returns_at_once_and_the_result_is_fetched_by_query_id(connect: Any) -> None:
    conn = connect()
    run(conn, "CREATE TABLE RUNS (A INT)")
    run(conn, procedure("SLOW_INSERT", SLOW_INSERT, args="SECONDS FLOAT"))
    cur = conn.cursor()
    started = time.monotonic()
    cur.execute_async("CALL SLOW_INSERT(3)")
    assert time.monotonic() - started < 2
    query_id = cur.sfqid
    assert conn.get_query_status(query_id).name == "RUNNING"
    cur.get_results_from_sfqid(query_id)
    assert cur.fetchall() == [(1,)]
    assert conn.get_query_status(query_id).name == "SUCCESS"
    assert run(conn, "SELECT COUNT(*) FROM RUNS") == [(1,)]
    # a failing statement's status carries its error
    cur.execute_async("INSERT INTO NO_SUCH_TABLE VALUES (1)")
    failed = cur.sfqid
    with pytest.raises(DatabaseError) as e:
        cur.get_results_from_sfqid(failed)
        cur.fetchall()
    assert e.value.errno == 2003 and "NO_SUCH_TABLE" in e.value.msg


# -- SQL errors are Snowflake errors -----------------------------------------------------------------------------------


def test_sql_errors_are_snowflake_errors_not_http_500(connect: Any) -> None:
    conn = connect(network_timeout=20)  # an HTTP 500 would be retried until this runs out
    started = time.monotonic()
    with pytest.raises(ProgrammingError) as e:
        run(conn, "SELECT PARSE_JSON('{bad')")
    assert (e.value.errno, e.value.sqlstate) == (100069, "22P02"), e.value
    assert "Error parsing JSON" in e.value.msg
    run(conn, "CREATE TABLE STRICT_T (A INT NOT NULL)")
    with pytest.raises(DatabaseError) as e:
        run(conn, "INSERT INTO STRICT_T VALUES (NULL)")
    assert e.value.errno == 100072, e.value
    assert "NULL result in a non-nullable column" in e.value.msg
    assert time.monotonic() - started < 10


# -- acceptance: a CALL longer than 90 s, default settings ---------------------------------------------------------------

LONG_WRAPPER = (
    "import json\n"
    "import time\n"
    "def main(session):\n"
    "    time.sleep(95)\n"
    "    return json.loads(session.sql('CALL RAW.LOAD_RAW_FILES()').collect()[0][0])"
)


def test_a_call_that_runs_longer_than_90_s_is_executed_once_with_its_true_summary(
    deployed_stack: LocalStack, tmp_path: Path
) -> None:
    daily = tmp_path / "daily"
    generate_daily(daily, dt.date(2024, 8, 2), scale="tiny", seed=21)
    landing = tmp_path / "landing"
    landing.mkdir()
    expected: dict[str, int] = {}  # rows per dataset
    for dataset in ("ratings", "movies"):
        source = daily / f"{dataset}_20240802.csv"
        shutil.copy(source, landing / source.name)
        expected[dataset] = sum(1 for _ in source.open()) - 1
    report = upload_to(deployed_stack, landing)
    assert len(report.uploaded_keys) == 2
    with deployed_stack.connect(schema="RAW") as conn:  # default wait, default connector timeouts
        before = {
            c.dataset: run(conn, f"SELECT COUNT(*) FROM {c.qualified_raw_table}")[0][0]
            for c in contracts.CONTRACTS.values()
        }
        run(conn, procedure("RAW.LONG_LOAD", LONG_WRAPPER, returns="VARIANT", rights="CALLER"))
        started = time.monotonic()
        summary = json.loads(run(conn, "CALL RAW.LONG_LOAD()")[0][0])
        assert time.monotonic() - started > 90
        files = {f["file"]: f for f in summary["files"]}
        assert set(files) == set(report.uploaded_keys), summary
        assert {f["status"] for f in files.values()} == {"LOADED"}, summary
        tracked = run(
            conn, "SELECT FILE_KEY, COUNT(*), MAX(ATTEMPTS), MAX(STATUS) FROM RAW.LOAD_TRACKING GROUP BY FILE_KEY"
        )
        mine = {k: (n, attempts, status) for k, n, attempts, status in tracked if k in files}
        assert mine == {k: (1, 1, "LOADED") for k in files}
        after = {
            c.dataset: run(conn, f"SELECT COUNT(*) FROM {c.qualified_raw_table}")[0][0]
            for c in contracts.CONTRACTS.values()
        }
    assert {f["dataset"]: f["rows_loaded"] for f in files.values()} == expected, summary
    assert {d: after[d] - before[d] for d in after} == {d: expected.get(d, 0) for d in after}
