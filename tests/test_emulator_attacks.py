"""The local emulator against a hostile holder of a non-administrative role (NETFLIX_LOADER).

A user whose role is not an administrator's may only do what its grants allow, and nothing outside the emulator's
objects: the emulator's internal catalogue (users, password hashes, grants, owners) does not exist for it, a stage
path never leaves the stage, files of the host are never read, a stored procedure's handler runs under an import and
builtins guard, and ownership moves only as Snowflake moves it (GRANT OWNERSHIP). Each test is one attack, run as
LOADER_USER, a user whose only role is NETFLIX_LOADER.

One stack for the module, set up here (not by the migrations): database NETFLIX, schema RAW, the role NETFLIX_LOADER
with USAGE on the database, the schema and the stages RAW.LANDING (external, the stack's bucket) and RAW.INTERNAL
(internal), and SELECT/INSERT/UPDATE/DELETE/TRUNCATE on the table RAW.LOOT (where a successful attack would put what it
read).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import snowflake.connector
from snowflake.connector.errors import ProgrammingError

from netflix_elt.stack import LocalStack

pytestmark = pytest.mark.slow(minutes=2)

LOADER = "LOADER_USER"
PROCEDURE_OWNER = "NETFLIX_LOAD_PROCEDURE"
STAGE_DIR = "netflix-landing/movielens"  # RAW.LANDING's folder under the S3 server's root


@dataclass
class Site:
    stack: LocalStack
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def secret(self) -> str:
        """The administrator's password, in the stack's credentials.env: what the attacks are after."""
        return self.stack.credentials()["SNOWFLAKE_PASSWORD"]

    def login(self, user: str) -> Any:
        return snowflake.connector.connect(
            account="emulator",
            user=user,
            password=self.passwords[user],
            host="127.0.0.1",
            port=self.stack.snowflake.port,
            protocol="http",
            database="NETFLIX",
            schema="RAW",
            network_timeout=120,
            login_timeout=30,
        )

    def admin(self, query: str) -> list[tuple[Any, ...]]:
        with self.stack.connect(schema="RAW", network_timeout=120) as conn:
            cur = conn.cursor()
            cur.execute(query)
            return list(cur.fetchall())

    def user(self, name: str, role: str) -> None:
        self.passwords[name] = "Pw-" + secrets.token_urlsafe(12)
        self.admin(f"CREATE OR REPLACE USER {name} PASSWORD = '{self.passwords[name]}' DEFAULT_ROLE = {role}")
        self.admin(f"GRANT ROLE {role} TO USER {name}")

    def loot(self) -> list[str]:
        """What RAW.LOOT holds (an attack that read something would have put it there)."""
        return [r[0] for r in self.admin("SELECT LINE FROM RAW.LOOT")]


@pytest.fixture(scope="module")
def site(target_stack: LocalStack) -> Iterator[Site]:
    site = Site(target_stack)
    for statement in (
        "CREATE SCHEMA IF NOT EXISTS NETFLIX.RAW",
        "CREATE ROLE IF NOT EXISTS NETFLIX_LOADER",
        "GRANT ROLE NETFLIX_LOADER TO ROLE SYSADMIN",
        "GRANT USAGE ON DATABASE NETFLIX TO ROLE NETFLIX_LOADER",
        "GRANT USAGE ON SCHEMA NETFLIX.RAW TO ROLE NETFLIX_LOADER",
        "CREATE OR REPLACE TABLE NETFLIX.RAW.LOOT (LINE VARCHAR)",
        "GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLE NETFLIX.RAW.LOOT TO ROLE NETFLIX_LOADER",
        "CREATE OR REPLACE STAGE NETFLIX.RAW.LANDING URL = 's3://netflix-landing/movielens/'",
        "GRANT USAGE ON STAGE NETFLIX.RAW.LANDING TO ROLE NETFLIX_LOADER",
        "CREATE OR REPLACE STAGE NETFLIX.RAW.INTERNAL",
        "GRANT USAGE ON STAGE NETFLIX.RAW.INTERNAL TO ROLE NETFLIX_LOADER",
    ):
        site.admin(statement)
    site.user(LOADER, "NETFLIX_LOADER")
    staged = target_stack.s3_dir / STAGE_DIR / "ratings" / "2024" / "ratings.csv"
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_text("staged line\n")
    local = target_stack.root / "upload" / "part.csv"
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_text("internal line\n")
    site.admin(f"PUT file://{local} @RAW.INTERNAL AUTO_COMPRESS = FALSE")
    # a CSV file of the host that DuckDB would read by its name alone
    (target_stack.root / "secret.csv").write_text(f"marker\n{site.secret}\n")
    yield site


def refused(cur: Any, statements: list[str]) -> list[str]:
    """The statements that did NOT fail (each should)."""
    ran = []
    for statement in statements:
        try:
            cur.execute(statement)
            ran.append(f"{statement} -> {cur.fetchall()!r}"[:300])
        except ProgrammingError:
            pass
    return ran


def _raises(call: Callable[[], Any], errno: int, message: str) -> ProgrammingError:
    with pytest.raises(ProgrammingError) as caught:
        call()
    assert caught.value.errno == errno, caught.value
    assert message in str(caught.value), caught.value
    return caught.value


# -- 1. the internal catalogue ---------------------------------------------------------------------------------------


def test_a_loader_can_neither_read_nor_write_the_internal_catalogue_nor_reach_the_host(
    site: Site, tmp_path: Path
) -> None:
    root = site.stack.root
    row = "('USAGE', 'ROLE', 'ACCOUNTADMIN', 'USER', 'LOADER_USER', false, false, current_timestamp)"
    conn = site.login(LOADER)
    try:
        cur = conn.cursor()
        # each answers as Snowflake does for an object that is not there
        for statement in (
            f"INSERT INTO _fs_global._emulator.grants VALUES {row}",
            f'INSERT INTO "_fs_global"."_emulator"."grants" VALUES {row}',
            f"insert into _FS_GLOBAL._EMULATOR.GRANTS select * from values {row}",
            "UPDATE _fs_global._emulator.users SET default_role = 'ACCOUNTADMIN'",
            "DELETE FROM _fs_global._emulator.grants",
            f"MERGE INTO _fs_global._emulator.grants g USING (SELECT 1 AS X) s ON FALSE "
            f"WHEN NOT MATCHED THEN INSERT VALUES {row}",
            "TRUNCATE TABLE _fs_global._emulator.grants",
            "DROP TABLE _fs_global._emulator.grants",
            "SELECT * FROM _fs_global._emulator.users",
            "SELECT password_hash FROM _fs_global._emulator.users",
            "SELECT * FROM NETFLIX._fs_information_schema._emu_owners",
            "SELECT * FROM _fs_information_schema._emu_load_history",
            "SELECT * FROM _fs_global._fs_information_schema._fs_stages",
            "INSERT INTO RAW.LOOT SELECT password_hash FROM _fs_global._emulator.users",
            "SELECT * FROM IDENTIFIER('_fs_global._emulator.users')",
            f"INSERT INTO IDENTIFIER('_fs_global._emulator.grants') VALUES {row}",
            "SELECT * FROM system.main.duckdb_tables",
        ):
            _raises(lambda statement=statement: cur.execute(statement), 2003, "does not exist or not authorized")

        statements = [
            "USE DATABASE _FS_GLOBAL",
            "USE SCHEMA _fs_global._emulator",
            "SHOW TABLES IN SCHEMA _fs_global._emulator",
            "COPY INTO _fs_global._emulator.grants FROM @RAW.LANDING",
            "ALTER TABLE _fs_global._emulator.grants RENAME TO _fs_global._emulator.g2",
            "CREATE TABLE RAW.STOLEN AS SELECT * FROM _fs_global._emulator.users",
            "SELECT * FROM IDENTIFIER($t)",
            "SET u = _fs_global._emulator.users",
            "SELECT * FROM $u",
            f"SELECT 1; INSERT INTO _fs_global._emulator.grants VALUES {row}",
            # the host, through DuckDB
            f"SELECT * FROM read_text('{root}/credentials.env')",
            f"SELECT * FROM READ_CSV('{root}/credentials.env', header = false)",
            f"INSERT INTO RAW.LOOT SELECT content FROM read_text('{root}/credentials.env')",
            f"SELECT * FROM system.main.read_blob('{root}/credentials.env')",
            f"SELECT * FROM glob('{root}/*')",
            f'SELECT * FROM "{root}/secret.csv"',
            f'SELECT * FROM RAW."{root}/secret.csv"',
            f"SELECT * FROM '{root}/secret.csv'",
            f'DESCRIBE SELECT * FROM "{root}/secret.csv"',
            f'SELECT * FROM information_schema."{root}/secret.csv"',
            "SELECT * FROM query('SELECT * FROM _fs_global._emulator.users')",
            "SELECT current_setting('home_directory')",
            "SELECT * FROM duckdb_settings()",
            "SELECT * FROM duckdb_databases()",
            f"ATTACH '{root}/snowflake/global.duckdb' AS stolen",
            "DETACH _fs_global",
            "PRAGMA database_list",
            "INSTALL httpfs",
            "LOAD httpfs",
            f"COPY (SELECT 1) TO '{tmp_path}/out.csv'",
            f"COPY RAW.LOOT TO '{tmp_path}/loot.csv'",
            f"EXPORT DATABASE '{tmp_path}/export'",
            "CREATE MACRO evil() AS 1",
            "CHECKPOINT",
            "INSERT INTO INFORMATION_SCHEMA.LOAD_HISTORY VALUES (1)",
            "DELETE FROM NETFLIX.INFORMATION_SCHEMA.TABLES",
        ]
        cur.execute("SET t = '_fs_global._emulator.users'")  # session variables are text put into a statement
        assert refused(cur, statements) == []
        # what Snowflake shows every role stays readable, and the loader's own work goes on
        cur.execute("SELECT COUNT(*) FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_NAME = 'LOOT'")
        assert cur.fetchone()[0] >= 1
        cur.execute("SELECT COUNT(*) FROM RAW.LOOT")
        _raises(
            lambda: cur.execute("USE ROLE ACCOUNTADMIN"), 2003, "Role 'ACCOUNTADMIN' does not exist or not authorized."
        )
    finally:
        conn.close()
    assert {r[1] for r in site.admin(f"SHOW GRANTS TO USER {LOADER}")} == {"NETFLIX_LOADER"}
    assert not any(r[1] in ("STOLEN",) for r in site.admin("SHOW DATABASES"))
    assert not list(tmp_path.iterdir())  # no file written
    assert site.loot() == []


# -- 2. stage paths ----------------------------------------------------------------------------------------------------


def test_a_stage_path_never_leaves_the_stage(site: Site) -> None:
    stage_dir = site.stack.s3_dir / STAGE_DIR
    (stage_dir / "ratings" / "2024" / "evil.csv").symlink_to(site.stack.credentials_file)
    (stage_dir / "outside").symlink_to(site.stack.root, target_is_directory=True)
    root = site.stack.root
    conn = site.login(LOADER)
    try:
        cur = conn.cursor()
        # a path with nothing there: LIST lists nothing
        for listing in (
            "LIST @RAW.LANDING/../../../",
            "LIST '@RAW.LANDING/../../../'",
            "LIST @RAW.LANDING/../../..",
            "LIST @RAW.LANDING/ratings/../../../../",
            "LIST @RAW.LANDING//",
            "LIST @RAW.LANDING/outside/",
            f"LIST @RAW.LANDING/{'../' * 8}{str(root).lstrip('/')}/",
            "LIST @RAW.LANDING PATTERN = '.*(credentials|evil|secret).*'",
        ):
            cur.execute(listing)
            assert cur.fetchall() == [], listing
        cur.execute("LIST @RAW.LANDING")
        assert [r[0] for r in cur.fetchall()] == ["s3://netflix-landing/movielens/ratings/2024/ratings.csv"]

        # FILES: a file that is not there
        for copy in (
            "COPY INTO RAW.LOOT FROM @RAW.LANDING FILES = ('../../../credentials.env')",
            "COPY INTO RAW.LOOT FROM @RAW.LANDING/../../../ FILES = ('credentials.env')",
            "COPY INTO RAW.LOOT FROM @RAW.LANDING FILES = ('ratings/2024/evil.csv')",
            "COPY INTO RAW.LOOT FROM @RAW.LANDING FILES = ('outside/credentials.env')",
            f"COPY INTO RAW.LOOT FROM @RAW.INTERNAL FILES = ('{'../' * 5}credentials.env')",
            f"COPY INTO RAW.LOOT FROM @RAW.INTERNAL FILES = ('{root}/credentials.env')",
            f"COPY INTO RAW.LOOT FROM (SELECT $1 FROM @RAW.LANDING) FILES = ('{'../' * 3}credentials.env')",
        ):
            _raises(lambda copy=copy: cur.execute(copy), 91016, "was not found")
        # a path or pattern: nothing to load
        for copy in (
            "COPY INTO RAW.LOOT FROM @RAW.LANDING/../../../",
            "COPY INTO RAW.LOOT FROM @RAW.LANDING PATTERN = '.*(credentials|evil).*'",
            "COPY INTO RAW.LOOT FROM @RAW.LANDING/outside/",
            f"COPY INTO RAW.LOOT FROM @RAW.INTERNAL/{'../' * 5}",
        ):
            cur.execute(copy)
            assert [r[0] for r in cur.fetchall()] == ["Copy executed with 0 files processed."], copy
        # the user's stage and a table's stage (its owner's): not this role's
        assert (
            refused(
                cur,
                [
                    "LIST @~/../../",
                    f"COPY INTO RAW.LOOT FROM @~ FILES = ('{'../' * 6}credentials.env')",
                    f"COPY INTO RAW.LOOT FROM @%LOOT FILES = ('{'../' * 6}credentials.env')",
                    "LIST @%LOOT",
                ],
            )
            == []
        )
        # what the stage holds is still there
        cur.execute("COPY INTO RAW.LOOT FROM @RAW.LANDING/ratings/2024/")
        assert [r[1] for r in cur.fetchall()] == ["LOADED"]
    finally:
        conn.close()
    assert site.loot() == ["staged line"]
    site.admin("TRUNCATE TABLE RAW.LOOT")


# -- 3. the host's files -----------------------------------------------------------------------------------------------


def test_a_loader_loads_only_from_stages_never_from_the_hosts_files(site: Site) -> None:
    root = site.stack.root
    site.admin(f"CREATE OR REPLACE STAGE RAW.HOST_DIR URL = '{root}/'")  # only an administrator may create it
    site.admin("GRANT USAGE ON STAGE RAW.HOST_DIR TO ROLE NETFLIX_LOADER")
    site.admin("CREATE SCHEMA IF NOT EXISTS NETFLIX.SCRATCH")
    site.admin("GRANT USAGE, CREATE STAGE ON SCHEMA NETFLIX.SCRATCH TO ROLE NETFLIX_LOADER")
    conn = site.login(LOADER)
    try:
        cur = conn.cursor()
        for copy in (
            f"COPY INTO RAW.LOOT FROM 'file://{root}/credentials.env'",
            f"COPY INTO RAW.LOOT FROM 'file://{root}/' FILES = ('credentials.env')",
            f"COPY INTO RAW.LOOT FROM '{root}/' FILES = ('credentials.env')",
            f"COPY INTO RAW.LOOT FROM '{root}'",
            "COPY INTO RAW.LOOT FROM '/etc'",
            "COPY INTO RAW.LOOT FROM 'file:///etc/passwd'",
            f"COPY INTO RAW.LOOT FROM (SELECT $1 FROM '{root}/') FILES = ('credentials.env')",
        ):
            _raises(lambda copy=copy: cur.execute(copy), 1011, "invalid URL prefix found in")
        assert (
            refused(
                cur,
                [
                    # an external location in the statement (Snowflake: credentials or a storage integration)
                    "COPY INTO RAW.LOOT FROM 's3://netflix-landing/movielens/ratings/'",
                    # a stage on the host's file system
                    "COPY INTO RAW.LOOT FROM @RAW.HOST_DIR FILES = ('credentials.env')",
                    "COPY INTO RAW.LOOT FROM @RAW.HOST_DIR",
                    "LIST @RAW.HOST_DIR",
                    # ... which this role may not create either
                    "CREATE STAGE SCRATCH.MINE URL = 'file:///'",
                    f"CREATE STAGE SCRATCH.MINE URL = '{root}'",
                    f"CREATE OR REPLACE STAGE SCRATCH.MINE URL = 'file://{root}/' FILE_FORMAT = (TYPE = CSV)",
                ],
            )
            == []
        )
        cur.execute("CREATE STAGE SCRATCH.CLOUD URL = 's3://netflix-landing/movielens/'")  # a cloud URL is fine
    finally:
        conn.close()
        site.admin("REVOKE CREATE STAGE ON SCHEMA NETFLIX.SCRATCH FROM ROLE NETFLIX_LOADER")
    assert site.loot() == []


# -- 4. stored procedures ----------------------------------------------------------------------------------------------

PROCEDURE = """
CREATE OR REPLACE PROCEDURE RAW.{name}()
RETURNS VARCHAR
LANGUAGE PYTHON
RUNTIME_VERSION = '3.11'
PACKAGES = ('snowflake-snowpark-python')
HANDLER = 'main'
EXECUTE AS OWNER
AS
$$
{imports}
def main(session):
    {body}
