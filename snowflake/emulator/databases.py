"""``DROP DATABASE [IF EXISTS] <name> [CASCADE | RESTRICT]`` for the emulator, as Snowflake documents it
(https://docs.snowflake.com/en/sql-reference/sql/drop-database).

fakesnow keeps each database as a DuckDB file attached to the one DuckDB instance of the emulator
(``<state>/databases/<NAME>.db``, re-attached at start by :class:`.server.PersistentFakeSnow`), but has no
``DROP DATABASE``: DuckDB's parser refuses the statement. Dropping a database here therefore

- detaches it and deletes its file and write-ahead log, so a restart does not bring it back;
- forgets what the emulator's global catalogue keeps of it: stages (and their file formats and internal files),
  named file formats, procedures, grants on it and on its objects, and fakesnow's table comments and text lengths
  (ownership records, COPY jobs, load history and rejected records live inside the database file and go with it);
- leaves every session whose current database it was without one, as Snowflake does: an unqualified name then
  fails with "This session does not have a current database".

Privileges: the database's owner (a role holding OWNERSHIP on it, or a role that inherits that role) or an
administrator role (ACCOUNTADMIN, SECURITYADMIN, SYSADMIN, USERADMIN, or a role granted one) may drop it; a role
with some other privilege on it gets "Insufficient privileges to operate on database", any other role "does not
exist or not authorized" (as :mod:`.access` answers for other objects). The statement checks of :mod:`.access`
run first and refuse every DDL on a database to a role that is not an administrator's, so today a non-administrator
owner (``GRANT OWNERSHIP ON DATABASE``) is refused too, with "Insufficient privileges to operate on account".

Also ``SHOW DATABASES LIKE '<pattern>'``, which fakesnow answers with every database whatever the pattern: only
the databases whose name matches, case-insensitively (https://docs.snowflake.com/en/sql-reference/sql/show-databases).

Differences from Snowflake: there is no Time Travel, so nothing can be undropped; RESTRICT drops the database as
CASCADE does, because the emulator does not keep FOREIGN KEY constraints (see :mod:`.locks`) and so never knows of
a reference that should stop it; inside an open transaction the statement is refused (Snowflake commits the
transaction first).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import access, auth, procedures, stages
from .procedures import sql_error

log = logging.getLogger("snowflake.emulator")

_DROP = re.compile(
    r"\s*DROP\s+DATABASE\s+(?P<exists>IF\s+EXISTS\s+)?(?P<name>\"(?:[^\"]|\"\")+\"|[A-Za-z_][\w$]*)"
    r"(?:\s+(?P<mode>CASCADE|RESTRICT))?\s*\Z",
    re.IGNORECASE,
)

_SHOW_LIKE = re.compile(r"\s*SHOW\s+DATABASES\s+LIKE\s+'((?:[^']|'')*)'\s*\Z", re.IGNORECASE)
_SHOW_VIEW = "_fs_global._fs_information_schema._fs_show_databases"

# DuckDB's own catalogues and the emulator's global one: never a Snowflake database
_INTERNAL = ("MEMORY", "SYSTEM", "TEMP", "_FS_GLOBAL")

# catalogue tables that name a database, and the column that does
_CATALOGUE = (
    ("_fs_global._fs_information_schema._fs_stages", "database_name"),
    ("_fs_global._fs_information_schema._fs_file_formats", "database_name"),
    (stages.FILE_FORMATS_TABLE, "database_name"),
    ("_fs_global._fs_information_schema._fs_tables_ext", "ext_table_catalog"),
    ("_fs_global._fs_information_schema._fs_columns_ext", "ext_table_catalog"),
    (procedures.TABLE, "database_name"),
)

# grants on objects outside any database (their names are not database-qualified)
_ACCOUNT_GRANTS = ("ROLE", "ACCOUNT", "WAREHOUSE", "INTEGRATION", "USER")

_DROPPING = threading.Lock()  # one drop at a time: a second drop of the same database finds it gone


@dataclass(frozen=True)
class Attached:
    """A database as DuckDB has it attached: its catalogue name and its file (None: in memory)."""

    name: str
    path: str | None


def statement(conn: Any, sql: str, principal: auth.Principal) -> tuple[str, list[Any]] | None:
    """The answer to ``DROP DATABASE`` or ``SHOW DATABASES LIKE '<pattern>'`` as a DuckDB query and its parameters;
    None for another ``SHOW DATABASES`` (fakesnow's)."""
    if _SHOW_LIKE.match(sql):
        return show_like(sql)
    if re.match(r"\s*DROP\s+DATABASE\b", sql, re.IGNORECASE):
        return "SELECT ? AS status", [drop(conn, sql, principal)]
    return None


def show_like(sql: str) -> tuple[str, list[Any]]:
    """``SHOW DATABASES LIKE '<pattern>'``: fakesnow's rows for the databases whose name matches, case-insensitively,
    as Snowflake filters them (https://docs.snowflake.com/en/sql-reference/sql/show-databases); fakesnow lists every
    database whatever the pattern."""
    m = _SHOW_LIKE.match(sql)
    assert m
    return f"SELECT * FROM {_SHOW_VIEW} WHERE name ILIKE ? ORDER BY name", [m.group(1).replace("''", "'")]


def drop(conn: Any, sql: str, principal: auth.Principal) -> str:
    """Run ``DROP DATABASE`` for the session ``conn`` (a fakesnow connection); returns Snowflake's status text."""
    m = _DROP.match(sql)
    if not m:
        raise sql_error(
            "SQL compilation error:\nsyntax error in DROP DATABASE: expected DROP DATABASE [IF EXISTS] <name> "
            "[CASCADE | RESTRICT]",
            1003,
            "42000",
        )
    written = m.group("name")
    quoted = written.startswith('"')
    name = written[1:-1].replace('""', '"') if quoted else written.upper()
    with _DROPPING:
        database = find(conn._duck_conn, name, quoted)
        if database is None:
            if m.group("exists"):
                return f"Drop statement executed successfully ({name} already dropped)."
            raise access.not_authorized("Database", name, "02000")
        check_privileges(conn._duck_conn, principal.role, database.name, name)
        if procedures.in_transaction(conn):
            raise sql_error(
                f"SQL execution error:\nDROP DATABASE {name} cannot run inside an open transaction in the emulator: "
                "run COMMIT or ROLLBACK first.",
                100000,
                "25000",
            )
        detach(conn._duck_conn, database)
        forget(conn._duck_conn, database.name)
        leave(conn, database.name)
    return f"{name} successfully dropped."


def find(duck: Any, name: str, quoted: bool) -> Attached | None:
    """The attached database ``name`` names: exactly that name when it was quoted; an unquoted name (upper-cased)
    also matches a database fakesnow attached under the name as written (``CREATE DATABASE foo``)."""
    with access.fresh(duck) as cur:
        rows = cur.execute(
            "SELECT database_name, path FROM duckdb_databases() WHERE NOT internal AND upper(database_name) = upper(?)",
            [name],
        ).fetchall()
    for db_name, path in rows:
        if db_name.upper() in _INTERNAL:
            continue
        if db_name == name or (not quoted and db_name.upper() == name):
            return Attached(db_name, path)
    return None


def check_privileges(duck: Any, role: str, database: str, name: str) -> None:
    """Snowflake's rule for DROP: OWNERSHIP of the database (held by the role or a role it inherits), or an
    administrator role. ALL does not include OWNERSHIP."""
    with access.Privileges(duck, role) as privileges:
        if privileges.admin:
            return
        owned = {database, name}
        if any(p == "OWNERSHIP" and on == "DATABASE" and g in owned and not f for p, on, g, f, _ in privileges.grants):
            return
        if privileges.any_privilege("DATABASE", database) or privileges.any_privilege("DATABASE", name):
            raise access.insufficient("database", name)
    raise access.not_authorized("Database", name, "02000")


def detach(duck: Any, database: Attached) -> None:
    """Detach the database and delete its files (only files of the emulator's database directory)."""
    with access.fresh(duck) as cur:
        cur.execute(f'DETACH DATABASE "{database.name}"')
    if not database.path or database.path == ":memory:":
        return
    db_file = Path(database.path).resolve()
    directory = _database_directory()
    if directory is None or db_file.parent != directory:
        log.warning(
            "dropped database %s: its file %s is outside the state directory, left in place", database.name, db_file
        )
        return
    for path in (db_file, db_file.with_name(db_file.name + ".wal")):
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            raise sql_error(
                f"SQL execution error:\nDatabase {database.name} was dropped but its file {path} could not be deleted "
                f"({e.strerror}); delete it before the emulator restarts, or the database comes back.",
                100000,
                "58030",
            ) from e


def _database_directory() -> Path | None:
    import fakesnow.server as fs_server

    db_path = getattr(fs_server.shared_fs, "db_path", None)
    return Path(db_path).resolve() if db_path else None


def forget(duck: Any, database: str) -> None:
    """Delete what the global catalogue keeps of the dropped database (in autocommit, whatever the session does)."""
    with access.fresh(duck) as cur:
        for table, column in _CATALOGUE:
            with contextlib.suppress(Exception):  # a catalogue table created on first use may not exist yet
                cur.execute(f"DELETE FROM {table} WHERE upper({column}) = upper(?)", [database])
        marks = ", ".join("?" for _ in _ACCOUNT_GRANTS)
        cur.execute(
            f"DELETE FROM {access.GRANTS} WHERE granted_on NOT IN ({marks}) "
            "AND (upper(name) = upper(?) OR starts_with(upper(name), upper(?) || '.'))",
            [*_ACCOUNT_GRANTS, database, database],
        )
    _forget_internal_stage_files(database)


def _forget_internal_stage_files(database: str) -> None:
    """Files PUT to the database's internal and table stages (kept per database under fakesnow's bucket path)."""
    from fakesnow.transforms import stage as fs_stage

    root = Path(fs_stage.LOCAL_BUCKET_PATH)
    if not root.is_dir():
        return
    for child in root.iterdir():
        if child.is_dir() and child.name.upper() == database.upper():
            shutil.rmtree(child, ignore_errors=True)


def leave(conn: Any, database: str) -> None:
    """Every session whose current database was ``database`` (this one included) now has none.

    The session's DuckDB default catalogue is reset too (it would name a database that is gone, and every
    information_schema read would fail on it). For another session this runs on its connection from this thread: a
    statement of that session running at this very moment on the database being dropped may fail or see nothing."""
    import fakesnow.server as fs_server

    for session in {id(s): s for s in [conn, *list(fs_server.sessions.values())]}.values():
        current = getattr(session, "database", None)
        if not current or current.upper() != database.upper():
            continue
        session.database = None
        session._schema = None
        session.database_set = False
        session.schema_set = False
        with contextlib.suppress(Exception):
            session._duck_conn.execute("SET schema = 'memory.main'")
