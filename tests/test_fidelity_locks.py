"""Snowflake's concurrency rules in the emulator, through the real connector: unenforced keys, table locks that make
concurrent writers wait (LOCK_TIMEOUT, deadlocks), READ COMMITTED for the claim pattern, and SQL errors (never
HTTP 500) for what DuckDB still refuses."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from snowflake.connector.errors import DatabaseError, ProgrammingError

from netflix_elt.stack import LocalStack
from tests.conftest import make_stack


def run(conn: Any, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    cur.execute(sql, params)
    return list(cur.fetchall())


@pytest.fixture()
def schema(stack: LocalStack) -> Iterator[str]:
    """A fresh schema of its own for the test."""
    name = "LOCKS_" + uuid.uuid4().hex[:8].upper()
    conn = stack.connect(network_timeout=60)
    try:
        run(conn, f"CREATE SCHEMA {name}")
        yield name
    finally:
        conn.close()


@pytest.fixture()
def connect(stack: LocalStack, schema: str) -> Iterator[Callable[..., Any]]:
    """Opens connector sessions in the test's schema; closes them at the end."""
    opened: list[Any] = []

    def open_session(**kwargs: Any) -> Any:
        conn = stack.connect(schema=schema, network_timeout=60, **kwargs)
        opened.append(conn)
        return conn

    yield open_session
    for conn in opened:
        conn.close()


class Background:
    """One statement sequence run in a thread (another session), with when it finished and what it raised."""

    def __init__(self, work: Callable[[], Any]):
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished_at: float | None = None
        self._thread = threading.Thread(target=self._run, args=(work,), daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], Any]) -> None:
        try:
            self.result = work()
        except BaseException as e:
            self.error = e
        self.finished_at = time.monotonic()

    def join(self, timeout: float = 30) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the other session is still blocked"
        if self.error is not None:
            raise self.error
        return self.result


# -- keys ---------------------------------------------------------------------------------------------------------------


def test_primary_unique_and_foreign_keys_are_accepted_but_not_enforced(connect: Callable[..., Any]) -> None:
    conn = connect()
    run(conn, "CREATE TABLE PARENT (ID NUMBER PRIMARY KEY, CODE VARCHAR UNIQUE, NAME VARCHAR NOT NULL)")
    run(
        conn,
        "CREATE TABLE CHILD (ID NUMBER, PARENT_ID NUMBER REFERENCES PARENT (ID), "
        "CONSTRAINT PK_CHILD PRIMARY KEY (ID), CONSTRAINT UQ_CHILD UNIQUE (PARENT_ID))",
    )
    # duplicate keys and a dangling foreign key: Snowflake accepts them all
    run(conn, "INSERT INTO PARENT VALUES (1, 'a', 'first'), (1, 'a', 'again')")
    run(conn, "INSERT INTO PARENT VALUES (1, 'a', 'once more')")
    run(conn, "INSERT INTO CHILD VALUES (7, 99), (7, 99)")
    run(conn, "UPDATE PARENT SET CODE = 'a'")
    assert run(conn, "SELECT COUNT(*), COUNT(DISTINCT ID) FROM PARENT") == [(3, 1)]
    assert run(conn, "SELECT COUNT(*) FROM CHILD WHERE ID = 7") == [(2,)]

    # constraints added or dropped later are accepted too (and not enforced)
    run(conn, "ALTER TABLE PARENT ADD CONSTRAINT UQ_NAME UNIQUE (NAME)")
    run(conn, "ALTER TABLE CHILD DROP PRIMARY KEY")
    run(conn, "ALTER TABLE CHILD ADD PRIMARY KEY (ID)")
    run(conn, "INSERT INTO PARENT VALUES (2, 'b', 'first')")
    with pytest.raises(ProgrammingError) as missing:
        run(conn, "ALTER TABLE NO_SUCH_TABLE ADD PRIMARY KEY (ID)")
    assert "NO_SUCH_TABLE" in missing.value.msg.upper()

    # NOT NULL is enforced, and a primary key's columns are NOT NULL
    for insert in ("INSERT INTO PARENT (ID, CODE) VALUES (3, 'c')", "INSERT INTO PARENT VALUES (NULL, 'd', 'x')"):
        with pytest.raises(DatabaseError) as null:  # the connector's IntegrityError, for SQLSTATE class 22
            run(conn, insert)
        assert (null.value.errno, null.value.sqlstate) == (100072, "22000")
        assert "NULL result in a non-nullable column" in null.value.msg


