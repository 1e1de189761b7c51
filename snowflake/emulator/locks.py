"""Snowflake's concurrency rules for the emulator's sessions: table locks, READ COMMITTED claims, unenforced keys.

Snowflake (https://docs.snowflake.com/en/sql-reference/transactions) runs each statement at READ COMMITTED: it
sees every row committed before it began. UPDATE, DELETE, MERGE and TRUNCATE lock their target table until the
end of the statement (AUTOCOMMIT) or of the transaction (COMMIT/ROLLBACK); another session's UPDATE, DELETE,
MERGE or TRUNCATE of that table waits for the lock (INSERT and COPY do not), for at most LOCK_TIMEOUT seconds
(default 43200), and a deadlock aborts the most recent statement in it. Pipelines rely on this to serialise
concurrent writers: ``BEGIN; UPDATE <lock table> ...; SELECT ...; INSERT ...; COMMIT`` claims each key once.

DuckDB, under the emulator, has neither locks nor READ COMMITTED: a transaction reads a snapshot taken when it
first touches a database, and two transactions that change the same row fail with a write-write "Conflict".
So this module keeps a process-wide lock table (every session of the emulator, the procedures' Snowpark
sessions too, is a thread of this one process) and takes a statement's lock *before* the statement touches
DuckDB: the waiting statement's snapshot then starts after the holder committed. A transaction that has only
read so far is restarted before each statement, so its next statement sees what others committed meanwhile.

Snowflake records PRIMARY KEY, UNIQUE and FOREIGN KEY constraints on standard tables but enforces only NOT NULL
(https://docs.snowflake.com/en/sql-reference/constraints-overview). DuckDB enforces them all, so CREATE TABLE
and ALTER TABLE reach DuckDB without them (a primary key's columns stay NOT NULL), and tables created with
enforced keys by an earlier emulator are rebuilt without them once per process.

DuckDB conflicts and constraint violations that still happen reach the client as Snowflake SQL errors.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import duckdb
import snowflake.connector.errors
from fakesnow.dialect import parse_one
from sqlglot import exp

log = logging.getLogger("snowflake.emulator")

DEFAULT_LOCK_TIMEOUT = 43200  # seconds; Snowflake's default for the LOCK_TIMEOUT session parameter
_POLL = 0.5  # seconds between checks of a waiter (a holder's session may have gone away)

_LOCKING = re.compile(r"(UPDATE|DELETE|MERGE|TRUNCATE)\b")
_BEGIN = re.compile(r"(BEGIN(\s+(TRANSACTION|WORK))?|START\s+TRANSACTION)(\s+NAME\s+\S+)?\Z", re.IGNORECASE)
_END = re.compile(r"(COMMIT|ROLLBACK)(\s+WORK)?\Z", re.IGNORECASE)
_QUERY = re.compile(r"(SELECT|WITH|SHOW|DESC|DESCRIBE|LIST|LS)\b")
_ALTER_SESSION = re.compile(r"ALTER\s+SESSION\s+(SET|UNSET)\s", re.IGNORECASE)
_KEYS = re.compile(r"\b(PRIMARY\s+KEY|UNIQUE|FOREIGN\s+KEY|REFERENCES|CONSTRAINT)\b", re.IGNORECASE)
_KEYED_DDL = re.compile(
    r"(CREATE\s+(OR\s+REPLACE\s+)?((LOCAL|GLOBAL)\s+)?(TRANSIENT\s+|TEMP\s+|TEMPORARY\s+)?TABLE|ALTER\s+TABLE)\s"
)


def sql_error(msg: str, errno: int, sqlstate: str) -> snowflake.connector.errors.ProgrammingError:
    return snowflake.connector.errors.ProgrammingError(msg=msg, errno=errno, sqlstate=sqlstate)


# -- sessions and the lock table ---------------------------------------------------------------------------------------
@dataclass(eq=False)
class Session:
    """What the lock table knows of one emulator session (a fakesnow connection)."""

    conn: weakref.ref[Any]
    held: dict[str, str] = field(default_factory=dict)  # table -> id of the statement that locked it
    waiting_for: str | None = None
    transaction: int = 0  # Snowflake-style transaction id, for messages
    explicit: bool = False  # in a BEGIN ... COMMIT/ROLLBACK under AUTOCOMMIT
    read_only: bool = False  # the open transaction has not written yet
    lock_timeout: int | None = None  # set by ALTER SESSION; None: the login's or the default
    depth: int = 0  # statements of this session in progress (the emulator runs some inside others)

    def alive(self) -> bool:
        conn = self.conn()
        return conn is not None and not getattr(conn, "_is_closed", False)


_GUARD = threading.Condition()
_HOLDERS: dict[str, Session] = {}  # table -> the session holding its lock
_QUEUES: dict[str, list[Session]] = {}  # table -> sessions waiting for it, first come first served


def session(conn: Any) -> Session:
    """The lock state of ``conn``; its locks are released when the connection is garbage-collected (the server
    drops a session's connection when the client closes it)."""
    state = getattr(conn, "_emulator_locks", None)
    if isinstance(state, Session):
        return state
    state = Session(conn=weakref.ref(conn))
    conn._emulator_locks = state
    weakref.finalize(conn, _session_gone, state, getattr(conn, "_duck_conn", None))
    return state


def _session_gone(state: Session, duck: Any) -> None:
    """The session's connection was dropped: end its DuckDB transaction (a rollback), then free its locks."""
    with contextlib.suppress(Exception):
        if duck is not None:
            duck.close()
    release(state)


def release(state: Session) -> None:
    """Release every lock ``state`` holds (end of its transaction, or of its session)."""
    with _GUARD:
        for table in list(state.held):
            if _HOLDERS.get(table) is state:
                del _HOLDERS[table]
        state.held.clear()
        _GUARD.notify_all()


def holders() -> dict[str, Session]:
    """A copy of the lock table (for diagnostics)."""
    with _GUARD:
        return dict(_HOLDERS)


def in_transaction(conn: Any, state: Session) -> bool:
    """Whether ``conn`` has a transaction open: an explicit one, or fakesnow's implicit one with AUTOCOMMIT off."""
    if not getattr(conn, "_autocommit", True):
        return bool(getattr(conn, "_in_transaction", False))
    return state.explicit


def lock_timeout(conn: Any, state: Session) -> int:
    if state.lock_timeout is not None:
        return state.lock_timeout
    login = getattr(conn, "session_parameters", None)
    value = login.get("LOCK_TIMEOUT") if isinstance(login, dict) else None
    try:
        return DEFAULT_LOCK_TIMEOUT if value is None else max(0, int(value))
    except (TypeError, ValueError):
        return DEFAULT_LOCK_TIMEOUT


def acquire(state: Session, table: str, timeout: float) -> None:
    """Take the exclusive lock on ``table`` for ``state``, waiting (first come, first served) for at most
    ``timeout`` seconds; a wait that would close a cycle of waiters fails at once (Snowflake aborts the most
    recent statement of a deadlock)."""
    deadline = time.monotonic() + timeout
    statement = str(uuid.uuid4())
    with _GUARD:
        queue = _QUEUES.setdefault(table, [])
        queue.append(state)
        try:
            while True:
                holder = _HOLDERS.get(table)
                if holder is not None and holder is not state and not holder.alive():
                    release(holder)  # its session went away without ending its transaction
                    holder = None
                if holder is state or (holder is None and _first_alive(queue) is state):
                    _HOLDERS[table] = state
                    state.held.setdefault(table, statement)
                    if not state.transaction:
                        state.transaction = time.time_ns()
                    return
                state.waiting_for = table
                if holder is not None and _waits_for(holder, state):
                    raise _deadlock(state, table, holder, statement)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _timed_out(table, holder, statement, timeout)
                _GUARD.wait(min(remaining, _POLL))
        finally:
            state.waiting_for = None
            queue.remove(state)
            if not queue:
                _QUEUES.pop(table, None)
            _GUARD.notify_all()


def _first_alive(queue: list[Session]) -> Session | None:
    return next((s for s in queue if s.alive()), None)


def _waits_for(holder: Session, state: Session) -> bool:
    """Whether ``holder`` waits, directly or through other sessions, for a lock ``state`` holds."""
    seen: set[int] = set()
    current: Session | None = holder
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        table = current.waiting_for
        if table is None:
            return False
        current = _HOLDERS.get(table)
        if current is state:
            return True
    return False


def _timed_out(
    table: str, holder: Session | None, statement: str, timeout: float
) -> snowflake.connector.errors.ProgrammingError:
    locked_by = holder.held.get(table, "?") if holder else "?"
    transaction = holder.transaction if holder else 0
    return sql_error(
        f"Statement '{locked_by}' has locked table '{table}' in transaction {transaction} and this lock has not yet "
        f"been released.\nYour statement '{statement}' was aborted because it waited longer than LOCK_TIMEOUT "
        f"({int(timeout)} seconds) for this lock. Commit or roll back the transaction holding it, or raise "
        "LOCK_TIMEOUT (ALTER SESSION SET LOCK_TIMEOUT = <seconds>).",
        625,
        "57014",
    )


def _deadlock(
    state: Session, table: str, holder: Session, statement: str
) -> snowflake.connector.errors.ProgrammingError:
    mine = ", ".join(f"'{t}'" for t in state.held) or "a table"
    return sql_error(
        f"Your statement '{statement}' was aborted because of a deadlock: it waits for table '{table}', locked in "
        f"transaction {holder.transaction}, which waits for {mine}, locked by this statement's transaction "
        f"{state.transaction}. The statement was rolled back; its transaction is still open: ROLLBACK it (or COMMIT) "
        "and retry, and take table locks in the same order in every transaction.",
        625,
        "40001",
    )


# -- the statement hook ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def statement(conn: Any, sql: str) -> Iterator[None]:
    """Run one statement of ``conn`` (``sql``: without comments) under Snowflake's locking rules; DuckDB conflict
    and constraint errors leave as Snowflake SQL errors."""
    relax_existing_keys(conn)
    state = session(conn)
    head = sql[:16].upper()
    state.depth += 1
    try:
        if state.depth == 1:
            _before(conn, state, sql, head)
        try:
            yield
        except duckdb.Error as e:
            mapped = snowflake_error(e)
            if mapped is None:
                raise
            raise mapped from e
        except snowflake.connector.errors.Error as e:
            # a DuckDB write-write conflict already converted to a generic error: say what it means here
            if (
                not isinstance(e.__cause__, duckdb.TransactionException)
                or (mapped := snowflake_error(e.__cause__)) is None
            ):
                raise
            raise mapped from e.__cause__
        if state.depth == 1 and _BEGIN.match(sql):
            state.explicit = bool(getattr(conn, "_autocommit", True))
            state.read_only = True
    finally:
        state.depth -= 1
        if state.depth == 0:
            if _END.match(sql):
                state.explicit = False
            if not in_transaction(conn, state):
                state.read_only = False
                state.transaction = 0
                release(state)


def _before(conn: Any, state: Session, sql: str, head: str) -> None:
    if not in_transaction(conn, state):
        state.read_only = False
    table = target_table(sql, conn.database, conn.schema) if _LOCKING.match(head) else None
    if table is not None:
        acquire(state, table, lock_timeout(conn, state))
    if state.read_only and in_transaction(conn, state):
        # READ COMMITTED: a transaction that has only read so far starts afresh, so this statement sees every
        # row committed before it began (DuckDB would keep the snapshot of the transaction's first read)
        try:
            conn._duck_conn.execute("ROLLBACK")
        except duckdb.TransactionException:
            state.read_only = False  # no transaction open after all: nothing to restart
        else:
            conn._duck_conn.execute("BEGIN TRANSACTION")
        if not _QUERY.match(head):
            state.read_only = False


def rewrite(conn: Any, sql: str) -> str | None:
    """``sql`` as DuckDB should get it, or None when unchanged: CREATE/ALTER TABLE without the keys Snowflake does
    not enforce (:func:`without_key_constraints`); ALTER SESSION without LOCK_TIMEOUT, which is recorded here."""
    if _ALTER_SESSION.match(sql[:24]) and "LOCK_TIMEOUT" in sql.upper():
        return _lock_timeout_parameter(conn, sql)
    return without_key_constraints(sql)


def _lock_timeout_parameter(conn: Any, sql: str) -> str | None:
    """``ALTER SESSION SET LOCK_TIMEOUT = <n>`` / ``UNSET LOCK_TIMEOUT``: recorded for the session; the statement
    without it (fakesnow knows no LOCK_TIMEOUT)."""
    try:
        expression = parse_one(sql)
    except Exception:
        return None  # fakesnow reports the syntax error
    actions = expression.args.get("actions") or []
    alter = actions[0] if isinstance(expression, exp.Alter) and actions else None
    if not isinstance(alter, exp.AlterSession):
        return None
    for item in list(alter.expressions):
        target = item.this.this if isinstance(item.this, exp.EQ) else item.this
        if not isinstance(target, exp.Column | exp.Identifier) or target.name.upper() != "LOCK_TIMEOUT":
            continue
        value = item.this.expression if isinstance(item.this, exp.EQ) else None
        text = None if value is None else value.name if isinstance(value, exp.Literal) else value.sql()
        session(conn).lock_timeout = _parse_lock_timeout(text)
        item.pop()
    if alter.expressions:
        return str(expression.sql(dialect="snowflake"))
    return "SELECT 'Statement executed successfully.' AS \"status\""


def _parse_lock_timeout(value: str | None) -> int | None:
    if value is None:
        return None  # UNSET
    try:
        seconds = int(value)
    except ValueError:
        seconds = -1
    if seconds < 0:
        raise sql_error(
            f"SQL compilation error:\ninvalid value [{value}] for parameter 'LOCK_TIMEOUT': give a whole number of "
            "seconds, 0 or more.",
            1008,
            "22023",
        )
    return seconds


def target_table(sql: str, database: str | None, schema: str | None) -> str | None:
    """``DATABASE.SCHEMA.TABLE`` that an UPDATE, DELETE, MERGE or TRUNCATE writes, or None."""
    try:
        expression = parse_one(sql)
    except Exception:
        return None  # fakesnow reports the syntax error
    if isinstance(expression, exp.TruncateTable):
        table = next(iter(expression.expressions), None)
    elif isinstance(expression, exp.Update | exp.Delete | exp.Merge):
        table = expression.this
    else:
        return None
    if not isinstance(table, exp.Table) or not table.name:
        return None
    catalog = _ident(table.args.get("catalog")) or database
    db = _ident(table.args.get("db")) or schema
    if not catalog or not db:
        return None
    return f"{catalog}.{db}.{table.name}".upper()  # DuckDB's names are case-insensitive, quoted or not


def _ident(node: Any) -> str | None:
    return str(node.this) if isinstance(node, exp.Identifier) else None


def snowflake_error(e: duckdb.Error) -> snowflake.connector.errors.ProgrammingError | None:
    """The Snowflake error for a DuckDB conflict or constraint violation (None: another kind of error)."""
    text = str(e)
    if isinstance(e, duckdb.ConstraintException):
        if m := re.search(r"NOT NULL constraint failed: (\S+)", text):
            return sql_error(
                f"NULL result in a non-nullable column\n(column {m.group(1).upper()} is NOT NULL: give it a value)",
                100072,
                "22000",
            )
        return sql_error(f"Constraint violation: {text}", 100072, "22000")
    if isinstance(e, duckdb.TransactionException):
        if "aborted" in text.lower():
            return sql_error(
                "Transaction aborted: an earlier statement of this transaction failed. ROLLBACK it and retry.",
                625,
                "25P02",
            )
        return sql_error(
            "Statement aborted: a row it changes was changed by another transaction after this transaction first "
            f"read the database ({text}). ROLLBACK and retry the transaction; to serialise such writers, make the "
            "transaction's first statement an UPDATE of a lock table.",
            625,
            "57014",
        )
    return None


# -- keys that Snowflake records but does not enforce --------------------------------------------------------------------
def without_key_constraints(sql: str) -> str | None:
    """``sql`` (a CREATE TABLE or ALTER TABLE) without PRIMARY KEY, UNIQUE and FOREIGN KEY constraints, which
    Snowflake accepts but does not enforce; None when there are none (or it is another statement)."""
    if not _KEYED_DDL.match(sql[:80].upper()) or not _KEYS.search(sql):
        return None
    try:
        expression = parse_one(sql)
        if isinstance(expression, exp.Create) and isinstance(expression.this, exp.Schema):
            return str(expression.sql(dialect="snowflake")) if _relax_schema(expression.this) else None
        if isinstance(expression, exp.Alter) and str(expression.args.get("kind") or "").upper() == "TABLE":
            return _relax_alter(expression)
    except Exception:
        return None  # not understood (fakesnow reports a syntax error): left as it is
    return None


def _relax_schema(schema: exp.Schema) -> bool:
    changed = False
    primary: set[str] = set()
    for item in list(schema.expressions):
        if isinstance(item, exp.ColumnDef):
            changed = _relax_column(item) or changed
        elif _is_key(item):
            key = item if isinstance(item, exp.PrimaryKey) else item.find(exp.PrimaryKey)
            if key is not None:
                primary |= {i.name.upper() for i in key.find_all(exp.Identifier)}
            item.pop()
            changed = True
    for column in schema.expressions:
        if isinstance(column, exp.ColumnDef) and column.name.upper() in primary:
            _not_null(column)
    return changed


def _relax_column(column: exp.ColumnDef) -> bool:
    changed = False
    for constraint in list(column.args.get("constraints") or []):
        kind = constraint.args.get("kind")
        if isinstance(kind, exp.PrimaryKeyColumnConstraint | exp.UniqueColumnConstraint | exp.Reference):
            constraint.pop()
            changed = True
            if isinstance(kind, exp.PrimaryKeyColumnConstraint):
                _not_null(column)
    return changed


def _not_null(column: exp.ColumnDef) -> None:
    """A primary key's columns are NOT NULL (and that Snowflake enforces)."""
    constraints = column.args.get("constraints") or []
    if not any(isinstance(c.args.get("kind"), exp.NotNullColumnConstraint) for c in constraints):
        column.set("constraints", [exp.ColumnConstraint(kind=exp.NotNullColumnConstraint()), *constraints])


def _is_key(node: exp.Expression) -> bool:
    if isinstance(node, exp.PrimaryKey | exp.ForeignKey | exp.UniqueColumnConstraint):
        return True
    return isinstance(node, exp.Constraint) and all(_is_key(e) for e in node.expressions)


def _relax_alter(alter: exp.Alter) -> str | None:
    actions = alter.args.get("actions") or []
    changed = False
    for action in list(actions):
        if isinstance(action, exp.ColumnDef):
            changed = _relax_column(action) or changed
        elif _is_key_action(action):
            action.pop()
            changed = True
    if not changed:
        return None
    if alter.args.get("actions"):
        return str(alter.sql(dialect="snowflake"))
    # only keys were added or dropped: nothing for DuckDB to do, but the table must exist
    table = alter.this.sql(dialect="snowflake")
    return f"SELECT 'Statement executed successfully.' AS \"status\" FROM (SELECT COUNT(*) FROM {table} WHERE FALSE)"


def _is_key_action(action: exp.Expression) -> bool:
    if isinstance(action, exp.AddConstraint):
        return all(_is_key(e) for e in action.expressions)
    if isinstance(action, exp.Drop):
        return str(action.args.get("kind") or "").upper() == "CONSTRAINT"
    if isinstance(action, exp.Command) and str(action.this).upper() == "DROP":
        return bool(re.match(r"(PRIMARY\s+KEY|UNIQUE|FOREIGN\s+KEY)\b", str(action.expression).strip(), re.I))
    return False


_RELAXED: weakref.WeakSet[Any] = weakref.WeakSet()
_RELAXING = threading.Lock()


def relax_existing_keys(conn: Any) -> None:
    """Once per emulator instance: rebuild the tables an earlier emulator created with enforced PRIMARY KEY,
    UNIQUE or FOREIGN KEY constraints (state kept across restarts) without them, keeping rows, NOT NULL, defaults
    and comments."""
    import fakesnow.server as fs_server

    instance = fs_server.shared_fs
    if instance in _RELAXED:
        return
    with _RELAXING:
        if instance in _RELAXED:
            return
        try:
            with contextlib.closing(conn._duck_conn.cursor()) as duck:
                for database, schema, table in _keyed_tables(duck):
                    _rebuild(duck, database, schema, table)
        except Exception:
            log.exception("could not rebuild tables without their enforced keys")
        _RELAXED.add(instance)


def _keyed_tables(duck: Any) -> list[tuple[str, str, str]]:
    """Tables with enforced keys, those holding foreign keys first (a referenced table cannot be dropped before)."""
    rows = duck.execute(
        "SELECT database_name, schema_name, table_name, bool_or(constraint_type = 'FOREIGN KEY') AS fk "
        "FROM duckdb_constraints() WHERE constraint_type IN ('PRIMARY KEY', 'UNIQUE', 'FOREIGN KEY') "
        "AND database_name NOT IN ('_fs_global', 'system', 'temp') AND NOT starts_with(schema_name, '_fs_') "
        "AND lower(schema_name) NOT IN ('information_schema', 'pg_catalog') "
        "GROUP BY ALL ORDER BY fk DESC, 1, 2, 3"
    ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def _rebuild(duck: Any, database: str, schema: str, table: str) -> None:
    def q(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def literal(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    qualified = f"{q(database)}.{q(schema)}.{q(table)}"
    scratch_name = f"{table}__emulator_unkeyed"
    scratch = f"{q(database)}.{q(schema)}.{q(scratch_name)}"
    columns = duck.execute(
        "SELECT column_name, data_type, is_nullable, column_default, comment FROM duckdb_columns() "
        "WHERE database_name = ? AND schema_name = ? AND table_name = ? ORDER BY column_index",
        [database, schema, table],
    ).fetchall()
    (table_comment,) = duck.execute(
        "SELECT comment FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name = ?",
        [database, schema, table],
    ).fetchone()
    definitions = [
        f"{q(name)} {dtype}"
        + (f" DEFAULT {default}" if default is not None else "")
        + ("" if nullable else " NOT NULL")
        for name, dtype, nullable, default, _comment in columns
    ]
    duck.execute("BEGIN TRANSACTION")
    try:
        duck.execute(f"CREATE TABLE {scratch} ({', '.join(definitions)})")
        duck.execute(f"INSERT INTO {scratch} SELECT * FROM {qualified}")
        duck.execute(f"DROP TABLE {qualified}")
        duck.execute(f"ALTER TABLE {scratch} RENAME TO {q(table)}")
        for name, _dtype, _nullable, _default, comment in columns:
            if comment:
                duck.execute(f"COMMENT ON COLUMN {qualified}.{q(name)} IS {literal(comment)}")
        if table_comment:
            duck.execute(f"COMMENT ON TABLE {qualified} IS {literal(table_comment)}")
        duck.execute("COMMIT")
    except Exception:
        duck.execute("ROLLBACK")
        raise
    log.warning(
        "table %s.%s.%s: PRIMARY KEY/UNIQUE/FOREIGN KEY no longer enforced (as in Snowflake)", database, schema, table
    )
