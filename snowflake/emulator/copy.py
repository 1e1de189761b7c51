"""``COPY INTO <table>`` from a stage, the way Snowflake does it, on DuckDB.

Supported: named stages (external ``s3://`` and internal) and external locations, nested keys, ``FILES=``,
``PATTERN=``, CSV file formats (named and inline), loads with transformation (``$n``, ``METADATA$FILENAME``,
``METADATA$FILE_ROW_NUMBER``, ``METADATA$FILE_CONTENT_KEY``, ``METADATA$FILE_LAST_MODIFIED``,
``METADATA$START_SCAN_TIME``, casts and functions), ``ON_ERROR`` = ``ABORT_STATEMENT`` | ``CONTINUE`` |
``SKIP_FILE`` | ``SKIP_FILE_<n>`` | ``'SKIP_FILE_<n>%'``, ``FORCE``, ``VALIDATION_MODE`` and ``VALIDATE()``.

How a file is read: DuckDB's CSV reader parses every field as text, rejecting structurally bad records (wrong
field count, unterminated quote, invalid UTF-8, over-long lines) into a rejects table with their record number
and text; every value is then cast to its target column's type, and a value that doesn't cast (or a NULL for a
NOT NULL column) rejects its row with Snowflake's message for that error. Rows parsed = rows loaded + rows
rejected, always. Like Snowflake, the load metadata of each table remembers which files (by path and content
version) were loaded, so a repeated COPY skips them unless ``FORCE = TRUE``.

As in Snowflake, a load with transformation ignores ``ERROR_ON_COLUMN_COUNT_MISMATCH`` (a record's missing fields
are NULL, its extra fields are dropped), as does a load whose file format sets it to FALSE; a load without
transformation (and ``VALIDATION_MODE``) rejects such records when it is TRUE. A COPY without ``FILE_FORMAT`` uses the
stage's. ``CURRENT_TIMESTAMP()`` and its kin in a transformation are the emulator clock's time in the session's
``TIMEZONE`` (:mod:`.clock`). ``METADATA$FILENAME`` and the ``FILE`` of rejected rows are the object's path in its
bucket (:attr:`.stages.StagedFile.filename`). A transformation is a plain ``SELECT`` list: ``WHERE``, ``GROUP BY``,
``ORDER BY``, ``LIMIT``, joins and ``DISTINCT`` are refused, as Snowflake refuses them.

A stage path (``@stage/<path>``, ``FILES = (...)``) is a prefix of keys and never leaves the stage
(:mod:`.stages`); a COPY the emulator hands to fakesnow (a table stage, a format other than CSV) is checked the same
way first (:func:`stage_paths_ok`).

Documented differences from Snowflake: ``LINE`` counts records (a quoted field with a newline does not add a
line); ``REJECTED_RECORD`` of a row rejected for a value is rebuilt from its parsed fields; the functions of a
transformation are DuckDB's (those Snowflake does not allow in a COPY transformation are not refused).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import duckdb
import snowflake.connector.errors
from fakesnow.transforms import stage as fs_stage
from fakesnow.transforms.file_format import lookup_file_format
from fakesnow.transforms.options import parse_options
from sqlglot import exp

from . import clock, stages
from .procedures import first
from .stages import StagedFile, StageStorage


def tables_sql(catalog: str) -> str:
    """The emulator's COPY bookkeeping lives in each database (a DuckDB transaction writes to one database only)."""
    schema = f'"{catalog}"._fs_information_schema'
    return f"""
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}._emu_copy_jobs (
    job_id VARCHAR PRIMARY KEY, table_catalog VARCHAR, table_schema VARCHAR, table_name VARCHAR,
    transformed BOOLEAN, created_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS {schema}._emu_copy_errors (
    job_id VARCHAR, error VARCHAR, file VARCHAR, line BIGINT, character BIGINT, byte_offset BIGINT,
    category VARCHAR, code BIGINT, sql_state VARCHAR, column_name VARCHAR, row_number BIGINT,
    row_start_line BIGINT, rejected_record VARCHAR
);
CREATE TABLE IF NOT EXISTS {schema}._emu_load_history (
    table_catalog VARCHAR, table_schema VARCHAR, table_name VARCHAR, file VARCHAR, etag VARCHAR,
    status VARCHAR, row_count BIGINT, row_parsed BIGINT, first_error VARCHAR, loaded_at TIMESTAMP, job_id VARCHAR
);
"""


def stage_paths_ok(expression: exp.Copy) -> bool:
    """Whether the stage path and ``FILES`` of a COPY stay inside the stage (:func:`.stages.local_key_ok`), for a
    COPY fakesnow runs. A ``FILES`` entry that would leave it fails as a file that is not there; a path that would
    loads nothing (False)."""
    from .access import copy_source

    source = copy_source(expression) or ""
    if not source.startswith("@"):
        return True
    path = source.partition("/")[2]
    if not stages.local_key_ok(path):
        return False
    for p in expression.args.get("params", []):
        if p.this.name.upper() == "FILES":
            for name in (lit_.name for lit_ in p.find_all(exp.Literal)):
                if not stages.local_key_ok(path + name):
                    raise copy_error(
                        f"Remote file '{source.rstrip('/')}/{name}' was not found. If you are running a copy command, "
                        "please make sure files are not deleted when they are being loaded or files are not being "
                        "loaded into two different tables concurrently with auto purge option.",
                        91016,
                        "22000",
                    )
    return True


def jobs_table(catalog: str) -> str:
    return f'"{catalog}"._fs_information_schema._emu_copy_jobs'


def errors_table(catalog: str) -> str:
    return f'"{catalog}"._fs_information_schema._emu_copy_errors'


def history_table(catalog: str) -> str:
    return f'"{catalog}"._fs_information_schema._emu_load_history'


RESULT_COLUMNS = (
    "file",
    "status",
    "rows_parsed",
    "rows_loaded",
    "error_limit",
    "errors_seen",
    "first_error",
    "first_error_line",
    "first_error_character",
    "first_error_column_name",
)

VALIDATE_COLUMNS = (
    "ERROR",
    "FILE",
    "LINE",
    "CHARACTER",
    "BYTE_OFFSET",
    "CATEGORY",
    "CODE",
    "SQL_STATE",
    "COLUMN_NAME",
    "ROW_NUMBER",
    "ROW_START_LINE",
    "REJECTED_RECORD",
)

# DuckDB reject type -> (Snowflake code, message template)
STRUCTURAL_ERRORS = {
    "MISSING COLUMNS": (
        100080,
        "Number of columns in file ({found}) does not match that of the corresponding table ({expected}), "
        "use file format option error_on_column_count_mismatch=false to ignore this error",
    ),
    "TOO MANY COLUMNS": (
        100080,
        "Number of columns in file ({found}) does not match that of the corresponding table ({expected}), "
        "use file format option error_on_column_count_mismatch=false to ignore this error",
    ),
    "UNQUOTED VALUE": (100065, "Found character '\"' instead of field delimiter ','"),
    "INVALID ENCODING": (100096, "Invalid UTF8 detected in string"),
    "LINE SIZE OVER MAXIMUM": (100082, "Max LOB size (16777216) exceeded"),
    "INVALID STATE": (100066, "Invalid state while parsing the record"),
    "CAST": (100038, "Value is not recognized"),
}

