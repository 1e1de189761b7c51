"""``DROP DATABASE`` in the emulator as Snowflake documents it (https://docs.snowflake.com/en/sql-reference/sql/drop-database),
through the real connector: the answer texts and errors, the database gone for good (SHOW DATABASES, a restart, a new
database of the same name is empty: no stages, file formats, procedures, grants or load history of the old one),
sessions left without a current database, and who may drop it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from snowflake.connector.errors import ProgrammingError

from netflix_elt.stack import EMULATOR_USER, LocalStack
from tests.conftest import make_stack


def run(conn: Any, sql: str) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    cur.execute(sql)
    return list(cur.fetchall())


def database_names(conn: Any, name: str) -> list[str]:
    """The names ``SHOW DATABASES LIKE '<name>'`` lists."""
    return [str(r[1]) for r in run(conn, f"SHOW DATABASES LIKE '{name}'")]


def new_name(kind: str = "DB") -> str:
    return f"DROPME_{kind}_{uuid.uuid4().hex[:8].upper()}"


@pytest.fixture()
def connect(stack: LocalStack) -> Iterator[Callable[..., Any]]:
    """Opens connector sessions (administrator unless told otherwise); closes them at the end."""
    opened: list[Any] = []

    def open_session(**kwargs: Any) -> Any:
        conn = stack.connect(**{"network_timeout": 60, **kwargs})
        opened.append(conn)
        return conn

    yield open_session
    for conn in opened:
        conn.close()


def test_drop_answers_and_the_database_is_gone(connect: Callable[..., Any], stack: LocalStack) -> None:
    admin = connect()
    name = new_name()
    run(admin, f"CREATE DATABASE {name}")
    run(admin, f"CREATE SCHEMA {name}.S")
    run(admin, f"CREATE TABLE {name}.S.T (A INT)")
    run(admin, f"INSERT INTO {name}.S.T VALUES (1)")
    assert database_names(admin, name) == [name]
    assert database_names(admin, name.lower()) == [name]  # LIKE is case-insensitive
    db_file = stack.snowflake_dir / "databases" / f"{name}.db"
    assert db_file.exists()

    assert run(admin, f"DROP DATABASE {name}") == [(f"{name} successfully dropped.",)]

    assert database_names(admin, name) == []
    assert not db_file.exists() and not Path(f"{db_file}.wal").exists()
    with pytest.raises(ProgrammingError) as e:
        run(admin, f"SELECT * FROM {name}.S.T")
    assert e.value.errno == 2003
    # a new database of that name is a new, empty one
    assert run(admin, f"CREATE DATABASE {name}") == [(f"Database {name} successfully created.",)]
    assert run(admin, f"SELECT count(*) FROM {name}.INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = 'S'") == [(0,)]
    run(admin, f"DROP DATABASE {name} CASCADE")


def test_missing_database_and_if_exists(connect: Callable[..., Any]) -> None:
    admin = connect()
    name = new_name("MISSING")
    with pytest.raises(ProgrammingError) as e:
        run(admin, f"DROP DATABASE {name}")
    assert (e.value.errno, e.value.sqlstate) == (2003, "02000")
    assert e.value.msg == f"002003 (02000): SQL compilation error:\nDatabase '{name}' does not exist or not authorized."
    assert run(admin, f"DROP DATABASE IF EXISTS {name}") == [
        (f"Drop statement executed successfully ({name} already dropped).",)
    ]
    # a quoted name is case-sensitive: "dropme_..." is not DROPME_...
    run(admin, f"CREATE DATABASE {name}")
    with pytest.raises(ProgrammingError) as e:
        run(admin, f'DROP DATABASE "{name.lower()}"')
    assert e.value.errno == 2003
    assert run(admin, f'DROP DATABASE IF EXISTS "{name}" RESTRICT') == [(f"{name} successfully dropped.",)]
    assert run(admin, f"DROP DATABASE IF EXISTS {name}") == [
        (f"Drop statement executed successfully ({name} already dropped).",)
    ]


def test_its_catalogue_entries_are_forgotten(connect: Callable[..., Any], stack: LocalStack) -> None:
    """Stages (with their file format and files), file formats, procedures, grants and load history of the dropped
    database do not come back with a new database of the same name."""
    admin = connect()
    name = new_name()
    role = new_name("ROLE")
    prefix = f"dropdb/{uuid.uuid4().hex[:8]}/"
    stack.s3_client().put_object(Bucket=stack.settings.bucket, Key=prefix + "a.csv", Body=b"1\n2\n")
    stage_url = f"s3://{stack.settings.bucket}/{prefix}"

    def populate() -> list[tuple[Any, ...]]:
        run(admin, f"CREATE SCHEMA {name}.S")
        run(admin, f"CREATE TABLE {name}.S.T (A INT)")
        run(admin, f"CREATE STAGE {name}.S.EXT URL = '{stage_url}'")
        return run(admin, f"COPY INTO {name}.S.T FROM @{name}.S.EXT FILE_FORMAT = (TYPE = CSV)")

    run(admin, f"CREATE DATABASE {name}")
    assert [r[1] for r in populate()] == ["LOADED"]
    run(admin, f"CREATE STAGE {name}.S.INTERNAL FILE_FORMAT = (TYPE = CSV SKIP_HEADER = 1)")
    run(admin, f"CREATE FILE FORMAT {name}.S.FF TYPE = CSV")
    run(
        admin,
        f"CREATE PROCEDURE {name}.S.P() RETURNS INT LANGUAGE PYTHON RUNTIME_VERSION = '3.11' "
        "PACKAGES = ('snowflake-snowpark-python') HANDLER = 'main' AS $$\ndef main(session):\n    return 1\n$$",
    )
    run(admin, f"CREATE ROLE {role}")
    run(admin, f"GRANT USAGE ON DATABASE {name} TO ROLE {role}")
    run(admin, f"GRANT SELECT ON TABLE {name}.S.T TO ROLE {role}")
    run(admin, f"GRANT USAGE ON PROCEDURE {name}.S.P() TO ROLE {role}")
    run(admin, f"GRANT SELECT ON FUTURE TABLES IN SCHEMA {name}.S TO ROLE {role}")
    local = stack.root / "a.csv"
    local.write_text("h\n1\n")
    run(admin, f"PUT file://{local} @{name}.S.INTERNAL")
    assert len(run(admin, f"LIST @{name}.S.INTERNAL")) == 1

    run(admin, f"DROP DATABASE {name}")
    run(admin, f"CREATE DATABASE {name}")

    # the file is loaded again: no load history of the old table
    assert [r[1] for r in populate()] == ["LOADED"]
    # same names, no "already exists"; the new internal stage has no files and no file format of the old one
    run(admin, f"CREATE STAGE {name}.S.INTERNAL")
    assert run(admin, f"LIST @{name}.S.INTERNAL") == []
    run(admin, f"CREATE FILE FORMAT {name}.S.FF TYPE = CSV")
    with pytest.raises(ProgrammingError) as e:
        run(admin, f"CALL {name}.S.P()")
    assert (e.value.errno, "Unknown user-defined function") == (2141, e.value.msg.split("\n")[-1][:29])
    assert [r for r in run(admin, f"SHOW GRANTS TO ROLE {role}") if name in str(r[3])] == []
    assert [r for r in run(admin, f"SHOW FUTURE GRANTS IN SCHEMA {name}.S")] == []
    run(admin, f"DROP DATABASE {name}")


def test_sessions_using_it_have_no_current_database(connect: Callable[..., Any]) -> None:
    admin = connect()
    name = new_name()
    run(admin, f"CREATE DATABASE {name}")
    run(admin, f"CREATE SCHEMA {name}.S")
    run(admin, f"CREATE TABLE {name}.S.T (A INT)")
    other = connect(database=name, schema="S")
    assert run(other, "SELECT count(*) FROM T") == [(0,)]
    run(admin, f"USE DATABASE {name}")

    run(admin, f"DROP DATABASE {name}")

    for session in (other, admin):
        with pytest.raises(ProgrammingError) as e:
            run(session, "SELECT count(*) FROM T")
        assert e.value.errno == 90105
        assert "This session does not have a current database" in e.value.msg
        # the session goes on: other databases by qualified name, then a current database again
        assert run(session, "SELECT count(*) FROM NETFLIX.INFORMATION_SCHEMA.SCHEMATA")[0][0] >= 1
        run(session, "USE DATABASE NETFLIX")
        assert run(session, "SELECT 1") == [(1,)]


def test_only_an_owner_or_administrator_may_drop(connect: Callable[..., Any]) -> None:
    admin = connect()
    name = new_name()
    reader, operator = new_name("READER"), new_name("OPERATOR")
    run(admin, f"CREATE DATABASE {name}")
    run(admin, f"CREATE ROLE {reader}")
    run(admin, f"CREATE ROLE {operator}")
    run(admin, f"GRANT USAGE ON DATABASE {name} TO ROLE {reader}")
    run(admin, f"GRANT ROLE SYSADMIN TO ROLE {operator}")  # inherits an administrator role
    for role in (reader, operator):
        run(admin, f"GRANT ROLE {role} TO USER {EMULATOR_USER}")

    run(admin, f"USE ROLE {reader}")
    with pytest.raises(ProgrammingError) as e:
        run(admin, f"DROP DATABASE {name}")
    assert (e.value.errno, e.value.sqlstate) == (3001, "42501")
    assert "Insufficient privileges" in e.value.msg
    assert database_names(admin, name) == [name]

    run(admin, f"USE ROLE {operator}")
    assert run(admin, f"DROP DATABASE {name}") == [(f"{name} successfully dropped.",)]
    assert database_names(admin, name) == []
    run(admin, "USE ROLE ACCOUNTADMIN")


def test_a_restart_does_not_bring_it_back(tmp_path: Path) -> None:
    stack = make_stack(tmp_path / "stack")
    name, kept = new_name(), new_name("KEPT")
    stack.up()
    try:
        with stack.connect(network_timeout=60) as conn:
            for db in (name, kept):
                run(conn, f"CREATE DATABASE {db}")
                run(conn, f"CREATE SCHEMA {db}.S")
                run(conn, f"CREATE TABLE {db}.S.T (A INT)")
            run(conn, f"DROP DATABASE {name}")
        stack.down()
        stack.up()
        with stack.connect(network_timeout=60) as conn:
            assert database_names(conn, name) == []
            assert database_names(conn, kept) == [kept]
            assert run(conn, f"SELECT count(*) FROM {kept}.S.T") == [(0,)]
            with pytest.raises(ProgrammingError):
                run(conn, f"SELECT * FROM {name}.S.T")
            run(conn, f"CREATE DATABASE {name}")
            with pytest.raises(ProgrammingError):
                run(conn, f"SELECT * FROM {name}.S.T")
    finally:
        stack.down()
