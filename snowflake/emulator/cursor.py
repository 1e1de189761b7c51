"""The emulator's cursor: recognises the statements fakesnow lacks and runs them; passes the rest to fakesnow.

Every statement is first checked against the session role's privileges (:mod:`.access`), with its session variables
already put in (fakesnow puts them in as text, so they are put in once, before the check)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import snowflake.connector.errors
import sqlglot
from fakesnow import info_schema as fakesnow_info_schema
from fakesnow.conn import FakeSnowflakeConnection
from fakesnow.cursor import FakeSnowflakeCursor
from fakesnow.dialect import parse_one
from sqlglot import exp

from . import access, auth, clock, locks, procedures, stages
from . import copy as copy_mod
from .stages import StageStorage

log = logging.getLogger("snowflake.emulator")


@dataclass
class EmulatorContext:
    """What every session of this emulator shares."""

    storage: StageStorage
    host: str = "127.0.0.1"
    port: int = 0
    authenticator: auth.Authenticator = field(default_factory=auth.Authenticator)
    call_depth: threading.local = field(default_factory=threading.local)


CONTEXT: EmulatorContext | None = None

_fakesnow_insert_table_comment_sql = fakesnow_info_schema.insert_table_comment_sql

_COMMENTS = re.compile(r"^\s*(?:(?:--[^\n]*\n)|(?:/\*.*?\*/)|\s)*", re.DOTALL)


_QUALIFIED_TEMP_TABLE = re.compile(
    r"\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?P<temp>(?:LOCAL\s+|GLOBAL\s+)?TEMP(?:ORARY)?\s+)TABLE\s+"
    r"(?:IF\s+NOT\s+EXISTS\s+)?(?:\"[^\"]+\"|[\w$]+)\s*\.",
    re.IGNORECASE,
)

_NAMED_TEMPORARY = re.compile(
    r"\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:LOCAL\s+|GLOBAL\s+)?(?:TEMP|TEMPORARY|VOLATILE)\s+"
    r"(?:TRANSIENT\s+)?(?P<kind>TABLE|VIEW|STAGE|FILE\s+FORMAT|SEQUENCE|FUNCTION|PROCEDURE)\b",
    re.IGNORECASE,
)
"""A named temporary object (Snowpark's ``CREATE SCOPED TEMPORARY`` objects are not: those are allowed anywhere)."""

_TRAILING = re.compile(r"(?:\s|;|/\*(?:(?!\*/).)*\*/)*\Z", re.DOTALL)

_SESSION_FUNCTIONS = re.compile(r"\bCURRENT_(ROLE|USER)\s*\(\s*\)", re.IGNORECASE)
_PROCEDURE_DDL = re.compile(
    r"(CREATE\s+(OR\s+REPLACE\s+)?(SECURE\s+)?(TEMP(ORARY)?\s+)?PROCEDURE|DROP\s+PROCEDURE|CALL|USE\s+ROLE)\b"
)
ADMIN = auth.Principal(user="", role="ACCOUNTADMIN", any_role=True)


def session_principal(conn: Any) -> auth.Principal:
    """Who the session is (set at login); a connection made in-process, without a login, is an administrator."""
    principal = getattr(conn, "principal", None)
    return principal if isinstance(principal, auth.Principal) else ADMIN


def strip_comments(sql: str) -> str:
    """The statement without leading and trailing comments (dbt adds its query comment at either end)."""
    sql = _COMMENTS.sub("", sql, count=1)
    if "--" in sql[sql.rfind("\n") + 1 :]:
        sql = sql[: _final_line_comment(sql)]
    return _TRAILING.sub("", sql, count=1)


def _final_line_comment(sql: str) -> int:
    """Where a ``--`` comment that runs to the end of the statement starts, or ``len(sql)``: a ``--`` inside a string
    (``FILES => ['x''); DROP TABLE t; --']``), a quoted identifier or a ``$$`` body is not a comment."""
    i, n = 0, len(sql)
    while i < n:
        if sql.startswith("$$", i):
            end = sql.find("$$", i + 2)
            i = n if end < 0 else end + 2
        elif sql[i] in "'\"":
            quote, i = sql[i], i + 1
            while i < n:
                if (quote == "'" and sql[i] == "\\") or sql.startswith(quote * 2, i):
                    i += 2  # an escaped character, or a doubled quote
                elif sql[i] == quote:
                    break
                else:
                    i += 1
            i += 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            if end < 0:
                return i
            i = end + 1
        else:
            i += 1
    return n


def _qualify_merge_insert_values(sql: str) -> str | None:
    """In Snowflake, a bare column in the VALUES of a MERGE's `WHEN NOT MATCHED THEN INSERT` is the source's (the
    target has no row there); fakesnow's MERGE finds it ambiguous between target and source (as in dbt's snapshot
    MERGE). Qualify such columns with the source's name; None when nothing needs it."""
    expression = parse_one(sql)
    if not isinstance(expression, exp.Merge):
        return None
    source = expression.args.get("using")
    source_name = source.alias_or_name if isinstance(source, exp.Expression) else ""
    if not source_name:
        return None
    changed = False
    whens = expression.args.get("whens")
    for when in whens.expressions if isinstance(whens, exp.Whens) else (whens or []):
        then = when.args.get("then")
        if when.args.get("matched") or not isinstance(then, exp.Insert) or then.expression is None:
            continue
        for value in then.expression.expressions:
            for column in [value] if isinstance(value, exp.Column) else list(value.find_all(exp.Column)):
                if not column.table:
                    column.set("table", exp.to_identifier(source_name))
                    changed = True
    return expression.sql(dialect="snowflake") if changed else None


def context() -> EmulatorContext:
    if CONTEXT is None:
        raise RuntimeError("the emulator is not configured: use snowflake.emulator.server.build()")
    return CONTEXT


class EmulatorCursor(FakeSnowflakeCursor):
    def execute(
        self,
        command: str,
        params: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> FakeSnowflakeCursor:
        sql = strip_comments(command)
        principal = session_principal(self._conn)
        change = None
        self._inlined = False
        try:
            if re.match(r"USE\s+ROLE\s", sql[:16].upper()):
                return self._use_role(sql, principal)
            variables = getattr(self._conn, "variables", None)
            if (
                "$" in sql
                and variables is not None
                and variables._variables
                and not _PROCEDURE_DDL.match(sql[:64].upper())
            ):
                # session variables are text put into the statement: put them in before it is checked, and only once
                # (fakesnow would put them in again, after the check)
                command = sql = variables.inline_variables(sql)
                self._inlined = True
            change = self._authorize(sql, principal)
            if _SESSION_FUNCTIONS.search(sql) and "$$" not in sql and not _PROCEDURE_DDL.match(sql[:64].upper()):
                command = sql = self._with_session_functions(sql, principal)
            if clock.FUNCTIONS_RX.search(sql) and "$$" not in sql and not _PROCEDURE_DDL.match(sql[:64].upper()):
                command = sql = self._with_clock(sql)
        except snowflake.connector.errors.Error:
            raise
        except Exception as e:
            log.exception("emulator error in %s", sql[:200])
            raise procedures.sql_error(f"Emulator error: {type(e).__name__}: {e}", 100000, "XX000") from e
        if (rewritten := locks.rewrite(self._conn, sql)) is not None:
            command = sql = rewritten  # unenforced keys, LOCK_TIMEOUT: what DuckDB should see of them (see .locks)
        with locks.statement(self._conn, sql):  # table locks, READ COMMITTED (see .locks)
            result = self._run(command, sql, params, *args, **kwargs)
        if change is not None:
            access.apply_change(self._duck_conn, change, principal.role)
        return result

    def _authorize(self, sql: str, principal: auth.Principal) -> access.Change | None:
        """Check the statement against the session role's privileges (administrators: not checked); returns the
        object it creates, drops or renames, whose owner is recorded once it ran."""
        head = sql[:64].upper()
        if access.STATEMENT_RX.match(sql) or _PROCEDURE_DDL.match(head) or re.match(r"DROP\s+DATABASE\b", head):
            return None  # checked where they run
        ddl = re.match(r"(CREATE|DROP|ALTER)\s", head)
        if principal.role in auth.ADMIN_ROLES and not ddl:
            return None
        with access.Privileges(self._duck_conn, principal.role) as privileges:
            if privileges.admin and not ddl:
                return None
            try:
                expression = parse_one(sql)
            except Exception:
                expression = None  # fakesnow reports the syntax error
            return access.Enforcer(privileges, *self._db_schema()).check(sql, expression)

    def _use_role(self, sql: str, principal: auth.Principal) -> EmulatorCursor:
        m = re.match(
            r"USE\s+ROLE\s+(?:IDENTIFIER\s*\(\s*'(?P<text>[^']+)'\s*\)|(?P<name>\"[^\"]+\"|[\w$]+))\s*$",
            sql,
            re.IGNORECASE,
        )
        if not m:
            raise procedures.sql_error("SQL compilation error:\nsyntax error in USE ROLE", 1003)
        role = access.norm(m.group("text") or m.group("name"))
        with access.fresh(self._duck_conn) as conn:
            allowed = access.role_exists(conn, role) and (
                principal.any_role or role in access.user_roles(conn, principal.user)
            )
        if not allowed:
            raise procedures.sql_error(
                f"SQL compilation error:\nRole '{role}' does not exist or not authorized.", 2003, "02000"
            )
        self._conn.principal = dataclasses.replace(principal, role=role)  # type: ignore[attr-defined]
        return self._status("Statement executed successfully.")

    @staticmethod
    def _with_session_functions(sql: str, principal: auth.Principal) -> str:
        """CURRENT_ROLE() and CURRENT_USER() as the session's values (DuckDB has no such thing)."""

        def swap(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.CurrentRole):
                return exp.Literal.string(principal.role)
            if isinstance(node, exp.CurrentUser) and principal.user:
                return exp.Literal.string(principal.user)
            return node

        expression = parse_one(sql)
        if isinstance(expression, exp.Command):
            return sql  # not understood: left as it is
        return str(expression.transform(swap).sql(dialect="snowflake"))

    def _with_clock(self, sql: str) -> str:
        """CURRENT_TIMESTAMP(), SYSDATE() and the like as literals of the emulator's clock in the session's TIMEZONE
        (:mod:`.clock`)."""
        expression = parse_one(sql)
        if isinstance(expression, exp.Command):
            return sql  # not understood: left as it is
        return str(clock.rewrite(expression, clock.session_timezone(self._conn)).sql(dialect="snowflake"))

    def _run(self, command: str, sql: str, params: Any, *args: Any, **kwargs: Any) -> FakeSnowflakeCursor:
        head = sql[:64].upper()
        bound = kwargs.get("binding_params") or params
        principal = session_principal(self._conn)
        try:
            if re.match(r"ALTER\s+SESSION\s+(SET|UNSET)\b", head) and re.search(r"\bTIMEZONE\b", sql, re.IGNORECASE):
                return self._alter_timezone(sql, params, *args, **kwargs)
            if re.search(r"SYSTEM\$EMULATOR_SET_CLOCK", sql, re.IGNORECASE):
                return self._set_clock(sql, principal)
            if getattr(self._conn, "in_procedure", False) and re.match(r"(PUT|GET)\s", head):
                # "You cannot use APIs that execute PUT and GET commands" in a Python stored procedure
                raise procedures.sql_error(
                    f"Stored procedure execution error: Unsupported statement type '{head.split()[0]}'.",
                    90236,
                    "42601",
                )
            if getattr(self._conn, "owners_rights", False) and (temp := _NAMED_TEMPORARY.match(sql)):
                raise procedures.sql_error(
                    f"Stored procedure execution error: Unsupported statement type 'temporary {temp.group('kind').upper()}'.",
                    90236,
                    "42601",
                )
            if re.match(r"(DROP\s+DATABASE|SHOW\s+DATABASES)\b", head):
                from . import databases

                if (answer := databases.statement(self._conn, sql, principal)) is not None:
                    return self._select(*answer)
            if access.STATEMENT_RX.match(sql):
                catalog = access.AccessCatalog(self._duck_conn, *self._db_schema(), principal)
                columns, rows = catalog.execute(sql)
                return self._rows(columns, rows)
            if re.match(r"CREATE\s+(OR\s+REPLACE\s+)?(TRANSIENT\s+)?SCHEMA\b", head) and re.search(
                r"\bWITH\s+MANAGED\s+ACCESS\b", sql, re.IGNORECASE
            ):
                # managed access only changes who may grant; the schema is the same
                command = re.sub(r"\s+WITH\s+MANAGED\s+ACCESS\b", "", sql, flags=re.IGNORECASE)
                return super().execute(command, params, *args, **kwargs)
            if re.match(r"ALTER\s+SESSION\s+(SET|UNSET)\s+QUERY_TAG\b", head):
                return self._query_tag(sql)
            if re.match(r"CREATE\s+(OR\s+REPLACE\s+)?(SECURE\s+)?(TEMP(ORARY)?\s+)?PROCEDURE\b", head):
                return self._create_procedure(sql)
            if re.match(r"DROP\s+PROCEDURE\b", head):
                return self._drop_procedure(sql)
            if re.match(r"CALL\s", head):
                return self._call(sql, bound)
            if re.match(r"(LIST|LS)\s+'?@", head) and self._is_external_list(sql):
                return self._list(sql)
            if re.match(r"COPY\s+INTO\s+[^@']", head):
                handled = self._copy(sql, bound)
                if handled is not None:
                    return handled
            if "VALIDATE" in sql.upper() and re.search(r"\bTABLE\s*\(\s*VALIDATE\s*\(", sql, re.IGNORECASE):
                return self._validate(sql)
            if re.search(r"SYSTEM\$CANCEL_ALL_QUERIES", sql, re.IGNORECASE):
                return self._select("SELECT 'success' AS \"SYSTEM$CANCEL_ALL_QUERIES\"")
            if re.match(r"SHOW\s+(USER\s+)?PROCEDURES\b", head):
                return self._show_procedures()
            if re.match(r"MERGE\s+INTO\b", head) and (qualified := _qualify_merge_insert_values(sql)):
                return super().execute(qualified, params, *args, **kwargs)
            if m := _QUALIFIED_TEMP_TABLE.match(sql):
                # DuckDB keeps temporary tables in its "temp" catalog only, so `CREATE TEMPORARY TABLE db.schema.t`
                # (as dbt writes its unit-test, snapshot and incremental scratch tables) fails there. Every session
                # of this emulator shares one DuckDB connection, so a DuckDB temporary table would not be
                # session-private anyway: create an ordinary table under the qualified name (dbt drops it or
                # replaces it on its next run).
                command = sql[: m.start("temp")] + sql[m.end("temp") :]
                return super().execute(command, params, *args, **kwargs)
            if re.match(r"CREATE\s+(OR\s+REPLACE\s+)?(TEMP(ORARY)?\s+)?STAGE\b", head):
                # fakesnow keeps only a stage's URL: record its FILE_FORMAT too (a COPY without one uses it)
                result = super().execute(command, params, *args, **kwargs)
                stages.record_file_format(self._duck_conn, sql, *self._db_schema())
                return result
            if re.match(r"(TRUNCATE|DROP\s+TABLE|CREATE\s+(OR\s+REPLACE\s+)?(TRANSIENT\s+)?TABLE)\b", head):
                result = super().execute(command, params, *args, **kwargs)
                self._forget_load_history(sql)
                return result
        except NotImplementedError:
            pass  # let fakesnow handle it (or say it is not implemented)
        except snowflake.connector.errors.Error:
            raise
        except Exception as e:
            log.exception("emulator error in %s", sql[:200])
            # never answer HTTP 500 (the connector would retry for minutes): report it as a SQL error
            raise procedures.sql_error(f"Emulator error: {type(e).__name__}: {e}", 100000, "XX000") from e
        try:
            return super().execute(command, params, *args, **kwargs)
        except snowflake.connector.errors.Error:
            raise
        except Exception as e:
            raise procedures.execution_error(e, sql) from e

    # -- helpers ----------------------------------------------------------------------------------------------------
    def _inline_variables(self, sql: str) -> str:
        """fakesnow's hook: session variables, unless :meth:`execute` already put them in."""
        if getattr(self, "_inlined", False):
            return sql
        return str(super()._inline_variables(sql))

    def _db_schema(self) -> tuple[str | None, str | None]:
        return self._conn.database, self._conn.schema

    def _select(self, sql: str, params: list[Any] | None = None) -> EmulatorCursor:
        self._execute(sqlglot.parse_one(sql, read="duckdb"), params)
        return self

    def _status(self, message: str) -> EmulatorCursor:
        return self._select("SELECT ? AS status", [message])

    def _rows(self, columns: list[str], rows: list[tuple[Any, ...]]) -> EmulatorCursor:
        if rows:
            return self._arrow(pa.Table.from_pylist([dict(zip(columns, r, strict=True)) for r in rows]))
        return self._arrow(pa.table({c: pa.array([], pa.string()) for c in columns}))

    def _arrow(self, table: pa.Table) -> EmulatorCursor:
        name = "_emu_result_" + uuid.uuid4().hex[:8]
        self._duck_conn.register(name, table)
        return self._select(f"SELECT * FROM {name}")

    # -- statements -------------------------------------------------------------------------------------------------
    def _alter_timezone(self, sql: str, params: Any, *args: Any, **kwargs: Any) -> EmulatorCursor:
        """``ALTER SESSION SET TIMEZONE = '<zone>'`` / ``ALTER SESSION UNSET TIMEZONE`` (other parameters of the same
        statement are set as they would be without it)."""
        m = re.match(r"\s*ALTER\s+SESSION\s+(SET|UNSET)\s+(.*)$", sql, re.IGNORECASE | re.DOTALL)
        assert m
        rest = m.group(2)
        if m.group(1).upper() == "UNSET":
            others = [n.strip() for n in rest.split(",") if n.strip() and n.strip().upper() != "TIMEZONE"]
            clock.set_session_timezone(self._conn, None)
            if others:
                self.execute(f"ALTER SESSION UNSET {', '.join(others)}", params, *args, **kwargs)
            return self._status("Statement executed successfully.")
        tz = re.search(r"\bTIMEZONE\s*=\s*'((?:[^']|'')*)'", rest, re.IGNORECASE)
        if not tz:
            raise procedures.sql_error(
                "SQL compilation error:\nTIMEZONE takes a quoted time zone name, e.g. TIMEZONE = 'UTC'", 1003
            )
        zone = clock.check_timezone(tz.group(1).replace("''", "'"))
        remaining = (rest[: tz.start()] + rest[tz.end() :]).strip(" ,")
        if remaining:
            self.execute(f"ALTER SESSION SET {remaining}", params, *args, **kwargs)
        clock.set_session_timezone(self._conn, zone)
        return self._status("Statement executed successfully.")

    def _set_clock(self, sql: str, principal: auth.Principal) -> EmulatorCursor:
        """``SELECT SYSTEM$EMULATOR_SET_CLOCK('<UTC instant>' | NULL)``: test-only control of the emulator's clock."""
        m = re.fullmatch(
            r"\s*SELECT\s+SYSTEM\$EMULATOR_SET_CLOCK\s*\(\s*(?:NULL|'(?P<at>[^']*)')\s*\)\s*", sql, re.IGNORECASE
        )
        if not m:
            raise procedures.sql_error(
                "SQL compilation error:\nuse SELECT SYSTEM$EMULATOR_SET_CLOCK('YYYY-MM-DD HH:MI:SS') (a UTC instant) "
                "or SELECT SYSTEM$EMULATOR_SET_CLOCK(NULL) (the real clock again)",
                1003,
            )
        if principal.role not in auth.ADMIN_ROLES:
            raise procedures.sql_error(
                "SQL access control error:\nInsufficient privileges to operate on account: "
                "SYSTEM$EMULATOR_SET_CLOCK needs an administrator role (USE ROLE ACCOUNTADMIN or SYSADMIN).",
                3001,
                "42501",
            )
        instant = None if m.group("at") is None else clock.parse_instant(m.group("at"))
        clock.set_clock(instant)
        text = "real clock" if instant is None else clock.now_utc().isoformat(sep=" ")
        return self._select('SELECT ? AS "SYSTEM$EMULATOR_SET_CLOCK"', [text])

    def _query_tag(self, sql: str) -> EmulatorCursor:
        m = re.search(r"QUERY_TAG\s*=\s*'((?:[^']|'')*)'", sql, re.IGNORECASE)
        self._conn.query_tag = m.group(1).replace("''", "'") if m else None  # type: ignore[attr-defined]
        return self._select("SELECT 'Statement executed successfully.' AS status")

    def _create_procedure(self, sql: str) -> EmulatorCursor:
        database, schema = self._db_schema()
        proc, replace, if_not_exists = procedures.parse_create(sql, database, schema)
        catalog = procedures.ProcedureCatalog(self._duck_conn)
        principal = session_principal(self._conn)
        proc.owner = principal.role
        owner = catalog.owner_of(f"{proc.database}.{proc.schema}.{proc.name}({proc.signature})")
        with access.Privileges(self._duck_conn, principal.role) as privileges:
            enforcer = access.Enforcer(privileges, database, schema)
            enforcer.create_in("PROCEDURE", proc.database, proc.schema)
            if owner is not None and replace and owner not in privileges.roles:
                # replacing needs OWNERSHIP of the existing one, held by the role or a role it inherits: also for an
                # administrator role (ACCOUNTADMIN inherits an owner role granted to SYSADMIN, not any role)
                raise access.insufficient("procedure", proc.name)
        status = catalog.create(proc, replace, if_not_exists)
        if owner is not None and replace and not if_not_exists:
            # CREATE OR REPLACE makes a new object, owned by the role that created it; the grants on the one it
            # replaced go with it, unless COPY GRANTS keeps them (never OWNERSHIP)
            header = sql.split("$$", 1)[0]
            copy_grants = bool(re.search(r"\bCOPY\s+GRANTS\b", header, re.IGNORECASE))
            access.forget_grants(
                self._duck_conn,
                "PROCEDURE",
                f"{proc.database}.{proc.schema}.{proc.name}({proc.signature})",
                ownership_only=copy_grants,
            )
        return self._status(status)

    def _drop_procedure(self, sql: str) -> EmulatorCursor:
        database, schema = self._db_schema()
        catalog = procedures.ProcedureCatalog(self._duck_conn)
        principal = session_principal(self._conn)
        m = procedures.DROP_RX.match(sql)
        if m and principal.role not in auth.ADMIN_ROLES:
            db, sch, name = procedures.name_parts(m.group("name"), database, schema)
            owner = catalog.owner_of(f"{db}.{sch}.{name}({m.group('args')})")
            with access.Privileges(self._duck_conn, principal.role) as privileges:
                if not privileges.admin and owner is not None and owner not in privileges.roles:
                    # a role that may call it sees it but may not drop it; to any other it does not exist
                    access.Enforcer(privileges, database, schema).procedure(
                        db, sch, name, procedures.signature_of(m.group("args")), owner
                    )
                    raise access.insufficient("procedure", name)
        status = catalog.drop(sql, database, schema)
        if m:
            db, sch, name = procedures.name_parts(m.group("name"), database, schema)
            signature = procedures.signature_of(m.group("args"))
            access.forget_grants(self._duck_conn, "PROCEDURE", f"{db}.{sch}.{name}({signature})")
        return self._status(status)

    def _call(self, sql: str, bound: Any) -> EmulatorCursor:
        database, schema = self._db_schema()
        name, raw_args = procedures.parse_call(sql)
        db, sch, pname = procedures.name_parts(name, database, schema)
        named = any(n is not None for n, _ in raw_args)
        proc = procedures.ProcedureCatalog(self._duck_conn).lookup(db, sch, pname, len(raw_args), named)
        principal = session_principal(self._conn)
        if principal.role not in auth.ADMIN_ROLES:
            with access.Privileges(self._duck_conn, principal.role) as privileges:
                access.Enforcer(privileges, database, schema).procedure(db, sch, pname, proc.signature, proc.owner)

        # evaluate the argument expressions (and defaults) as SQL, with the caller's bindings
        by_position: list[str] = []
        if named:
            given = {n: text for n, text in raw_args}
            for a in proc.arguments:
                if a.name in given:
                    by_position.append(given[a.name])  # type: ignore[arg-type]
                elif a.default is not None:
                    by_position.append(a.default)
                else:
                    raise procedures.sql_error(f"SQL compilation error:\nmissing argument {a.name} for {pname}")
        else:
            by_position = [t for _, t in raw_args] + [a.default or "NULL" for a in proc.arguments[len(raw_args) :]]
        procedures.check_argument_types(pname, by_position, proc.arguments)
        values: list[Any] = []
        if by_position:
            evaluator = self._conn.cursor()
            select = "SELECT " + ", ".join(f"({e}) AS ARG{i}" for i, e in enumerate(by_position))
            evaluator.execute(select, bound) if bound else evaluator.execute(select)
            row = evaluator.fetchone()
            assert row is not None
            values = [procedures.coerce(v, a.type) for v, a in zip(row, proc.arguments, strict=True)]  # type: ignore[arg-type]

        if procedures.in_transaction(self._conn):
            raise procedures.call_in_open_transaction(pname)
        # owner's rights (the default): the handler runs with the role that owns the procedure; the session has the
        # caller's TIMEZONE and AUTOCOMMIT
        owners_rights = proc.execute_as == "OWNER"
        parameters = {
            "TIMEZONE": clock.session_timezone(self._conn),
            "AUTOCOMMIT": bool(self._conn._autocommit),
            "LOCK_TIMEOUT": locks.lock_timeout(self._conn, locks.session(self._conn)),
        }
        role = proc.owner if owners_rights else principal.role
        token = context().authenticator.issue(role)
        try:
            session = self._snowpark_session(db, sch, role, parameters, token)
        except BaseException:
            context().authenticator.revoke(token)
            raise
        try:
            scope = procedures.server_session(session)
            if scope is not None:
                scope.owners_rights = owners_rights
            try:
                result = procedures.run_handler(proc, session, values)
            except BaseException:
                with contextlib.suppress(Exception):
                    procedures.close_scope(session, scope, failed=True)
                raise
            procedures.close_scope(session, scope, failed=False)
        finally:
            try:
                session.close()
            finally:
                context().authenticator.revoke(token)
        sql_text, params = procedures.result_sql(proc, result)
        return self._select(sql_text, params)

    def _snowpark_session(self, database: str, schema: str, role: str, parameters: dict[str, Any], token: str) -> Any:
        from snowflake.snowpark import Session

        ctx = context()
        return Session.builder.configs(
            {
                "account": "emulator",
                "user": auth.INTERNAL_USER,
                "password": token,
                "role": f'"{role}"',
                "host": ctx.host,
                "port": ctx.port,
                "protocol": "http",
                "database": database,
                "schema": schema,
                "network_timeout": 3600,
                "login_timeout": 30,
                "session_parameters": parameters,
            }
        ).create()

    def _forget_load_history(self, sql: str) -> None:
        """As in Snowflake, truncating, dropping or re-creating a table deletes its load metadata, so the same
        files can be loaded into it again."""
        expression = parse_one(sql)
        table = expression.find(exp.Table)
        if table is None:
            return
        database, schema = self._db_schema()
        catalog = (table.catalog or database or "").upper()
        tschema = (table.db or schema or "").upper()
        name = table.name if table.this.args.get("quoted") else table.name.upper()
        if not catalog:
            return
        self._duck_conn.execute(copy_mod.tables_sql(catalog))
        self._duck_conn.execute(
            f"DELETE FROM {copy_mod.history_table(catalog)} WHERE table_schema = ? AND table_name = ?",
            [tschema, name],
        )
        with contextlib.suppress(Exception):
            self._duck_conn.execute(
                f'DELETE FROM "{catalog}"._fs_information_schema._fs_load_history '
                "WHERE SCHEMA_NAME = ? AND TABLE_NAME = ?",
                [tschema, name],
            )

    def _is_external_list(self, sql: str) -> bool:
        ref, _rest = self._list_ref(sql)
        if ref.startswith("@%") or ref.startswith("@~"):
            return False
        _fq, location, _path = stages.resolve_stage(self._duck_conn, ref, *self._db_schema())
        return stages.is_external(location)

    @staticmethod
    def _list_ref(sql: str) -> tuple[str, str]:
        """The stage reference of a LIST, and what follows it. Snowflake: "If the stage name or path includes spaces
        or special characters, it must be enclosed in single quotes" (``''`` or ``\\'`` is a quote inside them)."""
        m = re.match(r"\s*(?:LIST|LS)\s+(?:'(?P<quoted>(?:''|\\.|[^'\\])*)'|(?P<bare>@[^\s;]+))", sql, re.I | re.S)
        if not m:
            raise procedures.sql_error("SQL compilation error:\nsyntax error in LIST stage reference.", 1003)
        if m.group("quoted") is None:
            return m.group("bare"), sql[m.end() :]
        ref = re.sub(r"''|\\(.)", lambda q: q.group(1) if q.group(1) is not None else "'", m.group("quoted"))
        if not ref.startswith("@"):
            raise procedures.sql_error("SQL compilation error:\nsyntax error in LIST stage reference.", 1003)
        return ref, sql[m.end() :]

    def _list(self, sql: str) -> EmulatorCursor:
        ref, rest = self._list_ref(sql)
        _fq, location, path = stages.resolve_stage(self._duck_conn, ref, *self._db_schema())
        pm = re.search(r"PATTERN\s*=>?\s*'((?:[^']|'')*)'", rest, re.IGNORECASE)
        files = context().storage.list(location, path)
        if pm:
            rx = re.compile(pm.group(1).replace("''", "'"))
            files = [f for f in files if rx.fullmatch(f.url) or rx.fullmatch(f.relative)]
        table = pa.table(
            {
                "name": pa.array([f.url for f in files], pa.string()),
                "size": pa.array([f.size for f in files], pa.int64()),
                "md5": pa.array([f.etag for f in files], pa.string()),
                "last_modified": pa.array(
                    [f.last_modified.strftime("%a, %d %b %Y %H:%M:%S GMT") for f in files], pa.string()
                ),
            }
        )
        return self._arrow(table)

    def _copy(self, sql: str, bound: Any) -> EmulatorCursor | None:
        expression = parse_one(sql)
        if not isinstance(expression, exp.Copy):
            return None
        runner = copy_mod.CopyRunner(self._duck_conn, context().storage, clock.session_timezone(self._conn))
        database, schema = self._db_schema()
        params = list(bound) if isinstance(bound, list | tuple) else bound
        try:
            plan = runner.plan(expression, params, database, schema)
        except NotImplementedError:
            # fakesnow loads it (a table stage, a format the emulator does not read): its paths are checked here
            if not copy_mod.stage_paths_ok(expression):
                return self._select("SELECT 'Copy executed with 0 files processed.' AS status")
            raise
        job_id = str(uuid.uuid4())
        if plan.validation_mode is None and not self._conn._autocommit and not self._conn._in_transaction:
            # with AUTOCOMMIT off a COPY, like any DML, begins a transaction that lasts until COMMIT or ROLLBACK
            self._duck_conn.begin()
            self._conn._in_transaction = True
        rows, columns = runner.run(plan, job_id, in_transaction=bool(self._conn._in_transaction))
        if plan.validation_mode is None:
            self._conn.last_copy_job = job_id  # type: ignore[attr-defined]
        table = pa.Table.from_pylist([dict(zip(columns, r, strict=True)) for r in rows]) if rows else None
        if table is None:
            return self._select("SELECT 'Copy executed with 0 files processed.' AS status")
        self._arrow(table)
        # the query id of a COPY is its job id, for VALIDATE(JOB_ID => ...)
        assert self._sfqid is not None
        cached = self._conn.results_cache.pop(self._sfqid)
        self._sfqid = job_id  # type: ignore[assignment]
        self._conn.results_cache[job_id] = cached
        return self

    def _validate(self, sql: str) -> EmulatorCursor:
        m = re.search(r"VALIDATE\s*\(\s*([\w$.\"]+)\s*,\s*JOB_ID\s*=>\s*'([^']+)'\s*\)", sql, re.IGNORECASE | re.DOTALL)
        if not m:
            raise procedures.sql_error("SQL compilation error:\nVALIDATE needs (<table>, JOB_ID => '<id>')", 1003)
        job_id = m.group(2)
        if job_id.upper() == "_LAST":
            last = getattr(self._conn, "last_copy_job", None)
            if last is None:
                raise procedures.sql_error(
                    "Invalid argument: no COPY INTO <table> has run in this session.", 2029, "22023"
                )
            job_id = last
        catalog, _schema, _table = procedures.name_parts(m.group(1), *self._db_schema())
        rows = copy_mod.CopyRunner(self._duck_conn, context().storage).validate(catalog, job_id)
        schema = pa.schema(
            [
                ("ERROR", pa.string()),
                ("FILE", pa.string()),
                ("LINE", pa.int64()),
                ("CHARACTER", pa.int64()),
                ("BYTE_OFFSET", pa.int64()),
                ("CATEGORY", pa.string()),
                ("CODE", pa.int64()),
                ("SQL_STATE", pa.string()),
                ("COLUMN_NAME", pa.string()),
                ("ROW_NUMBER", pa.int64()),
                ("ROW_START_LINE", pa.int64()),
                ("REJECTED_RECORD", pa.string()),
            ]
        )
        table = pa.Table.from_pylist([dict(zip(schema.names, r, strict=True)) for r in rows], schema=schema)
        # the outer query may project or filter: run it over the rows
        outer = re.sub(
            r"TABLE\s*\(\s*VALIDATE\s*\(.*?\)\s*\)", "__VALIDATE__", sql, count=1, flags=re.IGNORECASE | re.DOTALL
        )
        name = "_emu_validate_" + uuid.uuid4().hex[:8]
        self._duck_conn.register(name, table)
        return self._select(sqlglot.transpile(outer, read="snowflake", write="duckdb")[0].replace("__VALIDATE__", name))

    def _show_procedures(self) -> EmulatorCursor:
        procs = procedures.ProcedureCatalog(self._duck_conn).list()
        table = pa.table(
            {
                "name": pa.array([p.name for p in procs], pa.string()),
                "schema_name": pa.array([p.schema for p in procs], pa.string()),
                "catalog_name": pa.array([p.database for p in procs], pa.string()),
                "arguments": pa.array(
                    [f"{p.name}({', '.join(a.type for a in p.arguments)}) RETURN {p.returns}" for p in procs],
                    pa.string(),
                ),
                "language": pa.array(["PYTHON"] * len(procs), pa.string()),
            }
        )
        return self._arrow(table)


def _cursor(self: FakeSnowflakeConnection, cursor_class: Any = None) -> FakeSnowflakeCursor:
    from snowflake.connector.cursor import DictCursor

    return EmulatorCursor(conn=self, duck_conn=self._duck_conn, use_dict_result=cursor_class == DictCursor)


def _insert_table_comment_sql(catalog: str, schema: str, table: str, comment: str | None) -> str:
    """fakesnow records a table comment for every CREATE with properties, even without a COMMENT (as the string
    'None'); that write to its global catalog fails inside a transaction that has written to the database (e.g. the
    scratch table of a MERGE in dbt's snapshot transaction). Record real comments only."""
    if comment is None:
        return "SELECT 1 WHERE FALSE"
    return _fakesnow_insert_table_comment_sql(catalog, schema, table, comment)


def _server_parse_one(sql: str) -> Any:
    """fakesnow's server parses each statement before running it (for its statement type); statements only the
    emulator knows, such as ``DESC USER``, are commands there."""
    try:
        return parse_one(sql)
    except snowflake.connector.errors.ProgrammingError:
        if re.match(r"\s*DESC(RIBE)?\s+USER\s", sql, re.IGNORECASE):
            return exp.Command(this="DESCRIBE", expression=exp.Literal.string(sql))
        raise


def install() -> None:
    """Make every fakesnow connection in this process use the emulator's cursor."""
    import fakesnow.server as fs_server

    FakeSnowflakeConnection.cursor = _cursor  # type: ignore[method-assign,assignment]
    fakesnow_info_schema.insert_table_comment_sql = _insert_table_comment_sql  # type: ignore[assignment]
    fs_server.parse_one = _server_parse_one  # type: ignore[assignment]


def error(msg: str) -> snowflake.connector.errors.ProgrammingError:
    return procedures.sql_error(msg)