MAX_LINE_SIZE = 16 * 1024 * 1024 + 1024
COUNT_MISMATCH = ("MISSING COLUMNS", "TOO MANY COLUMNS")
# DuckDB's reader needs at least one NULL string; this one never occurs in a file (a NUL between noncharacters)
NO_NULL_STRING = "\uffff\x00\ufffe"
# SELECT clauses a COPY transformation may not have ("Transforming data during a load", usage notes)
UNSUPPORTED_CLAUSES = {
    "where": "WHERE",
    "group": "GROUP BY",
    "having": "HAVING",
    "order": "ORDER BY",
    "limit": "LIMIT",
    "offset": "OFFSET",
    "joins": "JOIN",
    "distinct": "DISTINCT",
    "qualify": "QUALIFY",
    "with_": "WITH",
}
NUMERIC = ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT", "DECIMAL", "DOUBLE", "FLOAT", "REAL")
# files of one COPY loaded at once (when each file has its own transaction, as with ON_ERROR = CONTINUE)
COPY_WORKERS = max(1, int(os.environ.get("NETFLIX_ELT_EMULATOR_COPY_WORKERS", "0")) or min(4, os.cpu_count() or 1))


class FileReadError(Exception):
    """A staged file could not be read at all (e.g. corrupt compression)."""


def copy_error(msg: str, errno: int = 100038, sqlstate: str = "22018") -> snowflake.connector.errors.ProgrammingError:
    return snowflake.connector.errors.ProgrammingError(msg=msg, errno=errno, sqlstate=sqlstate)


@dataclass
class CsvFormat:
    skip_header: int = 0
    delimiter: str = ","
    quote: str = ""  # FIELD_OPTIONALLY_ENCLOSED_BY; "" = none
    null_if: list[str] = field(default_factory=lambda: ["\\N"])
    empty_field_as_null: bool = True
    compression: str = "auto"
    error_on_column_count_mismatch: bool = True
    trim_space: bool = False

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> CsvFormat:
        f = cls()
        for name, value in options.items():
            v = str(value).upper() if not isinstance(value, list) else value
            if name in {"TYPE", "COMMENT", "ENCODING", "RECORD_DELIMITER", "SKIP_BLANK_LINES", "DATE_FORMAT"}:
                if name == "TYPE" and v != "CSV":
                    raise NotImplementedError(f"COPY with FILE_FORMAT TYPE={value} in the emulator")
                if name == "ENCODING" and v not in {"UTF8", "UTF-8"}:
                    raise NotImplementedError(f"ENCODING={value}")
                continue
            if name == "SKIP_HEADER":
                f.skip_header = int(value)
            elif name == "FIELD_DELIMITER":
                f.delimiter = str(value)
            elif name == "FIELD_OPTIONALLY_ENCLOSED_BY":
                f.quote = "" if v == "NONE" else str(value)
            elif name == "NULL_IF":
                f.null_if = [str(x) for x in value] if isinstance(value, list) else [str(value)]
            elif name == "EMPTY_FIELD_AS_NULL":
                f.empty_field_as_null = v in {"TRUE", "1"}
            elif name == "COMPRESSION":
                f.compression = {"AUTO": "auto", "AUTO_DETECT": "auto", "GZIP": "gzip", "NONE": "none"}.get(str(v), "")
                if not f.compression:
                    raise NotImplementedError(f"COMPRESSION={value}")
            elif name == "ERROR_ON_COLUMN_COUNT_MISMATCH":
                f.error_on_column_count_mismatch = v in {"TRUE", "1"}
            elif name == "TRIM_SPACE":
                f.trim_space = v in {"TRUE", "1"}
            elif (name == "ESCAPE_UNENCLOSED_FIELD" and v == "NONE") or (name == "ESCAPE" and v == "NONE"):
                continue
            else:
                raise NotImplementedError(f"FILE_FORMAT option {name}={value} in the emulator")
        return f

    def read_csv(
        self,
        path: str,
        n_fields: int,
        rejects: str,
        scan: str,
        types: dict[int, str] | None = None,
        pad: bool = False,
    ) -> str:
        """DuckDB's reader of a staged file as ``c1``..``c<n_fields>``. ``pad``: a record with fewer fields is read
        with NULLs for the missing ones (a COPY with a transformation selects ``$k`` beyond a record's fields); the
        reader then runs on one thread, which its padding needs for quoted line breaks (as fast, measured on a
        2M-row file, as the parallel reader on 2 cores)."""
        types = types or {}
        cols = ", ".join(f"'c{i}': {lit(types.get(i, 'VARCHAR'))}" for i in range(1, n_fields + 1))
        nulls = list(self.null_if) + ([""] if self.empty_field_as_null and "" not in self.null_if else [])
        args = [
            lit(path),
            "auto_detect=false",
            "header=false",
            f"skip={self.skip_header}",
            f"delim={lit(self.delimiter)}",
            f"quote={lit(self.quote)}",
            f"escape={lit(self.quote)}",
            f"columns={{{cols}}}",
            f"nullstr=[{', '.join(lit(n) for n in nulls or [NO_NULL_STRING])}]",
            "allow_quoted_nulls=false",
            f"compression={lit(self.compression)}",
            f"max_line_size={MAX_LINE_SIZE}",
            "store_rejects=true",
            f"rejects_table={lit(rejects)}",
            f"rejects_scan={lit(scan)}",
            "filename=false",
        ]
        if pad:
            args += ["null_padding=true", "parallel=false"]
        return f"read_csv({', '.join(args)})"


def lit(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int | float):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


@dataclass
class TargetColumn:
    name: str
    duck_type: str
    nullable: bool


@dataclass
class FileOutcome:
    file: StagedFile
    status: str
    rows_parsed: int = 0
    rows_loaded: int = 0
    error_limit: int = 1
    errors_seen: int = 0
    first_error: str | None = None
    first_error_line: int | None = None
    first_error_character: int | None = None
    first_error_column_name: str | None = None


@dataclass
class CopyPlan:
    ref: str  # SQL reference of the target table
    catalog: str
    schema: str
    table: str
    columns: list[TargetColumn]
    expressions: list[exp.Expression] | None  # transformation select list, or None
    n_fields: int
    location: str
    path: str
    files_param: list[str] | None
    pattern: str | None
    fmt: CsvFormat
    on_error: str
    force: bool
    validation_mode: str | None
    # records whose field count differs from n_fields are loaded (missing fields NULL, extra ones dropped)
    tolerate_count_mismatch: bool = False