$$
"""


def test_a_procedure_handler_runs_under_the_sandbox_guard(site: Site) -> None:
    secret_file = site.stack.credentials_file
    path = repr(str(secret_file))
    # a non-administrative role without CREATE PROCEDURE on the schema may not create one
    conn = site.login(LOADER)
    try:
        _raises(
            lambda: conn.cursor().execute(
                PROCEDURE.format(name="MINE", imports="import os", body="return os.getcwd()")
            ),
            3001,
            "Insufficient privileges to operate on schema 'RAW'",
        )
    finally:
        conn.close()

    escapes = {
        "IMPORT_OS": ("import os", "return os.getcwd()"),
        "IMPORT_SUBPROCESS": ("import subprocess", "return subprocess.run(['id'], capture_output=True).stdout"),
        "IMPORT_SOCKET": ("import socket", "return str(socket.gethostname())"),
        "IMPORT_SHUTIL": ("import shutil", "return shutil.which('sh')"),
        "IMPORT_CTYPES": ("import ctypes", "return str(ctypes.CDLL(None))"),
        "IMPORT_IMPORTLIB": ("import importlib", "return importlib.import_module('os').getcwd()"),
        "IMPORT_SYS": ("import sys", "return sys.modules['os'].getcwd()"),
        "IMPORT_OS_PATH": ("import os.path", "return os.path.abspath('.')"),
        "IMPORT_POSIX": ("import posix", "return posix.getcwd()"),
        "IMPORT_BUILTINS": ("import builtins", f"return builtins.open({path}).read()"),
        "IMPORT_PATHLIB": ("import pathlib", f"return pathlib.Path({path}).read_text()"),
        "IMPORT_IO": ("import io", f"return io.open({path}).read()"),
        "IMPORT_GZIP": ("import gzip", f"return str(gzip.open({path}).read())"),
        "IMPORT_EMULATOR": ("import snowflake.emulator.cursor as c", "return str(c.context())"),
        "DUNDER_IMPORT": ("", "return __import__('os').getcwd()"),
        "BUILTINS_DICT": ("", f"return __builtins__['open']({path}).read()"),
        "OPEN": ("", f"return open({path}).read()"),
        "EVAL": ("", "return eval('1 + 1')"),
        "EXEC": ("", "exec('x = 1')\n    return 'ran'"),
        "COMPILE": ("", "return str(compile('1', 'x', 'eval'))"),
        "MODULE_ATTRIBUTE": ("import dataclasses", "return dataclasses.sys.modules['os'].getcwd()"),
        "MODULE_ATTRIBUTE_2": ("import uuid", "return uuid.os.getcwd()"),
        "SUBCLASSES": ("", "return str(().__class__.__base__.__subclasses__())"),
        "GETATTR": ("", "return str(getattr(object, '__subclasses__')())"),
        "GLOBALS": ("", "def f():\n        pass\n    return str(f.__globals__['__builtins__'])"),
        "FRAME": ("", "try:\n        1 / 0\n    except Exception as e:\n        return str(e.__traceback__.tb_frame)"),
        "VARS_OF_A_CLASS": ("", "return str(vars(object)['__subclasses__'](object))"),
        "PUT": ("", f"session.file.put('file://{secret_file}', '@RAW.INTERNAL')\n    return 'put'"),
    }
    for name, (imports, body) in escapes.items():
        site.admin(PROCEDURE.format(name=name, imports=imports, body=body))
        site.admin(f"GRANT USAGE ON PROCEDURE RAW.{name}() TO ROLE NETFLIX_LOADER")
    site.admin(
        PROCEDURE.format(
            name="ALLOWED",
            imports="import datetime, time, types, uuid, re, json, math, decimal, collections, functools, itertools\n"
            "import typing, hashlib, base64, enum, string\nfrom dataclasses import dataclass, field\n\n"
            "@dataclass\nclass Point:\n    x: int\n    tags: list = field(default_factory=list)\n",
            body="ns = types.SimpleNamespace(**globals())\n"
            "    return type(ns).__name__ + ' ' + str(Point(1).x) + ' ' + re.sub('a', 'b', 'a') + ' ' + "
            "str(len(str(uuid.uuid4()))) + ' ' + json.dumps(datetime.date(2024, 1, 2).isoformat())",
        )
    )
    site.admin("GRANT USAGE ON PROCEDURE RAW.ALLOWED() TO ROLE NETFLIX_LOADER")

    conn = site.login(LOADER)
    try:
        cur = conn.cursor()
        escaped = []
        for name in escapes:
            try:
                cur.execute(f"CALL RAW.{name}()")
                escaped.append(f"{name}: {cur.fetchone()[0]!r}"[:200])
            except ProgrammingError as e:
                assert e.errno in (100357, 90236), (name, e)
                assert site.secret not in str(e), name
        assert escaped == []
        cur.execute("CALL RAW.ALLOWED()")
        assert cur.fetchone()[0] == 'SimpleNamespace 1 b 36 "2024-01-02"'
    finally:
        conn.close()
    assert not any(r[0].endswith("credentials.env") for r in site.admin("LIST @RAW.INTERNAL"))


# -- 5. ownership ------------------------------------------------------------------------------------------------------

WHOAMI = """
CREATE OR REPLACE PROCEDURE NETFLIX.RAW.WHOAMI(FILES ARRAY DEFAULT NULL, DRY_RUN BOOLEAN DEFAULT FALSE)
RETURNS VARCHAR
LANGUAGE PYTHON
RUNTIME_VERSION = '3.11'
PACKAGES = ('snowflake-snowpark-python')
HANDLER = 'main'
EXECUTE AS OWNER
AS
$$
def main(session, files, dry_run):
    session.sql("SELECT COUNT(*) FROM RAW.LOOT").collect()
    return session.sql("SELECT CURRENT_ROLE()").collect()[0][0]