def test_tables_kept_from_an_emulator_that_enforced_keys_no_longer_do(tmp_path: Path) -> None:
    stack = make_stack(tmp_path / "stack")
    databases = stack.snowflake_dir / "databases"
    databases.mkdir(parents=True)
    with duckdb.connect(str(databases / "OLDSTATE.db")) as old:  # as an earlier emulator left it
        old.execute("CREATE SCHEMA RAW")
        old.execute("CREATE TABLE RAW.TRACKING (FILE_KEY VARCHAR NOT NULL PRIMARY KEY, STATUS VARCHAR NOT NULL)")
        old.execute("CREATE TABLE RAW.REJECTS (FILE_KEY VARCHAR REFERENCES RAW.TRACKING (FILE_KEY), N INTEGER)")
        old.execute("COMMENT ON COLUMN RAW.TRACKING.STATUS IS 'LOADING or LOADED'")
        old.execute("INSERT INTO RAW.TRACKING VALUES ('a.csv', 'LOADED')")
    stack.up()
    try:
        conn = stack.connect(database="OLDSTATE", schema="RAW", network_timeout=60)
        try:
            run(conn, "INSERT INTO TRACKING VALUES ('a.csv', 'LOADING')")
            run(conn, "INSERT INTO REJECTS VALUES ('missing.csv', 1)")
            assert run(conn, "SELECT STATUS FROM TRACKING ORDER BY STATUS") == [("LOADED",), ("LOADING",)]
            with pytest.raises(DatabaseError) as null:
                run(conn, "INSERT INTO TRACKING VALUES ('b.csv', NULL)")
            assert null.value.errno == 100072
            comments = run(
                conn,
                "SELECT COMMENT FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_NAME = 'TRACKING' AND COLUMN_NAME = 'STATUS'",
            )
            assert comments == [("LOADING or LOADED",)]
        finally:
            conn.close()
    finally:
        stack.down()


# -- locks --------------------------------------------------------------------------------------------------------------


def _lock_and_claims(conn: Any) -> None:
    run(conn, "CREATE TABLE LOAD_LOCK (ID NUMBER NOT NULL, HOLDER VARCHAR)")
    run(conn, "INSERT INTO LOAD_LOCK VALUES (1, NULL)")
    run(conn, "CREATE TABLE CLAIMS (KEY VARCHAR NOT NULL PRIMARY KEY, HOLDER VARCHAR NOT NULL)")


def test_update_waits_for_the_holders_commit_and_then_sees_its_rows(connect: Callable[..., Any]) -> None:
    first, second = connect(), connect()
    _lock_and_claims(first)
    run(first, "BEGIN")
    run(first, "UPDATE LOAD_LOCK SET HOLDER = 'first'")
    run(first, "INSERT INTO CLAIMS VALUES ('k', 'first')")

    def claim() -> tuple[float, int]:
        run(second, "BEGIN")
        run(second, "UPDATE LOAD_LOCK SET HOLDER = 'second'")
        updated_at = time.monotonic()
        (count,) = run(second, "SELECT COUNT(*) FROM CLAIMS WHERE KEY = 'k'")[0]
        run(second, "COMMIT")
        return updated_at, count

    waiter = Background(claim)
    time.sleep(1.5)
    assert waiter.finished_at is None, "the second session's UPDATE did not wait for the first's lock"
    committed_at = time.monotonic()
    run(first, "COMMIT")
    updated_at, count = waiter.join()
    assert updated_at >= committed_at
    assert count == 1  # READ COMMITTED: the row the first session committed while the second waited
    assert run(first, "SELECT HOLDER FROM LOAD_LOCK") == [("second",)]