class CopyRunner:
    def __init__(self, duck_conn: duckdb.DuckDBPyConnection, storage: StageStorage, timezone: str | None = None):
        self.duck = duck_conn
        self.storage = storage
        self.in_transaction = False
        # the session's TIMEZONE: CURRENT_TIMESTAMP() in transformations, and the files loaded on connections
        # of their own, use it (a DuckDB cursor does not inherit its connection's TimeZone)
        self.timezone = timezone or self._duck_timezone()

    def _duck_timezone(self) -> str:
        """The session connection's time zone, which follows the session's TIMEZONE (:mod:`.clock`)."""
        try:
            row = first(self.duck.execute("SELECT current_setting('TimeZone')"))
        except duckdb.Error:
            row = None
        return str(row[0]) if row and row[0] else clock.DEFAULT_TIMEZONE

    # -- planning -------------------------------------------------------------------------------------------------
    def plan(self, expression: exp.Copy, params: Any, database: str | None, schema: str | None) -> CopyPlan:
        target = expression.this
        column_list: list[str] | None = None
        if isinstance(target, exp.Schema):
            column_list = [c.name.upper() if not c.args.get("quoted") else c.name for c in target.expressions]
            target = target.this
        assert isinstance(target, exp.Table)
        catalog = (target.catalog or database or "").upper()
        tschema = (target.db or schema or "").upper()
        table = target.name if target.this.args.get("quoted") else target.name.upper()
        target_ref = self._table_ref(catalog, tschema, table)
        described = self._describe(target_ref, f"{catalog}.{tschema}.{table}")
        if column_list is not None:
            by_name = {c.name.upper(): c for c in described}
            missing = [c for c in column_list if c.upper() not in by_name]
            if missing:
                raise copy_error(f"SQL compilation error:\ninvalid identifier '{missing[0]}'", 904, "42000")
            columns = [by_name[c.upper()] for c in column_list]
        else:
            columns = described

        source = expression.args["files"][0]
        expressions: list[exp.Expression] | None = None
        inline_options: dict[str, Any] = {}
        if isinstance(source, exp.Subquery):
            select = source.this
            assert isinstance(select, exp.Select)
            _check_transformation(select)
            expressions = list(select.expressions)
            from_ = select.args["from_"].this
            ref = from_.this.name if isinstance(from_.this, exp.Var) else from_.sql("snowflake")
            if len(expressions) != len(columns):
                raise copy_error(
                    "SQL compilation error:\nInsert value list does not match column list expecting "
                    f"{len(columns)} but got {len(expressions)}",
                    2020,
                    "21S01",
                )
            n_fields = max([int(p.name) for e in expressions for p in e.find_all(exp.Parameter)] + [0])
        else:
            ref = source.name if isinstance(source, exp.Var | exp.Literal) else source.sql("snowflake")
            n_fields = len(columns)

        stage_options: dict[str, Any] = {}
        if ref.startswith("@"):
            if ref.startswith("@%") or "/%" in ref.split("/")[0]:
                raise NotImplementedError("COPY from a table stage")
            fq, location, path = stages.resolve_stage(self.duck, ref, database, schema)
            stage_options = stages.stage_file_format(self.duck, fq)
        else:
            location, path = ref.strip("'"), ""

        files_param = None
        pattern = None
        on_error = "ABORT_STATEMENT"
        force = False
        validation_mode = None
        format_given = False
        for p in expression.args.get("params", []):
            name = p.this.name.upper()
            value = p.expression
            if name == "FILES":
                files_param = [lit_.name for lit_ in p.find_all(exp.Literal)]
            elif name == "PATTERN":
                pattern = value.name
            elif name == "FILE_FORMAT":
                inline_options = parse_options(p.expressions)
                format_given = True
            elif name == "ON_ERROR":
                on_error = self._param_value(value, params).upper()
            elif name == "FORCE":
                force = value.sql().upper() in {"TRUE", "1"}
            elif name == "VALIDATION_MODE":
                validation_mode = value.name.upper()
            elif name in {
                "PURGE",
                "RETURN_FAILED_ONLY",
                "TRUNCATECOLUMNS",
                "ENFORCE_LENGTH",
                "LOAD_UNCERTAIN_FILES",
            } or (name == "MATCH_BY_COLUMN_NAME" and value.name.upper() == "NONE"):
                continue
            else:
                raise NotImplementedError(f"COPY option {name} in the emulator")
        if not re.fullmatch(r"ABORT_STATEMENT|CONTINUE|SKIP_FILE(_\d+%?)?", on_error):
            raise copy_error(
                f"SQL compilation error:\ninvalid value [{on_error}] for parameter 'ON_ERROR'", 1008, "22023"
            )
        if validation_mode and expressions is not None:
            raise copy_error(
                "SQL compilation error:\nVALIDATION_MODE does not support COPY statements that transform data "
                "during a load.",
                2097,
                "0A000",
            )
        if not format_given:
            # "FILE_FORMAT ... Only required when loading from a stage without a file format" (COPY INTO <table>)
            inline_options = dict(stage_options)
        if format_name := inline_options.pop("FORMAT_NAME", None):
            inline_options = {**lookup_file_format(self.duck, str(format_name), database, schema), **inline_options}
        fmt = CsvFormat.from_options(inline_options)
        return CopyPlan(
            target_ref,
            catalog,
            tschema,
            table,
            columns,
            expressions,
            n_fields,
            location,
            path,
            files_param,
            pattern,
            fmt,
            on_error,
            force,
            validation_mode,
            # "When querying staged data files, the ERROR_ON_COLUMN_COUNT_MISMATCH option is ignored"
            tolerate_count_mismatch=expressions is not None or not fmt.error_on_column_count_mismatch,
        )

    @staticmethod
    def _param_value(value: exp.Expression, params: Any) -> str:
        if isinstance(value, exp.Placeholder) and params:
            return str(params.pop(0) if isinstance(params, list) else params)
        return value.name

    def _table_ref(self, catalog: str, schema: str, table: str) -> str:
        """SQL reference of the target: a temporary table of that name shadows the permanent one."""
        temp = first(
            self.duck.execute(
                "SELECT 1 FROM duckdb_tables() WHERE temporary AND table_name = ? LIMIT 1",
                [table],
            )
        )
        return f'temp.main."{table}"' if temp else f'"{catalog}"."{schema}"."{table}"'

    def _describe(self, ref: str, display: str) -> list[TargetColumn]:
        try:
            rows = self.duck.execute(f"DESCRIBE {ref}").fetchall()
        except duckdb.CatalogException:
            raise copy_error(
                f"SQL compilation error:\nTable '{display}' does not exist or not authorized.",
                2003,
                "42S02",
            ) from None
        return [TargetColumn(r[0], r[1], r[2] == "YES") for r in rows]

    def candidate_files(self, plan: CopyPlan) -> list[StagedFile]:
        if plan.files_param is not None:
            found = []
            for name in plan.files_param:
                f = self.storage.stat(plan.location, plan.path + name) or self.storage.stat(plan.location, name)
                if f is None:
                    raise copy_error(
                        f"Remote file '{plan.location.rstrip('/')}/{plan.path}{name}' was not found. If you are "
                        "running a copy command, please make sure files are not deleted when they are being loaded "
                        "or files are not being loaded into two different tables concurrently with auto purge "
                        "option.",
                        91016,
                        "22000",
                    )
                found.append(f)
            return found
        files = self.storage.list(plan.location, plan.path)
        if plan.pattern is not None:
            rx = re.compile(plan.pattern)
            files = [f for f in files if rx.fullmatch(f.relative) or rx.fullmatch(f.url)]
        return files

    # -- execution ------------------------------------------------------------------------------------------------
    def run(self, plan: CopyPlan, job_id: str, in_transaction: bool) -> tuple[list[tuple[Any, ...]], list[str]]:
        """Load the files. Returns result rows and column names (the COPY result, or VALIDATION_MODE's errors)."""
        self.in_transaction = in_transaction
        self.duck.execute(tables_sql(plan.catalog))
        files = self.candidate_files(plan)
        if plan.validation_mode is None:
            self.duck.execute(
                f"INSERT INTO {jobs_table(plan.catalog)} VALUES (?, ?, ?, ?, ?, ?)",
                [job_id, plan.catalog, plan.schema, plan.table, plan.expressions is not None, now()],
            )
        if not plan.force and plan.validation_mode is None:
            files = [f for f in files if not self._already_loaded(plan, f)]
        if not files:
            return [("Copy executed with 0 files processed.",)], ["status"]

        statement_tx = not in_transaction and plan.on_error == "ABORT_STATEMENT" and plan.validation_mode is None
        if statement_tx:
            self.duck.begin()
        file_tx = not in_transaction and not statement_tx and plan.validation_mode is None
        outcomes: list[FileOutcome] = []
        try:
            workers = min(COPY_WORKERS, len(files)) if file_tx else 1
            if workers > 1:
                # files in their own transactions: load several at once, each on its own DuckDB connection (a
                # compressed file is parsed by one thread, so this is what keeps every core busy)
                with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="emulator-copy") as pool:
                    outcomes = list(pool.map(lambda f: self._on_own_connection(plan, f, job_id), files))
            else:
                outcomes = [self._load_one(plan, f, job_id, file_tx) for f in files]
        except BaseException:
            if statement_tx:
                self.duck.rollback()
            raise
        if statement_tx:
            self.duck.commit()

        if plan.validation_mode is not None:
            return self._validation_result(plan, job_id)
        rows = [
            (
                o.file.url if stages.is_external(plan.location) else _internal_name(o.file),
                o.status,
                o.rows_parsed,
                o.rows_loaded,
                o.error_limit,
                o.errors_seen,
                o.first_error,
                o.first_error_line,
                o.first_error_character,
                o.first_error_column_name,
            )
            for o in outcomes
        ]
        return rows, list(RESULT_COLUMNS)

    def _load_one(self, plan: CopyPlan, f: StagedFile, job_id: str, file_tx: bool) -> FileOutcome:
        """Load one file (in its own transaction if ``file_tx``) and record it in the load history."""
        if file_tx:
            self.duck.begin()
        try:
            try:
                if f.relative.endswith(".gz") and plan.fmt.compression in {"auto", "gzip"}:
                    _check_gzip(f)
                outcome = self._load_file(plan, f, job_id)
            except FileReadError as e:
                # DuckDB aborts the transaction on a read error: start the file's transaction again
                if not file_tx:
                    raise copy_error(str(e), 100069, "22000") from None
                self.duck.rollback()
                self.duck.begin()
                outcome = self._file_failed(plan, f, job_id, str(e))
            if plan.validation_mode is None:
                self._record_history(plan, outcome, job_id)
        except BaseException:
            if file_tx:
                self.duck.rollback()
            raise
        if file_tx:
            self.duck.commit()
        return outcome

    def _again_as_text(self, plan: CopyPlan, f: StagedFile, job_id: str, created: list[str]) -> FileOutcome:
        for t in created:
            self.duck.execute(f"DROP TABLE IF EXISTS {t}")
        created.clear()
        return self._load_file(plan, f, job_id, try_typed=False)

    def _on_own_connection(self, plan: CopyPlan, f: StagedFile, job_id: str) -> FileOutcome:
        cursor = self.duck.cursor()
        try:
            cursor.execute(f"SET SESSION TimeZone = {lit(self.timezone)}")
            return CopyRunner(cursor, self.storage, self.timezone)._load_one(plan, f, job_id, file_tx=True)
        finally:
            cursor.close()

    def _already_loaded(self, plan: CopyPlan, f: StagedFile) -> bool:
        row = first(
            self.duck.execute(
                f"SELECT 1 FROM {history_table(plan.catalog)} WHERE table_catalog = ? AND table_schema = ? AND table_name = ? "
                "AND file = ? AND etag = ? AND status IN ('LOADED', 'PARTIALLY_LOADED') LIMIT 1",
                [plan.catalog, plan.schema, plan.table, f.url, f.etag],
            )
        )
        return row is not None

    def _record_history(self, plan: CopyPlan, o: FileOutcome, job_id: str) -> None:
        self.duck.execute(
            f"INSERT INTO {history_table(plan.catalog)} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                plan.catalog,
                plan.schema,
                plan.table,
                o.file.url,
                o.file.etag,
                o.status,
                o.rows_loaded,
                o.rows_parsed,
                o.first_error,
                now(),
                job_id,
            ],
        )
        # fakesnow's INFORMATION_SCHEMA.LOAD_HISTORY view reads this table
        with contextlib.suppress(duckdb.Error):
            self.duck.execute(
                f'INSERT INTO "{plan.catalog}"._fs_information_schema._fs_load_history '
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    plan.schema,
                    o.file.url,
                    plan.table,
                    now().isoformat() + "+00:00",
                    o.status,
                    o.rows_loaded,
                    o.rows_parsed,
                    o.first_error,
                    o.first_error_line,
                    o.first_error_character,
                    o.first_error_column_name,
                    o.errors_seen,
                    o.error_limit,
                ],
            )

    def _value_sql(self, plan: CopyPlan, f: StagedFile) -> list[tuple[str, set[int], str | None]]:
        """For each target column: DuckDB SQL of its value as text-or-typed expression, the fields it reads, and
        SQL of the message of a conversion in it that fails for the row (NULL when none does; None: it has none)."""
        if plan.expressions is None:
            return [(f"c{i}", {i}, None) for i in range(1, len(plan.columns) + 1)]
        scan_time = now()
        out: list[tuple[str, set[int], str | None]] = []
        for e in plan.expressions:
            e = clock.rewrite(e.copy(), self.timezone)
            fields = {int(p.name) for p in e.find_all(exp.Parameter)}

            def sub(node: exp.Expression) -> exp.Expression:
                if isinstance(node, exp.Parameter):
                    return exp.column(f"c{node.name}")
                if isinstance(node, exp.Column) and node.name.upper().startswith("METADATA$"):
                    return _metadata_value(node.name.upper(), f, scan_time)
                return node

            e = e.transform(sub)
            if isinstance(e, exp.Alias):
                e = e.this
            out.append((_lenient(e).sql(dialect="duckdb"), fields, _conversion_failure(e)))
        return out

    def _typed_fields(self, plan: CopyPlan, values: list[tuple[str, set[int], str | None]]) -> dict[int, str]:
        """Fields the CSV reader may parse straight into their column's numeric type: those loaded as they are
        (``$n``) into one column of a numeric type, in loads that keep going past rejected rows."""
        if plan.validation_mode is not None or plan.on_error != "CONTINUE":
            return {}
        typed: dict[int, str] = {}
        for col, (sql, fields, _failure) in zip(plan.columns, values, strict=True):
            if len(fields) == 1 and sql == f"c{next(iter(fields))}" and col.duck_type.upper().startswith(NUMERIC):
                n = next(iter(fields))
                typed[n] = col.duck_type if typed.get(n, col.duck_type) == col.duck_type else "VARCHAR"
        return {n: t for n, t in typed.items() if t != "VARCHAR"}

    def _load_file(self, plan: CopyPlan, f: StagedFile, job_id: str, try_typed: bool = True) -> FileOutcome:
        tag = uuid.uuid4().hex[:12]
        raw, rejects, scan, gaps = (f"_emu_raw_{tag}", f"_emu_rej_{tag}", f"_emu_scan_{tag}", f"_emu_gap_{tag}")
        recovered = f"_emu_fix_{tag}"
        fmt = plan.fmt
        created: list[str] = []
        values = self._value_sql(plan, f)
        # Fast path: numeric fields parsed by the CSV reader into their type (no text copy of the file, no casts).
        # A file with any value that doesn't parse, a record of the wrong shape, or a NULL for a NOT NULL column,
        # is read again as text, which is what gives every rejected row its Snowflake error message and record.
        typed_fields = self._typed_fields(plan, values) if try_typed else {}
        try:
            try:
                # records in file order (a CTAS keeps the scan's order), numbered by their rowids below
                # records with too few fields are padded natively where the load tolerates them; those with too
                # many are rejected by the reader and recovered below
                reader = fmt.read_csv(
                    f.read_path, plan.n_fields, rejects, scan, typed_fields, pad=plan.tolerate_count_mismatch
                )
                self.duck.execute(f"CREATE TEMP TABLE {raw} AS SELECT * FROM {reader}")
                created += [raw, rejects, scan]
                # rowids are consecutive in insertion order, from a base that is not 0 inside a transaction
                base = first(self.duck.execute(f"SELECT coalesce(min(rowid), 0) FROM {raw}"))[0]
            except duckdb.Error as e:
                raise FileReadError(_file_error_message(f, e)) from e

            structural = first(self.duck.execute(f"SELECT count(*) FROM {rejects}"))[0]
            if typed_fields and structural:
                # a value that doesn't parse, or a record of the wrong shape: every rejected row's record and
                # message come from the text read
                return self._again_as_text(plan, f, job_id, created)
            if structural:
                # DuckDB rejects a record that lacks several fields once per missing field; Snowflake rejects
                # the record once, saying how many fields it has (the first missing one's count)
                self.duck.execute(
                    f"DELETE FROM {rejects} WHERE rowid NOT IN (SELECT arg_min(rowid, coalesce(column_idx, 0)) "
                    f"FROM {rejects} GROUP BY line)"
                )
                structural = first(self.duck.execute(f"SELECT count(*) FROM {rejects}"))[0]
            ordered = structural > 0  # rows from more than one table: inserted in file order
            n_recovered = 0
            if structural:
                self.duck.execute(
                    f"CREATE TEMP TABLE {gaps} AS SELECT max(g) AS g, max(i) AS i FROM ("
                    f"  SELECT (line - {fmt.skip_header}) - row_number() OVER (ORDER BY line) AS g,"
                    f"         row_number() OVER (ORDER BY line) AS i FROM {rejects}) GROUP BY g"
                )
                created.append(gaps)
                field_list = ", ".join(f"c{n}" for n in range(1, plan.n_fields + 1))
                source = (
                    f"(SELECT {field_list}, r._k + coalesce(gp.i, 0) AS _rn FROM "
                    f"(SELECT *, rowid - {base} + 1 AS _k FROM {raw}) r ASOF LEFT JOIN {gaps} gp ON r._k > gp.g)"
                )
                if plan.tolerate_count_mismatch:
                    n_recovered = self._recover_count_mismatches(plan, rejects, recovered)
                    created.append(recovered)
                    source = f"({source[1:-1]} UNION ALL SELECT {field_list}, _rn FROM {recovered})"
                    structural = first(self.duck.execute(f"SELECT count(*) FROM {rejects}"))[0]
            else:
                source = f"(SELECT *, rowid - {base} + 1 AS _rn FROM {raw})"

            typed_cols = []
            err_conds = []
            msgs = []
            for i, (col, (sql, _fields, failure)) in enumerate(zip(plan.columns, values, strict=True), start=1):
                typed = f"TRY_CAST({sql} AS {col.duck_type})"
                typed_cols.append(f"{typed} AS v{i}")
                # a value that does not convert to the column's type, or an explicit conversion in the
                # transformation that fails (not a NULL the expression returns, as IFF/NULLIF/CASE may)
                final_failed = f"(v{i} IS NULL AND ({sql}) IS NOT NULL)"
                cast_failed = f"({final_failed} OR ({failure}) IS NOT NULL)" if failure else final_failed
                null_violation = "FALSE" if col.nullable else f"(v{i} IS NULL)"
                err_conds.append(f"({cast_failed} OR {null_violation})")
                final_message = _cast_message_sql(col.duck_type, f"CAST(({sql}) AS VARCHAR)")
                message = f"coalesce({failure}, {final_message})" if failure else final_message
                msgs.append(
                    (
                        f"_e{i}",
                        f"CASE WHEN {cast_failed} THEN {message} ELSE 'NULL result in a non-nullable column' END",
                        col.name,
                        i,
                    )
                )
            field_cols = ", ".join(f"c{n}" for n in range(1, plan.n_fields + 1))
            typed_sql = f"SELECT _rn, {field_cols}{', ' if field_cols else ''}{', '.join(typed_cols)} FROM {source}"
            flagged = (
                f"SELECT *, {', '.join(f'{c} AS _e{i}' for i, c in enumerate(err_conds, start=1))} FROM ({typed_sql})"
            )
            any_err = " OR ".join(f"_e{i}" for i in range(1, len(plan.columns) + 1)) or "FALSE"
            cols = ", ".join(f'"{c.name}"' for c in plan.columns)
            vals = ", ".join(f"v{i}" for i in range(1, len(plan.columns) + 1))
            insert = f"INSERT INTO {plan.ref} ({cols}) SELECT {vals} FROM ({flagged}) WHERE NOT ({any_err})" + (
                " ORDER BY _rn" if ordered else ""
            )
            parsed_ok = int(first(self.duck.execute(f"SELECT count(*) FROM {raw}"))[0]) + n_recovered
            # Loads whose rows stay in the table even when some are rejected (ON_ERROR = CONTINUE), or that are
            # rolled back as a whole on a rejected row (ABORT_STATEMENT in its own transaction), insert the good
            # rows first and look at the rejected ones only if there are any: one pass over the data, not two.
            insert_first = plan.validation_mode is None and (
                plan.on_error == "CONTINUE" or (plan.on_error == "ABORT_STATEMENT" and not self.in_transaction)
            )
            if (
                typed_fields
                and first(self.duck.execute(f"SELECT count(*) FILTER (WHERE {any_err}) FROM ({flagged})"))[0]
            ):
                return self._again_as_text(plan, f, job_id, created)
            inserted = None
            if insert_first:
                res = first(self.duck.execute(insert)) if parsed_ok else None
                inserted = int(res[0]) if res else 0
                value_errors = parsed_ok - inserted
            else:
                counts = first(self.duck.execute(f"SELECT count(*) FILTER (WHERE {any_err}) FROM ({flagged})"))
                assert counts is not None
                value_errors = int(counts[0])
            rows_parsed = parsed_ok + int(structural)
            errors = value_errors + int(structural)

            if errors:
                self._store_errors(plan, f, job_id, rejects, flagged, msgs, any_err, structural > 0)
            outcome = FileOutcome(file=f, status="LOADED", rows_parsed=rows_parsed, errors_seen=errors)
            outcome.error_limit = _error_limit(plan.on_error, rows_parsed)
            if errors:
                first_row = first(
                    self.duck.execute(
                        f"SELECT error, line, character, column_name, code, row_number, row_start_line, sql_state "
                        f"FROM {errors_table(plan.catalog)} "
                        "WHERE job_id = ? AND file = ? ORDER BY line LIMIT 1",
                        [job_id, error_file(f)],
                    )
                )
                assert first_row is not None
                (
                    outcome.first_error,
                    outcome.first_error_line,
                    outcome.first_error_character,
                    outcome.first_error_column_name,
                ) = first_row[0], first_row[1], first_row[2], first_row[3]
                if plan.on_error == "ABORT_STATEMENT" and plan.validation_mode is None:
                    raise copy_error(
                        f"{first_row[0]}\n  File '{error_file(f)}', line {first_row[1]}, character {first_row[2]}\n"
                        f"  Row {first_row[5]} starts at line {first_row[6]}, column {first_row[3]}\n"
                        "  If you would like to continue loading when an error is encountered, use other values "
                        "such as 'SKIP_FILE' or 'CONTINUE' for the ON_ERROR option. For more information on "
                        "loading options, please run 'info loading_data' in a SQL client.",
                        int(first_row[4]),
                        str(first_row[7]),
                    )
            if plan.validation_mode is not None:
                return outcome
            if errors and plan.on_error.startswith("SKIP_FILE") and errors >= outcome.error_limit:
                outcome.status = "LOAD_FAILED"
                return outcome
            if inserted is not None:
                outcome.rows_loaded = inserted
            elif parsed_ok - value_errors > 0:
                res = first(self.duck.execute(insert))
                outcome.rows_loaded = int(res[0]) if res else 0
            if errors:
                outcome.status = "PARTIALLY_LOADED" if outcome.rows_loaded else "LOAD_FAILED"
            return outcome
        finally:
            for t in created:
                self.duck.execute(f"DROP TABLE IF EXISTS {t}")

    def _recover_count_mismatches(self, plan: CopyPlan, rejects: str, recovered: str) -> int:
        """Take the records DuckDB rejected only for their field count out of ``rejects`` into table ``recovered``
        (``_rn``, ``c1``..``cn``): a missing field is NULL, an extra one is dropped. Returns how many."""
        fmt = plan.fmt
        kinds = ", ".join(lit(k) for k in COUNT_MISMATCH)
        records = self.duck.execute(
            f"SELECT line, csv_line FROM {rejects} WHERE error_type::VARCHAR IN ({kinds}) ORDER BY line"
        ).fetchall()
        fields = [f"c{n}" for n in range(1, plan.n_fields + 1)]
        self.duck.execute(f"CREATE TEMP TABLE {recovered} (_rn BIGINT{''.join(f', {c} VARCHAR' for c in fields)})")
        rows = []
        for line, text in records:
            values = [_field_value(v, quoted, fmt) for v, quoted in _split_record(text or "", fmt)]
            values = (values + [None] * plan.n_fields)[: plan.n_fields]
            rows.append([int(line) - fmt.skip_header, *values])
        if rows:
            self.duck.executemany(f"INSERT INTO {recovered} VALUES ({', '.join('?' * (plan.n_fields + 1))})", rows)
            self.duck.execute(f"DELETE FROM {rejects} WHERE error_type::VARCHAR IN ({kinds})")
        return len(rows)

    def _file_failed(self, plan: CopyPlan, f: StagedFile, job_id: str, message: str) -> FileOutcome:
        self.duck.execute(
            f"INSERT INTO {errors_table(plan.catalog)} VALUES (?, ?, ?, NULL, NULL, NULL, 'parsing', 100069, '22000', NULL, NULL, "
            "NULL, NULL)",
            [job_id, message, error_file(f)],
        )
        if plan.on_error == "ABORT_STATEMENT" and plan.validation_mode is None:
            raise copy_error(message, 100069, "22000")
        return FileOutcome(file=f, status="LOAD_FAILED", errors_seen=1, first_error=message, error_limit=1)

    def _store_errors(
        self,
        plan: CopyPlan,
        f: StagedFile,
        job_id: str,
        rejects: str,
        flagged: str,
        msgs: list[tuple[str, str, str, int]],
        any_err: str,
        structural: bool,
    ) -> None:
        table = f'"{plan.table}"'
        skip = plan.fmt.skip_header
        if structural:
            cases = " ".join(f"WHEN {lit(k)} THEN {lit(v[0])}" for k, v in STRUCTURAL_ERRORS.items())
            messages = " ".join(
                f"WHEN {lit(k)} THEN {_structural_message_sql(k, v[1], plan.n_fields)}"
                for k, v in STRUCTURAL_ERRORS.items()
            )
            self.duck.execute(
                f"INSERT INTO {errors_table(plan.catalog)} SELECT {lit(job_id)}, CASE error_type::VARCHAR {messages} END, "
                f"{lit(error_file(f))}, line, (byte_position - line_byte_position) + 1, byte_position, 'parsing', "
                f"CASE error_type::VARCHAR {cases} END, '22000', "
                f"'{table}[' || coalesce(column_name, 'c' || {plan.n_fields + 1}) || ':' || "
                f"coalesce(column_idx, {plan.n_fields + 1}) || ']', "
                f"line - {skip}, line, csv_line FROM {rejects}"
            )
        first_col = "CASE " + " ".join(f"WHEN _e{i} THEN {i}" for _, _, _, i in msgs) + " END"
        message = "CASE " + " ".join(f"WHEN _e{i} THEN {m}" for (_, m, _, i) in msgs) + " END"
        col_name = "CASE " + " ".join(f"WHEN _e{i} THEN {lit(n)}" for (_, _, n, i) in msgs) + " END"
        record = (
            " || ',' || ".join(
                f"coalesce(CASE WHEN contains(c{n}, '\"') OR contains(c{n}, ',') OR contains(c{n}, chr(10)) "
                f"THEN '\"' || replace(c{n}, '\"', '\"\"') || '\"' ELSE c{n} END, '')"
                for n in range(1, plan.n_fields + 1)
            )
            or "''"
        )
        self.duck.execute(
            f"INSERT INTO {errors_table(plan.catalog)} SELECT {lit(job_id)}, {message}, {lit(error_file(f))}, _rn + {skip}, 1, NULL, "
            f"'conversion', CASE WHEN {message} LIKE 'NULL result%' THEN 100072 ELSE 100038 END, '22018', "
            f"'{table}[\"' || {col_name} || '\":' || {first_col} || ']', _rn, _rn + {skip}, {record} "
            f"FROM ({flagged}) WHERE {any_err}"
        )

    def _validation_result(self, plan: CopyPlan, job_id: str) -> tuple[list[tuple[Any, ...]], list[str]]:
        mode = plan.validation_mode or ""
        if mode.startswith("RETURN_") and mode.endswith("_ROWS"):
            raise NotImplementedError("VALIDATION_MODE=RETURN_n_ROWS")
        limit = "LIMIT 100" if mode == "RETURN_ERRORS" else ""
        rows = self.duck.execute(
            f"SELECT error, file, line, character, byte_offset, category, code, sql_state, column_name, row_number, "
            f"row_start_line, rejected_record FROM {errors_table(plan.catalog)} WHERE job_id = ? ORDER BY file, line {limit}",
            [job_id],
        ).fetchall()
        self.duck.execute(f"DELETE FROM {errors_table(plan.catalog)} WHERE job_id = ?", [job_id])
        return rows, list(VALIDATE_COLUMNS)

    def validate(self, catalog: str, job_id: str) -> list[tuple[Any, ...]]:
        self.duck.execute(tables_sql(catalog))
        job = first(self.duck.execute(f"SELECT transformed FROM {jobs_table(catalog)} WHERE job_id = ?", [job_id]))
        if job is None:
            raise copy_error(f"Invalid argument: Query id {job_id} is not a COPY INTO <table> query.", 2029, "22023")
        if job[0]:
            raise copy_error(
                "VALIDATE does not support COPY statements that transform data during a load.", 2097, "0A000"
            )
        return self.duck.execute(
            f"SELECT error, file, line, character, byte_offset, category, code, sql_state, column_name, row_number, "
            f"row_start_line, rejected_record FROM {errors_table(catalog)} WHERE job_id = ? ORDER BY file, line",
            [job_id],
        ).fetchall()


