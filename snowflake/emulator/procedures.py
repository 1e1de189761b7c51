"""Python stored procedures for the emulator: ``CREATE PROCEDURE ... LANGUAGE PYTHON``, ``DROP PROCEDURE``, ``CALL``.

A procedure's definition is kept in the emulator's catalogue (it survives restarts). ``CALL`` evaluates the
arguments as SQL, opens a Snowpark session connected back to the emulator (same database and schema as the
caller, as an owner's-rights procedure would see them), runs ``handler(session, *args)`` and returns its value as
a one-column result named after the procedure, typed by the ``RETURNS`` clause.

The role that creates a procedure owns it. The Snowpark session runs with the owner's role (``EXECUTE AS OWNER``,
the default) or the caller's (``EXECUTE AS CALLER``); it logs in as an internal user with a per-process token.

What a local procedure can do on the host. Snowflake runs a handler in an isolated sandbox process. The emulator
runs it in its own process, as the user who started the stack, with a guard in the handler's globals
(:func:`load_handler`): imports limited to part of the standard library (no ``os``, ``sys``, ``subprocess``,
``socket``, ``shutil``, ``ctypes``, ``importlib``, ``io``, ``pathlib``, ``builtins``, ...), ``snowflake.snowpark``
(without its file and private modules) and the packages named in ``PACKAGES``; allowed modules seen without the
modules they import (``uuid.os``); no ``eval``/``exec``/``compile``; ``open()`` of internal-stage files only, for
reading; no dunder names but a few (``__subclasses__``, ``__globals__``, ``__builtins__``, ...) nor frame
attributes, in the code or through ``getattr``; PUT and GET refused in a procedure's sessions (as Snowflake refuses
them). Its session logs in with a token valid for that call's role only, while the call runs. This guard is NOT a
security boundary: Python cannot confine code in its own process, and determined code can get past it (through the
objects it is given, format strings, C-level tricks). It is defence in depth: only roles with CREATE PROCEDURE on a
schema (administrators and the deployer) can create a procedure, so a handler is code an administrator installed.

Transactions and session state follow Snowflake's rules for stored procedures: the handler's session has the
caller's ``TIMEZONE`` and ``AUTOCOMMIT``; a transaction the handler starts (DML with AUTOCOMMIT off, or ``BEGIN``)
and leaves open when it returns is rolled back and fails the CALL ("Scoped transaction started in stored procedure
is incomplete and it was rolled back."). The handler runs in a session of its own, so it cannot take part in a
transaction its caller has open: such a CALL is refused (Snowflake would run it inside the caller's transaction).
An owner's-rights procedure may not create named temporary objects (Snowpark's scoped temporary objects are fine).
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
import linecache
import re
import sys
import threading
import traceback
import types
from dataclasses import asdict, dataclass
from typing import Any

import duckdb
import snowflake.connector.errors

TABLE = "_fs_global._emulator.procedures"
SETUP_SQL = f"""
CREATE SCHEMA IF NOT EXISTS _fs_global._emulator;
CREATE TABLE IF NOT EXISTS {TABLE} (
    database_name VARCHAR, schema_name VARCHAR, name VARCHAR, signature VARCHAR, definition VARCHAR,
    created_on TIMESTAMP, PRIMARY KEY (database_name, schema_name, name, signature)
);
"""

CREATE_RX = re.compile(
    r"^\s*CREATE\s+(?P<replace>OR\s+REPLACE\s+)?(?:SECURE\s+)?(?:TEMP(?:ORARY)?\s+)?PROCEDURE\s+"
    r"(?P<exists>IF\s+NOT\s+EXISTS\s+)?(?P<name>[\w$.\"]+)\s*\(",
    re.IGNORECASE | re.DOTALL,
)
CALL_RX = re.compile(r"^\s*CALL\s+(?P<name>[\w$.\"]+)\s*\((?P<args>.*)\)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
DROP_RX = re.compile(
    r"^\s*DROP\s+PROCEDURE\s+(?P<exists>IF\s+EXISTS\s+)?(?P<name>[\w$.\"]+)\s*\((?P<args>[^)]*)\)\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)


def first(result: Any) -> Any:
    """The first row of a DuckDB result (or None), consuming the whole result so the connection is free again."""
    rows = result.fetchall()
    return rows[0] if rows else None


def sql_error(msg: str, errno: int = 2003, sqlstate: str = "42000") -> snowflake.connector.errors.ProgrammingError:
    return snowflake.connector.errors.ProgrammingError(msg=msg, errno=errno, sqlstate=sqlstate)


@dataclass
class Argument:
    name: str
    type: str
    default: str | None  # SQL text of the default, if any


@dataclass
class Procedure:
    database: str
    schema: str
    name: str
    arguments: list[Argument]
    returns: str
    handler: str
    body: str
    packages: list[str]
    language: str = "PYTHON"
    owner: str = "ACCOUNTADMIN"  # the role that created it (definitions from before owners were kept: an administrator)
    execute_as: str = "OWNER"

    @property
    def signature(self) -> str:
        return ",".join(base_type(a.type) for a in self.arguments)

    @property
    def required(self) -> int:
        return sum(1 for a in self.arguments if a.default is None)


def base_type(t: str) -> str:
    t = t.strip().upper()
    t = re.sub(r"\(.*\)", "", t).strip()
    return {
        "STRING": "VARCHAR",
        "TEXT": "VARCHAR",
        "CHAR": "VARCHAR",
        "INT": "NUMBER",
        "INTEGER": "NUMBER",
        "BIGINT": "NUMBER",
        "DECIMAL": "NUMBER",
        "DOUBLE": "FLOAT",
        "REAL": "FLOAT",
    }.get(t, t)


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside quotes, $$ blocks, parentheses and brackets."""
    parts, depth, buf, i, quote = [], 0, [], 0, ""
    while i < len(text):
        ch = text[i]
        if quote:
            buf.append(ch)
            if text.startswith(quote, i):
                if quote == "'" and text.startswith("''", i):
                    buf.append("'")
                    i += 2
                    continue
                if len(quote) == 2:
                    buf.append(text[i + 1])
                    i += 1
                quote = ""
            i += 1
            continue
        if text.startswith("$$", i):
            quote = "$$"
            buf.append("$$")
            i += 2
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([{":  # also array and object constants: FILES => ['a', 'b']
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append("".join(buf).strip())
            buf = []
            i += 1
            continue
        buf.append(ch)
        i += 1
    if "".join(buf).strip():
        parts.append("".join(buf).strip())
    return parts


def signature_of(types: str) -> str:
    """``ARRAY, boolean`` -> ``ARRAY,BOOLEAN``: argument types as procedures are keyed (and granted) by."""
    return ",".join(base_type(t) for t in split_top_level(types) if t.strip())


def _matching_paren(text: str, start: int) -> int:
    depth, quote, i = 0, "", start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = ""
        elif ch == "'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise sql_error("SQL compilation error:\nsyntax error: unbalanced parentheses in procedure signature", 1003)


def name_parts(name: str, database: str | None, schema: str | None) -> tuple[str, str, str]:
    parts = [p.strip('"') if p.startswith('"') else p.upper() for p in name.split(".")]
    if len(parts) == 1:
        if not database or not schema:
            raise sql_error(
                "Cannot perform CALL. This session does not have a current schema. Call 'USE SCHEMA', or use a "
                "qualified name.",
                90106,
                "22000",
            )
        return database, schema, parts[0]
    if len(parts) == 2:
        if not database:
            raise sql_error("Cannot perform CALL. This session does not have a current database.", 90105, "22000")
        return database, parts[0], parts[1]
    return parts[0], parts[1], parts[2]


def parse_create(sql: str, database: str | None, schema: str | None) -> tuple[Procedure, bool, bool]:
    """Parse CREATE PROCEDURE. Returns (procedure, or_replace, if_not_exists)."""
    m = CREATE_RX.match(sql)
    if not m:
        raise sql_error("SQL compilation error:\nsyntax error in CREATE PROCEDURE", 1003)
    open_paren = m.end() - 1
    close_paren = _matching_paren(sql, open_paren)
    arguments = []
    for arg in split_top_level(sql[open_paren + 1 : close_paren]):
        am = re.match(r"^\s*(\"[^\"]+\"|\w+)\s+(.+?)(?:\s+DEFAULT\s+(.+))?\s*$", arg, re.IGNORECASE | re.DOTALL)
        if not am:
            raise sql_error(f"SQL compilation error:\nsyntax error in procedure argument '{arg}'", 1003)
        arguments.append(Argument(am.group(1).strip('"').upper(), am.group(2).strip(), am.group(3)))
    rest = sql[close_paren + 1 :]
    body_m = re.search(r"\bAS\s*\$\$(.*)\$\$\s*;?\s*$", rest, re.IGNORECASE | re.DOTALL)
    if not body_m:
        body_m = re.search(r"\bAS\s*'((?:[^']|'')*)'\s*;?\s*$", rest, re.IGNORECASE | re.DOTALL)
        if not body_m:
            raise sql_error("SQL compilation error:\nCREATE PROCEDURE needs a body: AS $$ ... $$", 1003)
        body = body_m.group(1).replace("''", "'")
    else:
        body = body_m.group(1)
    head = rest[: body_m.start()]
    returns_m = re.search(r"\bRETURNS\s+(TABLE\s*\(.*?\)|[\w]+(?:\s*\([\d,\s]*\))?)", head, re.IGNORECASE | re.DOTALL)
    lang_m = re.search(r"\bLANGUAGE\s+(\w+)", head, re.IGNORECASE)
    handler_m = re.search(r"\bHANDLER\s*=\s*'([^']+)'", head, re.IGNORECASE)
    packages_m = re.search(r"\bPACKAGES\s*=\s*\(([^)]*)\)", head, re.IGNORECASE)
    execute_as_m = re.search(r"\bEXECUTE\s+AS\s+(OWNER|CALLER|RESTRICTED\s+CALLER)\b", head, re.IGNORECASE)
    if not returns_m:
        raise sql_error("SQL compilation error:\nCREATE PROCEDURE needs RETURNS <type>", 1003)
    language = (lang_m.group(1) if lang_m else "SQL").upper()
    if language != "PYTHON":
        raise NotImplementedError(f"procedures in LANGUAGE {language} (the emulator runs Python handlers)")
    if not handler_m:
        raise sql_error("SQL compilation error:\nHANDLER is required for a Python procedure", 1003)
    packages = [p.strip().strip("'\"") for p in packages_m.group(1).split(",")] if packages_m else []
    if not any(p.split("==")[0].lower() == "snowflake-snowpark-python" for p in packages):
        raise sql_error(
            "SQL compilation error:\nPython stored procedures need PACKAGES = ('snowflake-snowpark-python')", 1003
        )
    db, sch, name = name_parts(m.group("name"), database, schema)
    proc = Procedure(
        database=db,
        schema=sch,
        name=name,
        arguments=arguments,
        returns=re.sub(r"\s+", " ", returns_m.group(1).strip()).upper(),
        handler=handler_m.group(1),
        body=body,
        packages=packages,
        execute_as="CALLER" if execute_as_m and "CALLER" in execute_as_m.group(1).upper() else "OWNER",
    )
    return proc, bool(m.group("replace")), bool(m.group("exists"))


class ProcedureCatalog:
    def __init__(self, duck_conn: Any):
        self.duck = duck_conn

    def create(self, proc: Procedure, replace: bool, if_not_exists: bool) -> str:
        try:  # a syntax error fails the CREATE, as in Snowflake
            compile(proc.body, f"<procedure {proc.name}>", "exec")
        except SyntaxError as e:
            raise sql_error(
                f"Python Interpreter Error:\n{type(e).__name__}: {e.msg} (line {e.lineno})\n"
                f"in function {proc.name} with handler {proc.handler}",
                100357,
                "P0000",
            ) from None
        exists = first(
            self.duck.execute(
                f"SELECT 1 FROM {TABLE} WHERE database_name = ? AND schema_name = ? AND name = ? AND signature = ?",
                [proc.database, proc.schema, proc.name, proc.signature],
            )
        )
        if exists and if_not_exists:
            return f"{proc.name} already exists, statement succeeded."
        if exists and not replace:
            raise sql_error(f"SQL compilation error:\nObject '{proc.name}' already exists.", 2002, "42710")
        self.duck.execute(
            f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?)",
            [
                proc.database,
                proc.schema,
                proc.name,
                proc.signature,
                json.dumps(asdict(proc)),
                dt.datetime.now(dt.UTC).replace(tzinfo=None),
            ],
        )
        return f"Function {proc.name} successfully created."

    def drop(self, sql: str, database: str | None, schema: str | None) -> str:
        m = DROP_RX.match(sql)
        if not m:
            raise sql_error("SQL compilation error:\nsyntax error in DROP PROCEDURE", 1003)
        db, sch, name = name_parts(m.group("name"), database, schema)
        signature = signature_of(m.group("args"))
        deleted = first(
            self.duck.execute(
                f"DELETE FROM {TABLE} WHERE database_name = ? AND schema_name = ? AND name = ? AND signature = ?",
                [db, sch, name, signature],
            )
        )
        if not (deleted and deleted[0]) and not m.group("exists"):
            raise sql_error(
                f"SQL compilation error:\nProcedure '{db}.{sch}.{name}({signature})' does not exist or not authorized."
            )
        return f"{name} successfully dropped."

    def lookup(self, db: str, sch: str, name: str, n_args: int, named: bool) -> Procedure:
        rows = self.duck.execute(
            f"SELECT definition FROM {TABLE} WHERE database_name = ? AND schema_name = ? AND name = ?",
            [db, sch, name],
        ).fetchall()
        candidates = []
        for (definition,) in rows:
            d = json.loads(definition)
            d["arguments"] = [Argument(**a) for a in d["arguments"]]
            p = Procedure(**d)
            if p.required <= n_args <= len(p.arguments):
                candidates.append(p)
        if not candidates:
            raise sql_error(f"SQL compilation error:\nUnknown user-defined function {db}.{sch}.{name}.", 2141, "42601")
        candidates.sort(key=lambda p: len(p.arguments))
        return candidates[0]

    def owner_of(self, name: str) -> str | None:
        """The owner role of ``DB.SCHEMA.NAME(TYPE, ...)``, or None if there is no such procedure."""
        m = re.match(r"^(?P<name>[^(]+)\((?P<args>.*)\)$", name.strip())
        if not m:
            return None
        parts = m.group("name").split(".")
        if len(parts) != 3:
            return None
        signature = signature_of(m.group("args"))
        row = first(
            self.duck.execute(
                f"SELECT definition FROM {TABLE} WHERE database_name = ? AND schema_name = ? AND name = ? "
                "AND signature = ?",
                [*parts, signature],
            )
        )
        return str(json.loads(row[0]).get("owner", "ACCOUNTADMIN")) if row else None

    def set_owner(self, name: str, role: str) -> None:
        """GRANT OWNERSHIP: ``DB.SCHEMA.NAME(TYPE, ...)`` is now owned by ``role`` (its handler runs with its rights)."""
        m = re.match(r"^(?P<name>[^(]+)\((?P<args>.*)\)$", name.strip())
        if not m or len(parts := m.group("name").split(".")) != 3:
            return
        key = [*parts, signature_of(m.group("args"))]
        where = "WHERE database_name = ? AND schema_name = ? AND name = ? AND signature = ?"
        row = first(self.duck.execute(f"SELECT definition FROM {TABLE} {where}", key))
        if row:
            definition = json.loads(row[0])
            definition["owner"] = role
            self.duck.execute(f"UPDATE {TABLE} SET definition = ? {where}", [json.dumps(definition), *key])

    def list(self) -> list[Procedure]:
        out = []
        for (definition,) in self.duck.execute(f"SELECT definition FROM {TABLE} ORDER BY 1").fetchall():
            d = json.loads(definition)
            d["arguments"] = [Argument(**a) for a in d["arguments"]]
            out.append(Procedure(**d))
        return out


def argument_type(text: str) -> str | None:
    """The type an argument expression evaluates to, where it is plain from the expression (None: not known, or
    NULL, which every type accepts). ``PARSE_JSON(...)`` is a VARIANT; ``...::ARRAY``, ``ARRAY_CONSTRUCT(...)`` and
    ``[...]`` are ARRAYs; a string literal is a VARCHAR."""
    from fakesnow.dialect import parse_one as parse_expression
    from sqlglot import exp

    try:  # a bound placeholder stands for a value: NULL keeps the expression around it
        node = parse_expression("SELECT " + re.sub(r"%\(\w+\)s|%s|\?|:\d+", "NULL", text)).expressions[0]
    except Exception:
        return None
    if isinstance(node, exp.Alias):
        node = node.this
    if isinstance(node, exp.Cast):
        return base_type(node.to.sql(dialect="snowflake"))
    if isinstance(node, exp.ParseJSON):
        return "VARIANT"
    if isinstance(node, exp.Array):
        return "ARRAY"
    if isinstance(node, exp.Literal):
        return "VARCHAR" if node.is_string else "NUMBER"
    if isinstance(node, exp.Boolean):
        return "BOOLEAN"
    return None


def check_argument_types(name: str, texts: list[str], arguments: list[Argument]) -> None:
    """Refuse arguments that are plainly of another type than an ARRAY/OBJECT parameter: a VARIANT (such as
    ``PARSE_JSON(...)``) must be cast (``PARSE_JSON(...)::ARRAY``). Stricter than or as strict as Snowflake, which
    matches a call to a procedure by its argument types."""
    given = [argument_type(t) for t in texts]
    for t, a in zip(given, arguments, strict=False):
        want = base_type(a.type)
        if want in {"ARRAY", "OBJECT"} and t is not None and t != want:
            raise sql_error(
                f"SQL compilation error:\nInvalid argument types for function '{name}': "
                f"({', '.join(g or 'NULL' for g in given)}); parameter {a.name} is {want}: cast the argument, "
                f"e.g. PARSE_JSON(...)::{want}",
                1044,
                "42P13",
            )


def parse_call(sql: str) -> tuple[str, list[tuple[str | None, str]]]:
    m = CALL_RX.match(sql)
    if not m:
        raise sql_error("SQL compilation error:\nsyntax error in CALL", 1003)
    args: list[tuple[str | None, str]] = []
    for a in split_top_level(m.group("args")):
        nm = re.match(r"^\s*(\w+)\s*=>\s*(.+)$", a, re.DOTALL)
        args.append((nm.group(1).upper(), nm.group(2)) if nm else (None, a))
    return m.group("name"), args


def coerce(value: Any, sql_type: str) -> Any:
    t = base_type(sql_type)
    if value is None:
        return None
    if t in {"ARRAY", "OBJECT", "VARIANT"} and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    if t == "NUMBER" and not re.search(r",\s*[1-9]", sql_type):
        return int(value)
    if t == "FLOAT":
        return float(value)
    if t == "BOOLEAN":
        return bool(value)
    if t == "VARCHAR":
        return str(value)
    return value


# -- the handler's sandbox ---------------------------------------------------------------------------------------------
# Modules a handler may import (and their submodules): the standard library's pure computation, no file, process,
# network, interpreter or introspection access, plus Snowpark (without its private and file modules) and the
# packages named in PACKAGES. Snowflake's own sandbox is an isolated process; this is a guard in the emulator's.
SANDBOX_MODULES = frozenset(
    {
        "__future__",
        "_snowflake",
        "_strptime",  # imported by datetime.strptime and time.strptime when first used
        "abc",
        "array",
        "base64",
        "binascii",
        "bisect",
        "calendar",
        "cmath",
        "collections",
        "colorsys",
        "copy",
        "csv",
        "dataclasses",
        "datetime",
        "decimal",
        "difflib",
        "enum",
        "fnmatch",
        "fractions",
        "functools",
        "graphlib",
        "hashlib",
        "heapq",
        "hmac",
        "html",
        "ipaddress",
        "itertools",
        "json",
        "keyword",
        "math",
        "numbers",
        "pprint",
        "random",
        "re",
        "secrets",
        "snowflake.snowpark",
        "statistics",
        "string",
        "struct",
        "textwrap",
        "time",
        "types",
        "typing",
        "unicodedata",
        "urllib.parse",
        "uuid",
        "zlib",
        "zoneinfo",
    }
)
# submodules of an allowed package that stay hidden (Snowpark's local file access, its internals)
HIDDEN_SUBMODULES = frozenset({"files", "mock"})
# names handler code may not use: dunders (the way to the interpreter's internals) but these, and frame attributes
SANDBOX_DUNDERS = frozenset({"__name__", "__qualname__", "__doc__", "__module__", "__init__", "__class__", "__file__"})
FRAME_ATTRIBUTES = frozenset(
    {
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_back",
        "f_code",
        "gi_frame",
        "gi_code",
        "cr_frame",
        "cr_code",
        "ag_frame",
        "ag_code",
        "tb_frame",
        "tb_next",
        "co_code",
    }
)
REMOVED_BUILTINS = ("eval", "exec", "compile", "breakpoint", "input", "help", "exit", "quit", "__loader__", "__spec__")


def sandbox_modules(packages: list[str]) -> set[str]:
    modules = set(SANDBOX_MODULES)
    for p in packages:
        name = re.split(r"[=<>!~ ]", p.strip(), maxsplit=1)[0].lower()
        if name != "snowflake-snowpark-python":
            modules.add(name.replace("-", "_"))
    return modules


def _module_allowed(name: str, allowed: set[str]) -> bool:
    parts = name.split(".")
    if any(p.startswith("_") for p in parts[1:]) or any(p in HIDDEN_SUBMODULES for p in parts[1:]):
        return False
    return any(name == m or name.startswith(m + ".") for m in allowed)


def _is_parent(name: str, allowed: set[str]) -> bool:
    return any(m.startswith(name + ".") for m in allowed)


def _forbidden_name(name: str) -> bool:
    return (name.startswith("__") and name.endswith("__") and name not in SANDBOX_DUNDERS) or name in FRAME_ATTRIBUTES


def _sandbox_error(what: str) -> PermissionError:
    return PermissionError(f"{what} is not available in a stored procedure (the local emulator's sandbox)")


class _ModuleView(types.ModuleType):
    """An allowed module as handler code sees it: its attributes, but no module it may not import (``uuid.os``,
    ``dataclasses.sys``)."""

    def __init__(self, module: types.ModuleType, allowed: set[str]):
        super().__init__(module.__name__, module.__doc__)
        self.__dict__["__sandbox_module__"] = module
        self.__dict__["__sandbox_allowed__"] = allowed
        if hasattr(module, "__all__"):
            self.__dict__["__all__"] = list(module.__all__)

    def __getattr__(self, name: str) -> Any:
        if _forbidden_name(name):
            raise AttributeError(name)
        value = getattr(self.__dict__["__sandbox_module__"], name)
        if isinstance(value, types.ModuleType):
            allowed = self.__dict__["__sandbox_allowed__"]
            if not _module_allowed(value.__name__, allowed) and not _is_parent(value.__name__, allowed):
                raise AttributeError(f"module '{self.__name__}' has no attribute '{name}'")
            return _ModuleView(value, allowed)
        return value


_AST_LOCK = threading.Lock()  # CPython 3.11's ast.parse is not safe in concurrent threads (two CALLs at once)
_CHECKED: dict[str, tuple[str, int] | None] = {}


def check_source(proc: Procedure) -> None:
    """Refuse handler code that names the interpreter's internals (``__subclasses__``, ``__globals__``,
    ``__builtins__``, frames)."""
    import ast
    import hashlib

    key = hashlib.sha256(proc.body.encode()).hexdigest()
    with _AST_LOCK:
        if key not in _CHECKED:
            found = None
            for node in ast.walk(ast.parse(proc.body)):
                name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else None
                if name is not None and _forbidden_name(name):
                    found = (name, getattr(node, "lineno", 0))
                    break
            _CHECKED[key] = found
        found = _CHECKED[key]
    if found is not None:
        raise sql_error(
            f"Python Interpreter Error:\nPermissionError: '{found[0]}' is not available in a stored procedure (the "
            f"local emulator's sandbox), line {found[1]}\nin function {proc.name} with handler {proc.handler}",
            100357,
            "P0000",
        )


def sandbox_builtins(allowed: set[str]) -> dict[str, Any]:
    """The builtins handler code gets: no eval/exec/compile, an import limited to ``allowed``, open() of staged
    files only, and getattr() & co. without the interpreter's internals."""
    real_import = builtins.__import__
    real_getattr, real_setattr, real_delattr, real_hasattr = getattr, setattr, delattr, hasattr

    def sandbox_import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
        if level != 0 or not (_module_allowed(name, allowed) or _is_parent(name, allowed)):
            raise ModuleNotFoundError(
                f"No module named '{name}'. The stored procedure sandbox of the local emulator provides part of the "
                "standard library, snowflake.snowpark and the packages listed in PACKAGES.",
                name=name,
            )
        if not _module_allowed(name, allowed):  # a parent package (snowflake): only its allowed submodules
            fromlist = tuple(f for f in fromlist or () if _module_allowed(f"{name}.{f}", allowed))
        module = real_import(name, None, None, fromlist, 0)
        return _ModuleView(module, allowed)

    def sandbox_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        from pathlib import Path

        from fakesnow.transforms import stage as fs_stage

        if not isinstance(file, str | Path) or any(c in mode for c in "wax+"):
            raise _sandbox_error(f"open({file!r}, {mode!r})")
        path = Path(file).resolve()
        if not path.is_relative_to(Path(fs_stage.LOCAL_BUCKET_PATH).resolve()):
            raise _sandbox_error(f"open({str(file)!r}): a file outside the stages")
        return builtins.open(path, mode, *args, **kwargs)

    def checked(name: str) -> str:
        if not isinstance(name, str) or _forbidden_name(name):
            raise _sandbox_error(f"attribute {name!r}")
        return name

    def sandbox_getattr(obj: Any, name: str, *default: Any) -> Any:
        return real_getattr(obj, checked(name), *default)

    def sandbox_setattr(obj: Any, name: str, value: Any) -> None:
        real_setattr(obj, checked(name), value)

    def sandbox_delattr(obj: Any, name: str) -> None:
        real_delattr(obj, checked(name))

    def sandbox_hasattr(obj: Any, name: str) -> bool:
        return real_hasattr(obj, checked(name))

    def sandbox_vars(*obj: Any) -> Any:
        if not obj or isinstance(obj[0], type | types.ModuleType):
            raise _sandbox_error("vars() of a class, a module or the caller's frame")
        return vars(obj[0])

    out = {k: v for k, v in vars(builtins).items() if k not in REMOVED_BUILTINS}
    out.update(
        __import__=sandbox_import,
        open=sandbox_open,
        getattr=sandbox_getattr,
        setattr=sandbox_setattr,
        delattr=sandbox_delattr,
        hasattr=sandbox_hasattr,
        vars=sandbox_vars,
    )
    return out


def load_handler(proc: Procedure) -> Any:
    """Compile the procedure body as a module run under the sandbox guard (see the module docstring)."""
    filename = f"<procedure {proc.database}.{proc.schema}.{proc.name}>"
    linecache.cache[filename] = (len(proc.body), None, proc.body.splitlines(True), filename)
    check_source(proc)
    # a real module, as Snowflake imports inline handler code (dataclasses and pickling look modules up)
    module = types.ModuleType(f"_procedure_{proc.database}_{proc.schema}_{proc.name}".lower())
    module.__dict__["__builtins__"] = sandbox_builtins(sandbox_modules(proc.packages))
    module.__file__ = filename
    sys.modules[module.__name__] = module
    exec(compile(proc.body, filename, "exec"), module.__dict__)  # noqa: S102 - the emulator runs procedure handlers
    handler = getattr(module, proc.handler, None)
    if not callable(handler):
        raise sql_error(
            f"Python Interpreter Error:\nHandler '{proc.handler}' is not defined in procedure {proc.name}",
            100357,
            "P0000",
        )
    return handler


def run_handler(proc: Procedure, session: Any, args: list[Any]) -> Any:
    try:
        handler = load_handler(proc)
        return handler(session, *args)
    except snowflake.connector.errors.ProgrammingError as e:
        if e.errno == 100357:
            raise
        raise _interpreter_error(proc) from None
    except Exception:
        raise _interpreter_error(proc) from None


def _interpreter_error(proc: Procedure) -> snowflake.connector.errors.ProgrammingError:
    tb = traceback.format_exc()
    return sql_error(
        f"Python Interpreter Error:\n{tb}in function {proc.name} with handler {proc.handler}", 100357, "P0000"
    )


SCOPED_TRANSACTION_INCOMPLETE = (
    "Stored procedure execution error: Scoped transaction started in stored procedure is incomplete and it was "
    "rolled back."
)


def in_transaction(conn: Any) -> bool:
    """Whether a fakesnow connection (a session) has a transaction open: one AUTOCOMMIT off started implicitly, or an
    explicit ``BEGIN`` (DuckDB refuses to begin a second one)."""
    if getattr(conn, "_in_transaction", False):
        return True
    duck = conn._duck_conn
    try:
        duck.begin()
    except duckdb.TransactionException:
        return True
    duck.rollback()
    return False


def call_in_open_transaction(name: str) -> snowflake.connector.errors.ProgrammingError:
    return sql_error(
        f"CALL {name} inside an open transaction is not supported by the local emulator: the procedure runs in a "
        "session of its own and cannot take part in the caller's transaction. COMMIT or ROLLBACK first, or run the "
        "CALL with AUTOCOMMIT on.",
        90232,
        "25001",
    )


def server_session(session: Any) -> Any:
    """The emulator's side (a fakesnow connection) of a Snowpark session connected to this process, or None."""
    import fakesnow.server as fs_server

    rest = getattr(getattr(getattr(session, "_conn", None), "_conn", None), "rest", None)
    token = getattr(rest, "token", None)
    return fs_server.sessions.get(token) if token else None


def close_scope(session: Any, conn: Any, failed: bool) -> None:
    """End a procedure's transaction scope: a transaction its handler left open is rolled back (through the session,
    so every lock it holds goes too); if the handler returned normally, that fails the CALL, as in Snowflake."""
    if conn is None or not in_transaction(conn):
        return
    session.sql("ROLLBACK").collect()
    if not failed:
        raise sql_error(SCOPED_TRANSACTION_INCOMPLETE, 90232, "25000")


def execution_error(e: Exception, sql: str) -> snowflake.connector.errors.ProgrammingError:
    """A DuckDB failure fakesnow left unconverted, as the Snowflake error for it (never an HTTP 500)."""
    message = str(e).split("\n")[0]
    if isinstance(e, duckdb.ConstraintException) and "NOT NULL" in message.upper():
        column = message.rsplit(":", 1)[-1].strip()
        return sql_error(f"NULL result in a non-nullable column ({column})", 100072, "22000")
    if isinstance(e, duckdb.InvalidInputException) and "JSON" in message.upper():
        return sql_error(f"Error parsing JSON: {message}", 100069, "22P02")
    if isinstance(e, duckdb.OutOfRangeException):
        return sql_error(f"Numeric value out of range: {message}", 100046, "22003")
    return sql_error(f"SQL execution internal error:\n{type(e).__name__}: {message}", 603, "XX000")


def result_sql(proc: Procedure, value: Any) -> tuple[str, list[Any]]:
    """A SELECT returning ``value`` as the CALL's one-column result, typed by RETURNS."""
    column = '"' + proc.name.replace('"', '""') + '"'
    t = base_type(proc.returns)
    if t in {"VARIANT", "OBJECT", "ARRAY"}:
        return f"SELECT CAST(? AS JSON) AS {column}", [None if value is None else json.dumps(value, default=str)]
    if t == "NUMBER":
        scale = re.search(r",\s*(\d+)", proc.returns)
        if scale and int(scale.group(1)) > 0:
            return f"SELECT CAST(? AS DOUBLE) AS {column}", [value]
        return f"SELECT CAST(? AS BIGINT) AS {column}", [value]
    if t == "FLOAT":
        return f"SELECT CAST(? AS DOUBLE) AS {column}", [value]
    if t == "BOOLEAN":
        return f"SELECT CAST(? AS BOOLEAN) AS {column}", [value]
    if t in {"DATE", "TIMESTAMP_NTZ", "TIMESTAMP", "TIMESTAMP_LTZ", "TIMESTAMP_TZ"}:
        return f"SELECT CAST(? AS TIMESTAMP) AS {column}", [value]
    return f"SELECT CAST(? AS VARCHAR) AS {column}", [None if value is None else str(value)]
