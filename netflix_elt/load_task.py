"""The DAG's load step: ``CALL RAW.LOAD_RAW_FILES`` through Airflow's ``SQLExecuteQueryOperator``, and its gate.

The operator runs the CALL with AUTOCOMMIT on. ``SQLExecuteQueryOperator`` defaults to ``autocommit=False``, and
``SnowflakeHook.run`` then turns the session's AUTOCOMMIT off; a stored procedure whose statements begin a
transaction in such a session fails on Snowflake with "Scoped transaction started in stored procedure is
incomplete and it was rolled back" (see snowflake/emulator/FIDELITY.md).

The gate (:func:`load_summary_handler`) reads the procedure's JSON summary and stops the DAG before dbt when a file
failed, when too many rows were rejected (no retry: retrying cannot fix the data), or when files were held by
another CALL or not completely staged (status WAITING: retried, since that clears by itself).
"""

from __future__ import annotations

import json
import os
from typing import Any

from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook
from airflow.sdk.exceptions import AirflowException, AirflowFailException

# FILES is an ARRAY parameter: the JSON list of keys is parsed and cast, so the argument has the parameter's type
LOAD_SQL = "CALL RAW.LOAD_RAW_FILES(PARSE_JSON(%(files)s)::ARRAY, FALSE, NULL, FALSE)"
MAX_REJECTED_SHARE_DEFAULT = "0.01"


class SnowflakeHookWithProtocol(SnowflakeHook):
    """SnowflakeHook that also passes the connection's ``protocol`` extra to the connector (the provider passes
    host and port but not protocol, which the local emulator, served over http, needs). Real accounts: unchanged."""

    def _get_conn_params(self) -> dict[str, Any]:
        params: dict[str, Any] = dict(super()._get_conn_params())
        extra = self.get_connection(self.get_conn_id()).extra_dejson
        if extra.get("protocol"):
            params["protocol"] = extra["protocol"]
            params.setdefault("network_timeout", 3600)
        return params


class LoadRawFilesOperator(SQLExecuteQueryOperator):
    """``CALL RAW.LOAD_RAW_FILES(<files>)`` on SnowflakeHookWithProtocol, with AUTOCOMMIT on and the summary gate.
    ``files``: a templated JSON list of stage keys (an empty list: every staged file not loaded yet)."""

    def __init__(self, *, conn_id: str, files: str, **kwargs: Any) -> None:
        kwargs.setdefault("handler", load_summary_handler)
        kwargs.setdefault("autocommit", True)
        super().__init__(conn_id=conn_id, sql=LOAD_SQL, parameters={"files": files}, **kwargs)

    @classmethod
    def get_hook(cls, conn_id: str, hook_params: dict | None = None) -> SnowflakeHookWithProtocol:
        return SnowflakeHookWithProtocol(snowflake_conn_id=conn_id, **(hook_params or {}))


def load_summary_handler(cursor: Any) -> dict[str, Any]:
    """The procedure's JSON summary (to XCom). Raises, with one readable line, when a file failed to load or too
    many rows were rejected (no retry), or when files are still held or incompletely staged (retried)."""
    value = cursor.fetchone()[0]
    summary: dict[str, Any] = json.loads(value) if isinstance(value, str) else value
    return check_summary(summary)


def check_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The gate on a load summary (see :func:`load_summary_handler`)."""
    totals = summary.get("totals", {})
    max_share = float(os.environ.get("NETFLIX_ELT_MAX_REJECTED_SHARE", MAX_REJECTED_SHARE_DEFAULT))
    parsed = totals.get("rows_parsed", 0) or 0
    rejected = totals.get("rows_rejected", 0) or 0
    if totals.get("failed"):
        raise AirflowFailException(f"load failed: {summary.get('message')}")
    if parsed and rejected / parsed > max_share:
        raise AirflowFailException(
            f"load rejected {rejected:,} of {parsed:,} rows ({rejected / parsed:.1%}), above the allowed "
            f"{max_share:.1%} (NETFLIX_ELT_MAX_REJECTED_SHARE); see RAW.LOAD_REJECTS for load {summary.get('load_id')}"
        )
    if summary.get("status") == "WAITING":
        raise AirflowException(f"load incomplete, dbt not run yet (the task is retried): {summary.get('message')}")
    return summary