def _split_record(text: str, fmt: CsvFormat) -> list[tuple[str, bool]]:
    """A CSV record's fields, each with whether it was enclosed in quotes (``""`` inside quotes is one quote)."""
    text = text.rstrip("\r\n")
    delim, quote = fmt.delimiter, fmt.quote
    out: list[tuple[str, bool]] = []
    i = 0
    while True:
        if quote and text.startswith(quote, i):
            i += len(quote)
            value = []
            while i < len(text):
                if text.startswith(quote * 2, i):
                    value.append(quote)
                    i += 2 * len(quote)
                elif text.startswith(quote, i):
                    i += len(quote)
                    break
                else:
                    value.append(text[i])
                    i += 1
            end = text.find(delim, i)
            out.append(("".join(value), True))
        else:
            end = text.find(delim, i)
            out.append((text[i:] if end < 0 else text[i:end], False))
        if end < 0:
            return out
        i = end + len(delim)


def _field_value(text: str, quoted: bool, fmt: CsvFormat) -> str | None:
    """A field as the CSV reader gives it: NULL for a NULL_IF string or (EMPTY_FIELD_AS_NULL) an empty unquoted
    field; a quoted field is never NULL."""
    if quoted:
        return text
    if text in fmt.null_if or (text == "" and fmt.empty_field_as_null):
        return None
    return text


