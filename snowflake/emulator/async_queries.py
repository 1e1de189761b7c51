"""Statements answered the way Snowflake answers them: at once if they are quick, else "in progress" and polled.

Snowflake does not hold a query request open while a statement runs: after a few seconds it answers
``333333`` (query in progress) with a ``getResultUrl``, and the connector polls that URL until the result is there
(``snowflake/connector/network.py``). A request sent with ``asyncExec`` (``cursor.execute_async``) is answered
``333334`` at once; the client then polls ``/monitoring/queries/<id>`` (RUNNING, then SUCCESS or
FAILED_WITH_ERROR) and reads the result with ``RESULT_SCAN('<id>')``. Holding the request open instead makes the
connector time out and send the same statement again after about a minute: a long ``CALL`` would run twice.

Here every statement runs once, as an asyncio task over fakesnow's query handler; the request waits for it at most
``SNOWFLAKE_EMULATOR_RESULT_WAIT`` seconds (default 5), and so does each poll of the result URL. A retry of a
request (same ``requestId`` in the same session) attaches to the statement already running rather than running it
again, as in Snowflake.

Also: an unexpected failure is never an HTTP 500 (the connector retries those for minutes) but a Snowflake error,
``000603`` "SQL execution internal error"; and each answer reports the session's ``TIMEZONE``, which the connector
uses to show ``TIMESTAMP_LTZ`` values.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import fakesnow.server as fs_server

from . import clock

log = logging.getLogger("snowflake.emulator")

QUERY_IN_PROGRESS = "333333"
QUERY_IN_PROGRESS_ASYNC = "333334"
INTERNAL_ERROR = ("000603", "XX000")
KEEP_SECONDS = 3600.0  # how long a finished statement's answer stays available to pollers
RETRY_SECONDS = 300.0  # how long a statement answered at once is remembered for a retry of its request
DEFAULT_WAIT = 5.0


def result_wait() -> float:
    """Seconds a request waits for its statement before answering "in progress" (``SNOWFLAKE_EMULATOR_RESULT_WAIT``,
    default 5: well under the connector's 60-second socket timeout)."""
    try:
        return max(0.0, float(os.environ.get("SNOWFLAKE_EMULATOR_RESULT_WAIT", DEFAULT_WAIT)))
    except ValueError:
        return DEFAULT_WAIT


@dataclass
class Job:
    """One statement: its query id (the one clients see once it is reported in progress) and its task."""

    query_id: str
    token: str
    request_id: str | None
    task: asyncio.Task[Any]
    reported: bool = False
    finished_at: float | None = None
    answer: dict[str, Any] | None = field(default=None, repr=False)


_JOBS: dict[str, Job] = {}
_BY_REQUEST: dict[tuple[str, str], str] = {}


def _prune() -> None:
    """Forget finished statements: after KEEP_SECONDS those a client was told to poll for, after RETRY_SECONDS the
    others (long enough to recognise a retried request)."""
    now = time.monotonic()
    for qid, job in list(_JOBS.items()):
        keep = KEEP_SECONDS if job.reported else RETRY_SECONDS
        if job.finished_at is not None and job.finished_at < now - keep:
            del _JOBS[qid]
            if job.request_id:
                _BY_REQUEST.pop((job.token, job.request_id), None)


def error_body(message: str, code: str = INTERNAL_ERROR[0], sqlstate: str = INTERNAL_ERROR[1]) -> dict[str, Any]:
    """A Snowflake error answer (HTTP 200, ``success`` false), as the connector expects one."""
    return {
        "data": {"errorCode": code, "sqlState": sqlstate},
        "code": code,
        "message": message,
        "success": False,
        "headers": None,
    }


async def _json_body(request: Any) -> dict[str, Any]:
    raw = await request.body()  # starlette keeps it: fakesnow's handler reads it again
    if request.headers.get("Content-Encoding") == "gzip":
        raw = gzip.decompress(raw)
    body = json.loads(raw)
    return body if isinstance(body, dict) else {}


async def _execute(request: Any, conn: Any) -> dict[str, Any]:
    """Run the statement with fakesnow's handler; its answer as JSON, every failure a Snowflake error."""
    try:
        response = await fs_server.query_request(request)
    except Exception as e:  # fakesnow converts results after its own error handling
        log.exception("emulator error answering a query")
        return error_body(f"SQL execution internal error:\nProcessing aborted due to error 300002: {type(e).__name__}")
    body = json.loads(bytes(response.body))
    if response.status_code >= 500 or not isinstance(body, dict):
        return error_body(
            "SQL execution internal error:\nProcessing aborted due to error 300002; the emulator's log says why."
        )
    data = body.get("data")
    if isinstance(data, dict) and isinstance(data.get("parameters"), list):
        zone = clock.session_timezone(conn)
        data["parameters"] = [p for p in data["parameters"] if p.get("name") != "TIMEZONE"]
        data["parameters"].append({"name": "TIMEZONE", "value": zone})
    return body


def _finished(job: Job, task: asyncio.Task[Any]) -> None:
    job.finished_at = time.monotonic()
    if task.cancelled():
        job.answer = error_body("SQL execution canceled", "000604", "57014")
        return
    answer = task.result()
    data = answer.get("data") if isinstance(answer, dict) else None
    if isinstance(data, dict) and data.get("queryId") and data["queryId"] != job.query_id:
        # the statement's result is also found under the id the client was given (RESULT_SCAN, monitoring)
        cache = fs_server.sessions[job.token].results_cache if job.token in fs_server.sessions else None
        if cache is not None and data["queryId"] in cache:
            cache[job.query_id] = cache[data["queryId"]]
    job.answer = answer


def _start(request: Any, token: str, conn: Any, request_id: str | None) -> Job:
    _prune()
    task = asyncio.get_running_loop().create_task(_execute(request, conn))
    job = Job(str(uuid.uuid4()), token, request_id, task)
    task.add_done_callback(lambda t: _finished(job, t))
    _JOBS[job.query_id] = job
    if request_id:
        _BY_REQUEST[(token, request_id)] = job.query_id
    return job


def _in_progress(job: Job, code: str) -> dict[str, Any]:
    job.reported = True
    message = (
        "Asynchronous execution in progress. Use provided query id to perform query monitoring and management."
        if code == QUERY_IN_PROGRESS_ASYNC
        else "Query execution in progress. Query will be resumed as soon as possible."
    )
    return {
        "data": {"queryId": job.query_id, "getResultUrl": f"/queries/{job.query_id}/result"},
        "code": code,
        "message": message,
        "success": True,
    }


def _final(job: Job) -> dict[str, Any]:
    answer = dict(job.answer or error_body("SQL execution internal error: no answer"))
    data = answer.get("data")
    if job.reported and isinstance(data, dict) and data.get("queryId"):
        answer["data"] = {**data, "queryId": job.query_id}  # the id the client was given
    return answer


async def _answer(job: Job) -> dict[str, Any]:
    """The statement's answer if it finishes within the wait, else "in progress" (the client polls again)."""
    await asyncio.wait({job.task}, timeout=result_wait())
    if not job.task.done():
        return _in_progress(job, QUERY_IN_PROGRESS)
    await asyncio.sleep(0)  # let the done callback record the answer
    if job.answer is None:
        _finished(job, job.task)
    return _final(job)


def _session(request: Any) -> tuple[str, Any] | None:
    try:
        token = fs_server.to_token(request)
        return token, fs_server.to_conn(token)
    except fs_server.ServerError:
        return None


def _unauthorised(request: Any) -> Any:
    from starlette.responses import JSONResponse

    try:
        fs_server.to_conn(fs_server.to_token(request))
    except fs_server.ServerError as e:
        return JSONResponse(error_body(e.message, e.code, "08001"), status_code=e.status_code)
    return JSONResponse(error_body("session not found", "390104", "08001"), status_code=401)


async def query_request(request: Any) -> Any:
    """``POST /queries/v1/query-request``."""
    from starlette.responses import JSONResponse

    session = _session(request)
    if session is None:
        return _unauthorised(request)
    token, conn = session
    try:
        body = await _json_body(request)
    except ValueError:
        return JSONResponse(error_body("SQL compilation error:\nthe request body is not JSON", "001003", "42000"))
    request_id = request.query_params.get("requestId")
    existing = _BY_REQUEST.get((token, request_id)) if request_id else None
    job = _JOBS[existing] if existing in _JOBS else _start(request, token, conn, request_id)
    if body.get("asyncExec"):
        return JSONResponse(_in_progress(job, QUERY_IN_PROGRESS_ASYNC))
    return JSONResponse(await _answer(job))


async def query_result(request: Any) -> Any:
    """``GET /queries/<id>/result``: the answer once the statement finished (waiting at most the result wait)."""
    from starlette.responses import JSONResponse

    if _session(request) is None:
        return _unauthorised(request)
    job = _JOBS.get(request.path_params["sfqid"])
    if job is None:
        return JSONResponse(error_body(f"Statement {request.path_params['sfqid']} not found", "000709", "02000"))
    return JSONResponse(await _answer(job))


async def monitoring_query(request: Any) -> Any:
    """``GET /monitoring/queries/<id>``: RUNNING, SUCCESS or FAILED_WITH_ERROR (with the error)."""
    from starlette.responses import JSONResponse

    session = _session(request)
    if session is None:
        return _unauthorised(request)
    qid = request.path_params["sfqid"]
    job = _JOBS.get(qid)
    if job is None:
        known = qid in session[1].results_cache
        return JSONResponse({"data": {"queries": [{"id": qid, "status": "SUCCESS"}] if known else []}, "success": True})
    if not job.task.done() or job.answer is None:
        return JSONResponse({"data": {"queries": [{"id": qid, "status": "RUNNING"}]}, "success": True})
    answer = job.answer
    if answer.get("success"):
        return JSONResponse({"data": {"queries": [{"id": qid, "status": "SUCCESS"}]}, "success": True})
    failed = {
        "id": qid,
        "status": "FAILED_WITH_ERROR",
        "errorCode": answer.get("code"),
        "errorMessage": answer.get("message"),
    }
    return JSONResponse(
        {"data": {"queries": [failed], "sqlState": (answer.get("data") or {}).get("sqlState")}, "success": True}
    )


def routes() -> list[Any]:
    """Starlette routes replacing fakesnow's query request and monitoring, plus the result URL."""
    from starlette.routing import Route

    return [
        Route("/queries/v1/query-request", query_request, methods=["POST"]),
        Route("/queries/{sfqid}/result", query_result, methods=["GET"]),
        Route("/monitoring/queries/{sfqid}", monitoring_query, methods=["GET"]),
    ]
