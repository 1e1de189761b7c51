"""The emulator's clock and each session's time zone.

Snowflake evaluates ``CURRENT_TIMESTAMP()`` (and its synonyms) once per statement, as a ``TIMESTAMP_LTZ`` shown in
the session's ``TIMEZONE`` (default ``America/Los_Angeles``), so ``CURRENT_TIMESTAMP()::TIMESTAMP_NTZ`` is the
session's local wall-clock time, not UTC; ``SYSDATE()`` is the current UTC time as a ``TIMESTAMP_NTZ``. The emulator
replaces these functions by literals before a statement runs (:func:`rewrite`), taking the time from one process
clock (:func:`now_utc`) that tests may set (``SELECT SYSTEM$EMULATOR_SET_CLOCK('2026-11-01 08:50:00')``, see
:func:`set_clock`): every session, procedure and COPY then sees the same, controllable time.

A session's ``TIMEZONE`` is kept on its fakesnow connection (:func:`session_timezone`); its DuckDB connection's
``TimeZone`` follows it, so casting a ``TIMESTAMP_LTZ`` to ``TIMESTAMP_NTZ`` gives that zone's wall-clock time.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
import zoneinfo
from typing import Any, TypeVar, cast

import snowflake.connector.errors
from sqlglot import exp

DEFAULT_TIMEZONE = "America/Los_Angeles"  # Snowflake's default for the TIMEZONE parameter

_lock = threading.Lock()
_anchor: tuple[dt.datetime, float] | None = None  # (the instant set, time.monotonic() when it was set)

# expressions evaluated each time they are used, not when the statement that defines them runs
_DEFERRED_CREATE_KINDS = {"VIEW", "FUNCTION", "PROCEDURE", "TASK", "MATERIALIZED VIEW"}


def now_utc() -> dt.datetime:
    """The current time (naive, UTC), running on in real time from the instant set by :func:`set_clock`."""
    with _lock:
        anchor = _anchor
    if anchor is None:
        return dt.datetime.now(dt.UTC).replace(tzinfo=None)
    instant, since = anchor
    return instant + dt.timedelta(seconds=time.monotonic() - since)


def set_clock(instant: dt.datetime | None) -> None:
    """Make the emulator's clock read ``instant`` (naive UTC) now and run on from it; None: the real clock again."""
    global _anchor
    with _lock:
        _anchor = None if instant is None else (instant, time.monotonic())


def parse_instant(text: str) -> dt.datetime:
    """``'2026-11-01 08:50:00'`` (a UTC instant; an explicit offset is honoured) as a naive UTC datetime."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise snowflake.connector.errors.ProgrammingError(
            msg=f"Timestamp '{text}' is not recognized: SYSTEM$EMULATOR_SET_CLOCK takes 'YYYY-MM-DD HH:MI:SS' (UTC).",
            errno=100035,
            sqlstate="22007",
        ) from None
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def check_timezone(name: str) -> str:
    """``name`` if it is a time zone Snowflake accepts (an IANA name), else Snowflake's error for the parameter."""
    candidate = name.strip()
    try:
        if not candidate or not re.fullmatch(r"[A-Za-z0-9_+\-/]+", candidate):
            raise ValueError(candidate)
        zoneinfo.ZoneInfo(candidate)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise snowflake.connector.errors.ProgrammingError(
            msg=f"invalid value ['{name}'] for parameter 'TIMEZONE'", errno=2153, sqlstate="22023"
        ) from None
    return candidate


def session_timezone(conn: Any) -> str:
    """The ``TIMEZONE`` of a fakesnow connection (a session): what it set, or Snowflake's default."""
    value = getattr(conn, "timezone", None)
    return value if isinstance(value, str) and value else DEFAULT_TIMEZONE


def set_session_timezone(conn: Any, name: str | None) -> str:
    """Set (None: reset to the default) a session's ``TIMEZONE`` and its DuckDB connection's ``TimeZone``."""
    zone = DEFAULT_TIMEZONE if name is None else check_timezone(name)
    conn.timezone = zone
    conn._duck_conn.execute(f"SET SESSION TimeZone = '{zone}'")
    return zone


def _literal(value: str, type_name: str) -> exp.Expression:
    return exp.Cast(this=exp.Literal.string(value), to=exp.DataType.build(type_name, dialect="snowflake"))