def _metadata_value(meta: str, f: StagedFile, scan_time: dt.datetime) -> exp.Expression:
    """A ``METADATA$...`` column of file ``f`` as a literal (or the row number column)."""
    if meta == "METADATA$FILENAME":
        return exp.Literal.string(f.filename)
    if meta == "METADATA$FILE_ROW_NUMBER":
        return exp.column("_rn")
    if meta == "METADATA$FILE_CONTENT_KEY":
        return exp.Literal.string(f.etag)
    if meta == "METADATA$FILE_LAST_MODIFIED":  # TIMESTAMP_NTZ
        modified = f.last_modified.astimezone(dt.UTC) if f.last_modified.tzinfo else f.last_modified
        return exp.cast(exp.Literal.string(modified.replace(tzinfo=None).isoformat()), "TIMESTAMP")
    if meta == "METADATA$START_SCAN_TIME":  # TIMESTAMP_LTZ
        return exp.cast(exp.Literal.string(scan_time.isoformat() + "+00:00"), "TIMESTAMPTZ")
    raise copy_error(f"SQL compilation error:\ninvalid identifier '{meta}'", 904, "42000")


def _check_transformation(select: exp.Select) -> None:
    """A COPY transformation is a SELECT list over one stage: Snowflake refuses the clauses that filter, group,
    sort, limit or join ("Transforming data during a load")."""
    for arg, clause in UNSUPPORTED_CLAUSES.items():
        if select.args.get(arg):
            raise copy_error(
                f"SQL compilation error:\n{clause} is not supported in a COPY transformation. A COPY INTO <table> "
                "can only select columns of the staged files ($n, METADATA$...) and functions of them; load into a "
                "table and filter there instead.",
                2000,
                "0A000",
            )