$$
"""
WHOAMI_SIGNATURE = "NETFLIX.RAW.WHOAMI(ARRAY, BOOLEAN)"


def test_ownership_moves_as_snowflake_moves_it(site: Site) -> None:
    for statement in (
        f"CREATE ROLE IF NOT EXISTS {PROCEDURE_OWNER}",
        f"GRANT ROLE {PROCEDURE_OWNER} TO ROLE SYSADMIN",
        f"GRANT USAGE ON DATABASE NETFLIX TO ROLE {PROCEDURE_OWNER}",
        f"GRANT USAGE ON SCHEMA NETFLIX.RAW TO ROLE {PROCEDURE_OWNER}",
        f"GRANT SELECT ON TABLE NETFLIX.RAW.LOOT TO ROLE {PROCEDURE_OWNER}",
        WHOAMI,
        f"GRANT USAGE ON PROCEDURE {WHOAMI_SIGNATURE} TO ROLE NETFLIX_LOADER",
    ):
        site.admin(statement)
    site.user("PROCEDURE_OWNER_USER", PROCEDURE_OWNER)
    transfer = f"GRANT OWNERSHIP ON PROCEDURE {WHOAMI_SIGNATURE} TO ROLE {PROCEDURE_OWNER}"

    def call(user: str) -> str:
        conn = site.login(user)
        try:
            cur = conn.cursor()
            cur.execute("CALL RAW.WHOAMI()")
            return str(cur.fetchone()[0])
        finally:
            conn.close()

    # a role that neither owns the procedure nor holds MANAGE GRANTS may not transfer it
    conn = site.login(LOADER)
    try:
        _raises(
            lambda: conn.cursor().execute(
                f"GRANT OWNERSHIP ON PROCEDURE {WHOAMI_SIGNATURE} TO ROLE NETFLIX_LOADER REVOKE CURRENT GRANTS"
            ),
            3001,
            "Insufficient privileges to operate on procedure 'WHOAMI'",
        )
    finally:
        conn.close()
    # with grants on it, a plain transfer fails: they must be revoked or copied
    _raises(
        lambda: site.admin(transfer),
        3111,
        f"Dependent grant of privilege 'USAGE' on securable '{WHOAMI_SIGNATURE}' to role 'NETFLIX_LOADER' exists",
    )
    assert call(LOADER) == "ACCOUNTADMIN"

    # REVOKE CURRENT GRANTS: the new owner's rights, the old grants gone
    assert site.admin(transfer + " REVOKE CURRENT GRANTS") == [("Statement executed successfully.",)]
    owned = {(r[1], r[2], r[3]) for r in site.admin(f"SHOW GRANTS TO ROLE {PROCEDURE_OWNER}")}
    assert ("OWNERSHIP", "PROCEDURE", WHOAMI_SIGNATURE) in owned
    _raises(lambda: call(LOADER), 2003, "Procedure 'NETFLIX.RAW.WHOAMI' does not exist or not authorized.")
    site.admin(f"GRANT USAGE ON PROCEDURE {WHOAMI_SIGNATURE} TO ROLE NETFLIX_LOADER")
    assert call(LOADER) == PROCEDURE_OWNER
    assert call("PROCEDURE_OWNER_USER") == PROCEDURE_OWNER

    # CREATE OR REPLACE by an administrator that inherits the owner role: a new object, owned by its creator,
    # without the grants of the one it replaced
    site.admin(WHOAMI)
    owned = {(r[1], r[2], r[3]) for r in site.admin(f"SHOW GRANTS TO ROLE {PROCEDURE_OWNER}")}
    assert ("OWNERSHIP", "PROCEDURE", WHOAMI_SIGNATURE) not in owned
    _raises(lambda: call(LOADER), 2003, "Procedure 'NETFLIX.RAW.WHOAMI' does not exist or not authorized.")
    site.admin(f"GRANT USAGE ON PROCEDURE {WHOAMI_SIGNATURE} TO ROLE NETFLIX_LOADER")
    assert call(LOADER) == "ACCOUNTADMIN"
    # COPY CURRENT GRANTS keeps them
    site.admin(transfer + " COPY CURRENT GRANTS")
    assert call(LOADER) == PROCEDURE_OWNER

    # the owner may hand it on to a role it has, not to one outside its session (no MANAGE GRANTS)
    conn = site.login("PROCEDURE_OWNER_USER")
    try:
        _raises(
            lambda: conn.cursor().execute(
                f"GRANT OWNERSHIP ON PROCEDURE {WHOAMI_SIGNATURE} TO ROLE NETFLIX_LOADER COPY CURRENT GRANTS"
            ),
            3001,
            "ownership can only be transferred to a role that is activated in the current session",
        )
    finally:
        conn.close()

    # an administrator replaces a procedure only if it inherits the owner role
    site.admin("CREATE ROLE IF NOT EXISTS NETFLIX_ORPHAN")  # granted to no role
    site.admin(WHOAMI.replace("WHOAMI", "ORPHANED"))
    site.admin("GRANT OWNERSHIP ON PROCEDURE NETFLIX.RAW.ORPHANED(ARRAY, BOOLEAN) TO ROLE NETFLIX_ORPHAN")
    _raises(lambda: site.admin(WHOAMI.replace("WHOAMI", "ORPHANED")), 3001, "procedure 'ORPHANED'")

    # tables, stages and file formats
    site.admin("CREATE OR REPLACE TABLE RAW.OWNED (X INT)")
    site.admin("GRANT SELECT ON TABLE NETFLIX.RAW.OWNED TO ROLE NETFLIX_LOADER")
    site.admin("CREATE OR REPLACE STAGE RAW.OWNED_STAGE URL = 's3://netflix-landing/movielens/'")
    site.admin("CREATE OR REPLACE FILE FORMAT RAW.OWNED_FORMAT TYPE = CSV")
    _raises(lambda: site.admin(f"GRANT OWNERSHIP ON TABLE NETFLIX.RAW.OWNED TO ROLE {PROCEDURE_OWNER}"), 3111, "")
    site.admin(f"GRANT OWNERSHIP ON TABLE NETFLIX.RAW.OWNED TO ROLE {PROCEDURE_OWNER} COPY CURRENT GRANTS")
    site.admin(f"GRANT OWNERSHIP ON STAGE NETFLIX.RAW.OWNED_STAGE TO ROLE {PROCEDURE_OWNER} REVOKE CURRENT GRANTS")
    site.admin(f"GRANT OWNERSHIP ON FILE FORMAT NETFLIX.RAW.OWNED_FORMAT TO ROLE {PROCEDURE_OWNER}")
    owned = {(r[1], r[2], r[3]) for r in site.admin(f"SHOW GRANTS TO ROLE {PROCEDURE_OWNER}")}
    assert {
        ("OWNERSHIP", "TABLE", "NETFLIX.RAW.OWNED"),
        ("OWNERSHIP", "STAGE", "NETFLIX.RAW.OWNED_STAGE"),
        ("OWNERSHIP", "FILE_FORMAT", "NETFLIX.RAW.OWNED_FORMAT"),
    } <= owned
    conn = site.login("PROCEDURE_OWNER_USER")
    try:
        cur = conn.cursor()
        cur.execute("INSERT INTO RAW.OWNED VALUES (1)")  # the owner may do anything with it
        cur.execute("LIST @RAW.OWNED_STAGE/ratings/2024/")
        assert len(cur.fetchall()) == 1
    finally:
        conn.close()
    conn = site.login(LOADER)
    try:
        cur = conn.cursor()
        cur.execute("SELECT COUNT(*) FROM RAW.OWNED")  # the copied grant
        assert cur.fetchone()[0] == 1
        # a quoted stage path, as the load procedure writes it
        cur.execute("LIST '@RAW.LANDING/ratings/2024'")
        assert [r[0] for r in cur.fetchall()] == ["s3://netflix-landing/movielens/ratings/2024/ratings.csv"]
        cur.execute("LIST '@RAW.LANDING/ratings/2024/' PATTERN = '.*[.]csv'")
        assert len(cur.fetchall()) == 1
    finally:
        conn.close()

    # REVOKE ... ON ALL / FUTURE TABLES IN SCHEMA, GRANT ... ON TABLE
    role = "NETFLIX_SCRATCH"
    site.admin(f"CREATE ROLE IF NOT EXISTS {role}")
    site.admin(f"GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA NETFLIX.RAW TO ROLE {role}")
    site.admin(f"GRANT SELECT, INSERT ON FUTURE TABLES IN SCHEMA NETFLIX.RAW TO ROLE {role}")
    assert {r[3] for r in site.admin(f"SHOW GRANTS TO ROLE {role}")} >= {"NETFLIX.RAW.LOOT", "NETFLIX.RAW.OWNED"}
    site.admin(f"REVOKE SELECT, INSERT ON ALL TABLES IN SCHEMA NETFLIX.RAW FROM ROLE {role}")
    site.admin(f"REVOKE SELECT, INSERT ON FUTURE TABLES IN SCHEMA NETFLIX.RAW FROM ROLE {role}")
    assert site.admin(f"SHOW GRANTS TO ROLE {role}") == []
    assert not [r for r in site.admin("SHOW FUTURE GRANTS IN SCHEMA NETFLIX.RAW") if r[5] == role]
    site.admin(f"GRANT SELECT ON TABLE NETFLIX.RAW.LOOT TO ROLE {role}")
    assert {(r[1], r[2], r[3]) for r in site.admin(f"SHOW GRANTS TO ROLE {role}")} == {
        ("SELECT", "TABLE", "NETFLIX.RAW.LOOT")
    }