def _precision(node: exp.Expr) -> int:
    """The fractional digits asked for (``CURRENT_TIMESTAMP(3)``), 9 by default (microseconds are kept)."""
    arg = node.args.get("this")
    if isinstance(arg, exp.Literal) and not arg.is_string:
        return max(0, min(9, int(arg.this)))
    return 9


def _fraction(value: dt.datetime | dt.time, digits: int) -> str:
    micro = f"{value.microsecond:06d}"[: min(digits, 6)]
    return f".{micro}" if micro else ""


def _deferred(node: exp.Expr) -> bool:
    """Whether ``node`` is evaluated later than the statement that contains it: a column default, or the body of a
    view, function, procedure or task."""
    parent = node.parent
    while parent is not None:
        if isinstance(parent, exp.ColumnDef | exp.ColumnConstraint):
            return True
        if isinstance(parent, exp.Create) and str(parent.args.get("kind") or "").upper() in _DEFERRED_CREATE_KINDS:
            return True
        parent = parent.parent
    return False


_CLOCK_NODES = (
    exp.CurrentTimestamp,
    exp.CurrentTimestampLTZ,
    exp.Localtimestamp,
    exp.CurrentDate,
    exp.CurrentTime,
    exp.Localtime,
)


_E = TypeVar("_E", bound=exp.Expr)


def rewrite(expression: _E, timezone: str) -> _E:
    """``expression`` with ``CURRENT_TIMESTAMP``/``LOCALTIMESTAMP``/``SYSTIMESTAMP``/``GETDATE`` (``TIMESTAMP_LTZ`` in
    ``timezone``), ``SYSDATE`` (UTC ``TIMESTAMP_NTZ``), ``CURRENT_DATE`` and ``CURRENT_TIME`` (in ``timezone``)
    replaced by literals of the emulator's clock, one instant for the whole expression. Column defaults and view
    bodies are left alone (they are evaluated when used)."""
    utc = now_utc()
    local = utc.replace(tzinfo=dt.UTC).astimezone(zoneinfo.ZoneInfo(timezone))

    def swap(node: exp.Expr) -> exp.Expr:
        if not isinstance(node, _CLOCK_NODES) or _deferred(node):
            return node
        if isinstance(node, exp.CurrentTimestamp) and node.args.get("sysdate"):
            return _literal(utc.strftime("%Y-%m-%d %H:%M:%S") + _fraction(utc, 9), "TIMESTAMP_NTZ")
        if isinstance(node, exp.CurrentDate):
            return _literal(local.strftime("%Y-%m-%d"), "DATE")
        if isinstance(node, exp.Localtime | exp.CurrentTime):
            return _literal(local.strftime("%H:%M:%S") + _fraction(local, _precision(node)), "TIME")
        offset = local.strftime("%z")
        text = local.strftime("%Y-%m-%d %H:%M:%S") + _fraction(local, _precision(node))
        return _literal(f"{text}{offset[:3]}:{offset[3:]}", "TIMESTAMP_LTZ")

    return cast(_E, expression.transform(swap))


FUNCTIONS_RX = re.compile(
    r"\b(CURRENT_TIMESTAMP|LOCALTIMESTAMP|SYSTIMESTAMP|GETDATE|SYSDATE|CURRENT_DATE|CURRENT_TIME|LOCALTIME)\b",
    re.IGNORECASE,
)
"""Statements that may need :func:`rewrite` (a cheap test before parsing)."""


def install_epoch_conversion() -> None:
    """``TO_TIMESTAMP_NTZ(<seconds since the epoch>)`` (and ``TO_TIMESTAMP``) is that instant's UTC wall-clock time,
    whatever the session's TIMEZONE (https://docs.snowflake.com/en/sql-reference/functions/to_timestamp). fakesnow's
    macro casts DuckDB's TIMESTAMP WITH TIME ZONE to TIMESTAMP, which DuckDB does in the connection's time zone, the
    session's here: convert at UTC instead. Runs before any database's macros are created."""
    from string import Template

    from fakesnow import macros

    template = macros.FS_TO_TIMESTAMP.template
    fixed = re.sub(r"cast\((to_timestamp\([^)]*\)) as TIMESTAMP\)", r"(\1 AT TIME ZONE 'UTC')", template)
    if fixed != template:
        macros.FS_TO_TIMESTAMP = Template(fixed)