def _is_conversion(node: Any) -> bool:
    """An explicit conversion (``CAST``, ``::``), which fails for a value it cannot convert (not ``TRY_CAST``)."""
    return isinstance(node, exp.Cast) and not isinstance(node, exp.TryCast)


def _lenient(e: exp.Expression) -> exp.Expression:
    """``e`` with every explicit conversion as ``TRY_CAST`` (a failing one is found by :func:`_conversion_failure`
    and rejects its row, instead of failing the whole statement)."""
    return e.copy().transform(lambda n: exp.TryCast(this=n.this, to=n.to) if _is_conversion(n) else n)


def _conversion_failure(e: exp.Expression) -> str | None:
    """SQL of the message of the first explicit conversion in ``e`` that fails for the row (NULL if none fails),
    evaluating the branches of ``IFF``/``CASE`` only when taken, as Snowflake does; None if ``e`` converts nothing."""
    if not any(_is_conversion(n) for n in e.walk()):
        return None
    if _is_conversion(e):
        inner = _lenient(e.this).sql(dialect="duckdb")
        to = e.args["to"]
        own = (
            f"CASE WHEN ({inner}) IS NOT NULL AND TRY_CAST(({inner}) AS {to.sql(dialect='duckdb')}) IS NULL "
            f"THEN {_cast_message_sql(to.sql(dialect='duckdb'), f'CAST(({inner}) AS VARCHAR)')} END"
        )
        below = _conversion_failure(e.this)
        return f"coalesce({below}, {own})" if below else own
    if isinstance(e, exp.If):
        return _branches([(e.this, e.args.get("true"))], e.args.get("false"))
    if isinstance(e, exp.Case):
        operand = e.args.get("this")
        if operand is not None:  # CASE x WHEN v THEN ...: x is always evaluated
            cond_pairs: list[tuple[exp.Expression, exp.Expression | None]] = [
                (exp.EQ(this=operand.copy(), expression=i.this.copy()), i.args.get("true")) for i in e.args["ifs"]
            ]
        else:
            cond_pairs = [(i.this, i.args.get("true")) for i in e.args["ifs"]]
        return _branches(cond_pairs, e.args.get("default"))
    parts = [m for child in e.iter_expressions() if (m := _conversion_failure(child))]
    return f"coalesce({', '.join(parts)})" if len(parts) > 1 else (parts[0] if parts else None)