def test_claim_pattern_gives_each_key_to_exactly_one_session(connect: Callable[..., Any]) -> None:
    sessions = [connect(), connect()]
    _lock_and_claims(sessions[0])
    rounds = 50
    barrier = threading.Barrier(len(sessions))
    won: list[list[str]] = [[] for _ in sessions]

    def claimer(i: int) -> None:
        conn = sessions[i]
        for n in range(rounds):
            key = f"k{n}"
            barrier.wait(timeout=30)
            run(conn, "BEGIN")
            run(conn, "UPDATE LOAD_LOCK SET HOLDER = %s", (f"s{i}",))
            (count,) = run(conn, "SELECT COUNT(*) FROM CLAIMS WHERE KEY = %s", (key,))[0]
            if count == 0:
                run(conn, "INSERT INTO CLAIMS VALUES (%s, %s)", (key, f"s{i}"))
                won[i].append(key)
            run(conn, "COMMIT")

    workers = [Background(lambda i=i: claimer(i)) for i in range(len(sessions))]
    for worker in workers:
        worker.join(timeout=120)  # re-raises any error, e.g. a DuckDB "Conflict"
    rows = run(sessions[0], "SELECT KEY, COUNT(*) FROM CLAIMS GROUP BY KEY HAVING COUNT(*) <> 1")
    assert rows == []
    assert run(sessions[0], "SELECT COUNT(DISTINCT KEY) FROM CLAIMS") == [(rounds,)]
    assert sorted(won[0] + won[1]) == sorted(f"k{n}" for n in range(rounds))


def test_lock_timeout_aborts_the_waiting_statement(connect: Callable[..., Any]) -> None:
    holder, waiter = connect(), connect()
    run(holder, "CREATE TABLE T (ID NUMBER, V NUMBER)")
    run(holder, "INSERT INTO T VALUES (1, 0)")
    run(waiter, "ALTER SESSION SET LOCK_TIMEOUT = 1")
    run(holder, "BEGIN")
    run(holder, "DELETE FROM T WHERE ID = 42")  # locks T, though it changes no row

    started = time.monotonic()
    with pytest.raises(ProgrammingError) as timed_out:
        run(waiter, "UPDATE T SET V = V + 1 WHERE ID = 1")
    waited = time.monotonic() - started
    assert 1 <= waited < 10
    assert (timed_out.value.errno, timed_out.value.sqlstate) == (625, "57014")
    assert "has locked table" in timed_out.value.msg and ".T'" in timed_out.value.msg
    assert "LOCK_TIMEOUT" in timed_out.value.msg

    run(waiter, "ALTER SESSION SET LOCK_TIMEOUT = 0")  # 0: no waiting at all
    started = time.monotonic()
    for statement in (
        "MERGE INTO T USING (SELECT 1 AS ID) S ON T.ID = S.ID WHEN MATCHED THEN UPDATE SET V = 5",
        "TRUNCATE TABLE T",
    ):
        with pytest.raises(ProgrammingError) as immediately:
            run(waiter, statement)
        assert immediately.value.errno == 625
    assert time.monotonic() - started < 5
    run(waiter, "INSERT INTO T VALUES (2, 0)")  # INSERT takes no lock

    run(holder, "ROLLBACK")
    run(waiter, "UPDATE T SET V = 1 WHERE ID = 1")  # released at ROLLBACK
    run(holder, "UPDATE T SET V = 2 WHERE ID = 1")  # AUTOCOMMIT: held for the statement only
    run(waiter, "UPDATE T SET V = 3 WHERE ID = 1")
    assert run(holder, "SELECT V FROM T WHERE ID = 1") == [(3,)]
    with pytest.raises(ProgrammingError) as invalid:
        run(waiter, "ALTER SESSION SET LOCK_TIMEOUT = -1")
    assert "LOCK_TIMEOUT" in invalid.value.msg


