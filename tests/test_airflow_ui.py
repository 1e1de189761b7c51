"""`make airflow`: the Airflow UI and API on 127.0.0.1, driven through the REST API as an operator would. While it
runs the DAG, every process it starts is watched: no secret on any command line, every server on 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from netflix_elt.generate import generate
from netflix_elt.stack import port_open
from tests.conftest import REPO, free_port, start_make_airflow
from tests.processes import (
    AIRFLOW_COMPONENTS,
    Watcher,
    airflow_secrets,
    contains_args,
    listening_beyond_loopback,
    mode,
    read_env_file,
    secrets_on_command_lines,
)

pytestmark = pytest.mark.slow(minutes=4)

DAG_ID = "full_netflix_pipeline"


class Api:
    def __init__(self, base: str) -> None:
        self.base = base
        self.token: str | None = None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, method=method, data=data, headers=headers)
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def wait(self, method: str, path: str, timeout: float, ok: Any = None) -> Any:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = self.call(method, path)
                if ok is None or ok(value):
                    return value
            except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
                last = e
            time.sleep(2)
        raise AssertionError(f"{method} {path} not ready after {timeout:.0f} s (last error: {last})")


@pytest.mark.timeout(1500)  # waits up to 300 + 180 + 900 s; make test's parallel workers share the cores
def test_make_airflow_serves_the_ui_runs_the_dag_and_leaks_nothing(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    generate(landing, scale="tiny", seed=11)
    proc, env, out = start_make_airflow(
        tmp_path,
        landing,
        # the log servers of the scheduler and the triggerer, on ports of this test's own
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
    )
    port = int(env["NETFLIX_ELT_AIRFLOW_PORT"])
    api = Api(f"http://127.0.0.1:{port}")
    stack_dir = tmp_path / "stack"
    home = stack_dir / "airflow"

    def servers() -> list[int]:
        pids = []
        for name in ("s3.pid", "snowflake.pid"):
            with contextlib.suppress(OSError, ValueError):
                pids.append(int((stack_dir / name).read_text()))
        return pids

    watcher = Watcher([proc.pid], servers).__enter__()
    try:
        try:
            health = api.wait("GET", "/api/v2/monitor/health", 300, ok=lambda h: h["scheduler"]["status"] == "healthy")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{out.read_text()[-4000:]}") from None
        assert health["metadatabase"]["status"] == "healthy"
        # the login printed for the user is the one that works
        printed = out.read_text()
        password = json.loads((tmp_path / "stack" / "airflow" / "passwords.json").read_text())["admin"]
        assert f"user admin, password {password}" in printed
        with pytest.raises(urllib.error.HTTPError) as denied:
            api.call("GET", f"/api/v2/dags/{DAG_ID}")
        assert denied.value.code == 401
        api.token = api.call("POST", "/auth/token", {"username": "admin", "password": password})["access_token"]

        dag = api.wait("GET", f"/api/v2/dags/{DAG_ID}", 180)
        assert dag["is_paused"] is True  # new DAGs start paused; Trigger in the UI offers "Unpause on trigger"
        tasks = api.call("GET", f"/api/v2/dags/{DAG_ID}/tasks")["tasks"]
        assert {"upload_landed_files", "run_db_raw_ingestion"} <= {t["task_id"] for t in tasks}

        # trigger the run for today's schedule (so unpausing does not add a second, scheduled run), then unpause
        today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        run = api.call("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": today.isoformat()})
        api.call("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        run_path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}"
        done = api.wait("GET", run_path, 900, ok=lambda r: r["state"] in {"success", "failed"})
        if done["state"] != "success":
            tis = api.call("GET", f"{run_path}/taskInstances?limit=100")["task_instances"]
            bad = {t["task_id"]: t["state"] for t in tis if t["state"] != "success"}
            raise AssertionError(f"DAG run {done['state']}: {bad}")

        tis = api.call("GET", f"{run_path}/taskInstances?limit=100")["task_instances"]
        assert len(tis) == len(tasks) and all(t["state"] == "success" for t in tis)
        xcom = api.call("GET", f"{run_path}/taskInstances/run_db_raw_ingestion/xcomEntries/return_value")
        summary = xcom["value"] if isinstance(xcom["value"], dict) else json.loads(xcom["value"])
        assert summary["status"] == "SUCCESS" and summary["totals"]["loaded"] == 6, summary
        runs = api.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns")["dag_runs"]
        assert [r["dag_run_id"] for r in runs] == [run["dag_run_id"]]
        secrets = {
            **{f"stack {k}": v for k, v in read_env_file(stack_dir / "credentials.env").items()},
            **airflow_secrets(home),
        }
    finally:
        watcher.__exit__()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal that runs `make airflow`
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
        finally:
            subprocess.run(
                [sys.executable, "-m", "netflix_elt", "down"], env=env, cwd=REPO, capture_output=True, timeout=60
            )
    deadline = time.monotonic() + 30
    while port_open(port) and time.monotonic() < deadline:
        time.sleep(1)
    assert not port_open(port), "Airflow still serves after Ctrl-C"
    leftovers = subprocess.run(["pgrep", "-f", f"port:{port}"], capture_output=True, text=True).stdout
    assert not leftovers.strip(), leftovers

    # nothing leaked while it ran: every component, every task process (the uploader, the load, dbt) was watched
    seen = watcher.seen
    commands = [line.split("\0") for s in seen.values() for line in s.cmdline.split("\n")]
    for component in (["serve", "s3"], ["snowflake.emulator"], *[[c] for c in AIRFLOW_COMPONENTS]):
        assert any(contains_args(c, component) for c in commands), f"{component} was not watched: {commands}"
    problems = secrets_on_command_lines(seen, secrets) + listening_beyond_loopback(seen)
    assert not problems, "\n".join(problems)
    # every server was seen listening: the API server, the log servers, the S3 server, the emulator
    listening = {address for s in seen.values() for address in s.listening}
    for name in (
        "NETFLIX_ELT_AIRFLOW_PORT",
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT",
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT",
        "NETFLIX_ELT_S3_PORT",
        "NETFLIX_ELT_SNOWFLAKE_PORT",
    ):
        assert ("127.0.0.1", int(env[name])) in listening, (name, sorted(listening))
    assert mode(stack_dir) == 0o700
    assert mode(stack_dir / "credentials.env") == 0o600
    assert mode(home / "passwords.json") == 0o600
    assert mode(home / "airflow.cfg") & 0o077 == 0