def _branches(pairs: list[tuple[exp.Expression, exp.Expression | None]], default: exp.Expression | None) -> str:
    """The conversion failure of a conditional: its conditions in order, then the branch taken."""
    whens = []
    for cond, value in pairs:
        if (cond_failure := _conversion_failure(cond)) is not None:
            whens.append(f"WHEN ({cond_failure}) IS NOT NULL THEN {cond_failure}")
        taken = (_conversion_failure(value) if value is not None else None) or "NULL"
        whens.append(f"WHEN {_lenient(cond).sql(dialect='duckdb')} THEN {taken}")
    otherwise = (_conversion_failure(default) if default is not None else None) or "NULL"
    return f"CASE {' '.join(whens)} ELSE {otherwise} END"


def _cast_message_sql(duck_type: str, raw_text: str) -> str:
    t = duck_type.upper()
    if t.startswith(("DECIMAL", "NUMERIC", "BIGINT", "INT", "DOUBLE", "FLOAT", "HUGEINT", "SMALLINT", "TINYINT")):
        kind = "Numeric value"
    elif t.startswith("TIMESTAMP"):
        kind = "Timestamp"
    elif t == "DATE":
        kind = "Date"
    elif t == "BOOLEAN":
        kind = "Boolean value"
    else:
        kind = "Value"
    range_hint = ""
    if t.startswith("DECIMAL"):
        # a number that parses but does not fit the column's precision
        range_hint = (
            f"CASE WHEN TRY_CAST({raw_text} AS DOUBLE) IS NOT NULL THEN "
            f"'Numeric value ''' || {raw_text} || ''' is out of range' ELSE NULL END"
        )
    base = f"'{kind} ''' || {raw_text} || ''' is not recognized'"
    return f"coalesce({range_hint}, {base})" if range_hint else base