def test_deadlock_aborts_the_most_recent_statement_instead_of_hanging(connect: Callable[..., Any]) -> None:
    a, b = connect(), connect()
    run(a, "CREATE TABLE T1 (V NUMBER)")
    run(a, "CREATE TABLE T2 (V NUMBER)")
    run(a, "BEGIN")
    run(a, "UPDATE T1 SET V = 1")
    run(b, "BEGIN")
    run(b, "UPDATE T2 SET V = 1")
    blocked = Background(lambda: run(a, "UPDATE T2 SET V = 2"))  # a waits for b
    time.sleep(1)
    assert blocked.finished_at is None, "a's UPDATE of T2 did not wait for b's lock"

    started = time.monotonic()
    with pytest.raises(ProgrammingError) as deadlock:
        run(b, "UPDATE T1 SET V = 2")  # b would wait for a: a cycle
    assert time.monotonic() - started < 5
    assert deadlock.value.errno == 625 and "deadlock" in deadlock.value.msg
    assert blocked.finished_at is None  # b's transaction is still open, and still holds T2

    run(b, "ROLLBACK")
    blocked.join()
    run(a, "COMMIT")


def test_autocommit_off_holds_locks_to_commit_and_a_closed_session_releases_them(
    connect: Callable[..., Any],
) -> None:
    holder, waiter = connect(autocommit=False), connect()
    run(holder, "CREATE TABLE T (ID NUMBER, V NUMBER)")
    run(holder, "INSERT INTO T VALUES (1, 0)")
    holder.commit()
    run(waiter, "ALTER SESSION SET LOCK_TIMEOUT = 1")

    run(holder, "UPDATE T SET V = 1")  # starts a transaction implicitly
    with pytest.raises(ProgrammingError) as timed_out:
        run(waiter, "UPDATE T SET V = 2")
    assert timed_out.value.errno == 625
    holder.commit()
    run(waiter, "UPDATE T SET V = 2")

    run(holder, "DELETE FROM T")
    holder.close()  # without COMMIT: the transaction is rolled back and its lock released
    run(waiter, "ALTER SESSION SET LOCK_TIMEOUT = 10")
    started = time.monotonic()
    run(waiter, "UPDATE T SET V = 3")
    assert time.monotonic() - started < 5
    assert run(waiter, "SELECT ID, V FROM T") == [(1, 3)]


# -- READ COMMITTED and the errors DuckDB may still raise ------------------------------------------------------------


def test_each_statement_of_a_reading_transaction_sees_what_others_committed(connect: Callable[..., Any]) -> None:
    reader, writer = connect(), connect()
    run(writer, "CREATE TABLE T (ID NUMBER, V NUMBER)")
    run(writer, "INSERT INTO T VALUES (1, 0)")
    run(reader, "BEGIN")
    assert run(reader, "SELECT COUNT(*) FROM T") == [(1,)]
    run(writer, "INSERT INTO T VALUES (2, 0)")
    run(writer, "UPDATE T SET V = 5 WHERE ID = 1")
    assert run(reader, "SELECT COUNT(*), SUM(V) FROM T") == [(2, 5)]
    run(reader, "UPDATE T SET V = 6 WHERE ID = 1")  # no conflict with the committed update
    run(reader, "COMMIT")
    assert run(writer, "SELECT V FROM T WHERE ID = 1") == [(6,)]


def test_a_write_conflict_duckdb_still_raises_is_a_snowflake_error(connect: Callable[..., Any]) -> None:
    a, b = connect(), connect()
    run(a, "CREATE TABLE T (ID NUMBER, V NUMBER)")
    run(a, "CREATE TABLE OTHER (ID NUMBER)")
    run(a, "INSERT INTO T VALUES (1, 0)")
    run(b, "BEGIN")
    run(b, "INSERT INTO OTHER VALUES (1)")  # b has written: its DuckDB snapshot is fixed from here
    run(a, "UPDATE T SET V = 1 WHERE ID = 1")
    with pytest.raises(ProgrammingError) as conflict:
        run(b, "UPDATE T SET V = 2 WHERE ID = 1")
    assert (conflict.value.errno, conflict.value.sqlstate) == (625, "57014")
    assert "ROLLBACK" in conflict.value.msg
    with pytest.raises(ProgrammingError) as aborted:
        run(b, "SELECT COUNT(*) FROM T")
    assert aborted.value.errno == 625 and "ROLLBACK" in aborted.value.msg
    run(b, "ROLLBACK")
    assert run(b, "SELECT V FROM T") == [(1,)]