def _structural_message_sql(kind: str, template: str, expected: int) -> str:
    if "{found}" in template:
        # DuckDB reports "Expected Number of Columns: 4 Found: 3"
        found = "regexp_extract(error_message, 'Found: (\\d+)', 1)"
        head, _, tail = template.partition("{found}")
        tail = tail.replace("{expected}", str(expected))
        return f"{lit(head)} || {found} || {lit(tail)}"
    if kind == "INVALID ENCODING":
        return f"{lit(template)} || ' ''' || coalesce(csv_line, '') || ''''"
    return lit(template)


def _error_limit(on_error: str, rows_parsed: int) -> int:
    if on_error == "CONTINUE":
        return rows_parsed
    m = re.fullmatch(r"SKIP_FILE_(\d+)(%?)", on_error)
    if m:
        n = int(m.group(1))
        return max(1, math.ceil(rows_parsed * n / 100)) if m.group(2) else n
    return 1


def _file_error_message(f: StagedFile, e: Exception) -> str:
    text = str(e).split("\n")[0]
    if f.relative.endswith(".gz") and ("gzip" in text.lower() or "compress" in text.lower() or "eof" in text.lower()):
        return f"Invalid data encountered during decompression for file: '{error_file(f)}',compression type used: 'GZIP', cause: '{text}'"
    return f"Error parsing file '{error_file(f)}': {text}"


def _check_gzip(f: StagedFile) -> None:
    """Snowflake refuses a corrupt or truncated gzip file as a whole; DuckDB's reader reports a truncated file but
    reads one with corrupt data in the middle without an error (and loses rows), so every gzip file is checked."""
    from pathlib import Path

    from isal import igzip, isal_zlib  # ISA-L: the same check at about three times zlib's speed

    if not Path(f.read_path).is_file():
        return
    try:
        with igzip.open(f.read_path, "rb") as g:
            while g.read(8 << 20):
                pass
    except (OSError, EOFError, isal_zlib.error) as e:  # type: ignore[misc]  # IsalError is an Exception
        raise FileReadError(
            f"Invalid data encountered during decompression for file: '{error_file(f)}', compression type used: "
            f"'GZIP', cause: '{e}'"
        ) from None


def _internal_name(f: StagedFile) -> str:
    path = f.read_path
    if fs_stage.is_internal(path):
        return fs_stage.internal_file_name(path)
    return f.url


def error_file(f: StagedFile) -> str:
    """The ``FILE`` of a rejected row (VALIDATE, VALIDATION_MODE) and the file an error message names: for an
    external stage the object's path in its bucket, as ``METADATA$FILENAME`` (Snowflake's errors say
    ``File 'challenge_1/1.csv'`` for a stage on ``s3://bucket/challenge_1/``); for an internal stage the name LIST
    shows (``mystage/data.csv``), as VALIDATE's ``mycsvtable/contacts3.csv.gz`` in Snowflake's tutorial."""
    return f.filename if stages.is_external(f.url) else _internal_name(f)


def now() -> dt.datetime:
    """The emulator's clock (naive UTC)."""
    return clock.now_utc()


def result_json(rows: list[tuple[Any, ...]], columns: list[str]) -> str:
    return json.dumps([dict(zip(columns, r, strict=True)) for r in rows], default=str)
