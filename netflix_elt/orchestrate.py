"""Run the Airflow DAG ``full_netflix_pipeline`` against the pipeline's target, from the command line.

    netflix-elt run              # the local stack, then one run of the DAG (``dag.test()``, as ``airflow dags test``)
    netflix-elt airflow          # the Airflow UI and scheduler on 127.0.0.1, connections pointing at the local stack

Airflow keeps its state under the stack directory (``.stack/airflow``: SQLite metadata database, task logs,
generated admin password). Its connections ``snowflake_default`` and ``aws_default`` come from the environment
(``AIRFLOW_CONN_*``): for the local stack they are derived from its generated credentials, or from the key pair
in ``SNOWFLAKE_PRIVATE_KEY_PATH`` (extra ``private_key_file``, passphrase in the password field, as the Snowflake
provider reads them); for a real account, set them yourself (see the README) and nothing here overrides them.

Nothing leaks to other local users. Airflow's folder is private to its owner (mode 0700) and the password file has
mode 0600 from the moment it is created (``airflow.cfg``, with the fernet key and JWT secret, Airflow makes 0600
itself). Connections and passwords reach Airflow through the environment and files, never a command line. Every
server ``netflix-elt airflow`` starts listens on 127.0.0.1 only: the API server with the UI, and the log servers of
the scheduler and the triggerer (Airflow 3.3 has no setting for their address and binds them to every interface;
the generated ``airflow_local_settings.py`` binds them to 127.0.0.1, and makes it the host name Airflow looks for
them at).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Settings
from .pipeline import REPO, is_local, target_env
from .stack import LocalStack, StackError, make_private, private_dir, write_private_file

DAG_ID = "full_netflix_pipeline"
DAGS_FOLDER = REPO / "dags"
DBT_PROJECT = REPO / "netflix_dbt"
ADMIN_USER = "admin"


def airflow_home(settings: Settings) -> Path:
    return Path(os.environ.get("AIRFLOW_HOME") or settings.stack_dir / "airflow")


def airflow_env(settings: Settings | None = None, landing: Path | None = None) -> dict[str, str]:
    """Environment for Airflow processes: the target's settings, Airflow's home and configuration, and (local stack)
    the connections ``snowflake_default`` and ``aws_default``."""
    settings = settings or Settings.from_env()
    env = target_env(settings)
    home = airflow_home(settings)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "AIRFLOW__COSMOS__CACHE_DIR": str(home / "cosmos"),
        }
    )
    env.setdefault("NETFLIX_ELT_DBT_MANIFEST", str(DBT_PROJECT / "target" / "manifest.json"))
    if landing is not None:
        env["NETFLIX_ELT_LANDING_DIR"] = str(landing.resolve())
    if is_local():
        stack = LocalStack(settings)
        creds = stack.env()
        login = stack.client_auth()
        extra: dict[str, Any] = {
            "account": creds["SNOWFLAKE_ACCOUNT"],
            "host": "127.0.0.1",
            "port": settings.snowflake_port,
            "protocol": "http",
            "database": settings.database,
            "warehouse": settings.warehouse,
        }
        if "role" in login:
            extra["role"] = login["role"]
        if "private_key_file" in login:
            # key pair: the Snowflake provider (and Cosmos) read the key's passphrase from the password field
            extra["private_key_file"] = login["private_key_file"]
            password = login.get("private_key_file_pwd", "")
        else:
            password = login["password"]
        env["AIRFLOW_CONN_SNOWFLAKE_DEFAULT"] = json.dumps(
            {"conn_type": "snowflake", "login": login["user"], "password": password, "extra": extra}
        )
        env["AIRFLOW_CONN_AWS_DEFAULT"] = json.dumps(
            {
                "conn_type": "aws",
                "login": creds["AWS_ACCESS_KEY_ID"],
                "password": creds["AWS_SECRET_ACCESS_KEY"],
                "extra": {"endpoint_url": settings.s3_endpoint, "region_name": "us-east-1"},
            }
        )
    return env


LOCAL_SETTINGS = '''"""Airflow local settings written by netflix-elt (see netflix_elt/orchestrate.py).

In the scheduler, import dbt and its Snowflake adapter once: LocalExecutor forks every task process from the
scheduler, so dbt tasks then start without importing them again (about 5 s saved per dbt task).

The log servers of the scheduler (task logs, [logging] worker_log_server_port) and of the triggerer
([logging] trigger_log_server_port) listen on 127.0.0.1: Airflow 3.3 has no setting for their address and binds
them to every interface. The API server finds them there: `loopback_hostname` is [core] hostname_callable, the
host name every component records for itself.
"""

import sys

LOG_SERVER_APP = "airflow.utils.serve_logs.log_server:get_app"


def loopback_hostname() -> str:
    return "127.0.0.1"


if sys.argv[1:2] in (["scheduler"], ["triggerer"]):
    import uvicorn

    _uvicorn_run = uvicorn.run

    def _run_on_loopback(app, *args, **kwargs):
        if app == LOG_SERVER_APP:
            kwargs["host"] = "127.0.0.1"
        return _uvicorn_run(app, *args, **kwargs)

    uvicorn.run = _run_on_loopback

if sys.argv[1:2] == ["scheduler"]:
    import dbt.adapters.snowflake  # noqa: F401
    import dbt.cli.main  # noqa: F401
'''


def write_local_settings(env: Mapping[str, str]) -> None:
    """``$AIRFLOW_HOME/config/airflow_local_settings.py`` (Airflow puts that folder on sys.path)."""
    private_dir(Path(env["AIRFLOW_HOME"]))
    path = Path(env["AIRFLOW_HOME"]) / "config" / "airflow_local_settings.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != LOCAL_SETTINGS:
        path.write_text(LOCAL_SETTINGS)


def ensure_metadata_db(env: Mapping[str, str]) -> None:
    """``airflow db migrate`` once per Airflow home and Airflow version."""
    from importlib.metadata import version

    home = Path(env["AIRFLOW_HOME"])
    private_dir(home)  # before Airflow writes airflow.cfg (its keys) and the metadata database into it
    stamp = home / f".migrated-{version('apache-airflow')}"
    if stamp.exists():
        return
    proc = subprocess.run([_airflow_bin(), "db", "migrate"], env=dict(env), capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise StackError(f"airflow db migrate failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    stamp.touch()


def ensure_manifest(env: Mapping[str, str]) -> Path:
    """The dbt manifest the DAG renders its task group from: ``dbt parse`` when it is missing or older than any
    file of the dbt project (so Airflow never invokes dbt while parsing the DAG)."""
    from .transform import run_dbt

    manifest = Path(env["NETFLIX_ELT_DBT_MANIFEST"])
    sources = [
        p
        for p in DBT_PROJECT.rglob("*")
        if p.is_file() and not {"target", "logs", "dbt_packages"} & set(p.relative_to(DBT_PROJECT).parts)
    ]
    newest = max(p.stat().st_mtime for p in sources)
    if manifest.exists() and manifest.stat().st_mtime >= newest:
        return manifest
    result = run_dbt(["parse", "--target-path", str(manifest.parent)], env=env)
    if not result.success or not manifest.exists():
        raise StackError(f"dbt parse failed, so the DAG cannot be rendered: {result.exception or result.nodes}")
    return manifest


@dataclass
class DagRunResult:
    """One run of the DAG: its state, every task's state and duration, the load procedure's summary (XCom)."""

    state: str
    run_id: str
    seconds: float
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)
    load_summary: dict[str, Any] | None = None
    uploaded_keys: list[str] | None = None
    log: Path | None = None
    import_errors: dict[str, str] | None = None

    @property
    def success(self) -> bool:
        return self.state == "success"

    def failed_tasks(self) -> list[str]:
        return [t for t, v in self.tasks.items() if v["state"] not in {"success", "skipped"}]

    def group_seconds(self, prefix: str) -> float:
        return sum(v["seconds"] or 0.0 for t, v in self.tasks.items() if t.startswith(prefix))


def run_dag(env: Mapping[str, str], progress: bool = True, timeout: float = 3600) -> DagRunResult:
    """One run of the DAG in a child process (``dag.test()``: tasks in order, in process, no scheduler), with a
    progress bar read from Airflow's metadata database. Its log goes to ``$AIRFLOW_HOME/dag-test.log``."""
    home = Path(env["AIRFLOW_HOME"])
    log = home / "dag-test.log"
    out = home / "dag-test.json"
    out.unlink(missing_ok=True)
    t0 = time.monotonic()
    with log.open("w") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "netflix_elt.orchestrate", "dag-test", str(out)],
            env=dict(env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        bar = _progress_bar(progress)
        try:
            while child.poll() is None:
                if time.monotonic() - t0 > timeout:
                    child.kill()
                    raise StackError(f"the DAG run took longer than {timeout:.0f} s; see {log}")
                if bar is not None:
                    _update_bar(bar, home / "airflow.db")
                time.sleep(0.5)
        finally:
            if bar is not None:
                _update_bar(bar, home / "airflow.db")
                bar.close()
    if not out.exists():
        raise StackError(f"the DAG run did not complete (exit code {child.returncode}); see {log}:\n{_tail(log)}")
    data = json.loads(out.read_text())
    return DagRunResult(seconds=time.monotonic() - t0, log=log, **data)


def _progress_bar(enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (logs, CI)
    return tqdm(
        total=0,
        desc=DAG_ID,
        unit="task",
        disable=None,
        bar_format="{desc}: {n}/{total} tasks |{bar:30}| {elapsed} {postfix}",
    )


def _update_bar(bar: Any, db: Path) -> None:
    """Task counts of the newest run of the DAG, read-only from the SQLite metadata database."""
    if not db.exists():
        return
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.2) as conn:
            rows = conn.execute(
                "SELECT ti.task_id, ti.state FROM task_instance ti WHERE ti.dag_id = ? AND ti.run_id = "
                "(SELECT run_id FROM dag_run WHERE dag_id = ? ORDER BY id DESC LIMIT 1)",
                (DAG_ID, DAG_ID),
            ).fetchall()
    except sqlite3.Error:
        return
    if not rows:
        return
    done = sum(1 for _, s in rows if s in {"success", "failed", "skipped", "upstream_failed"})
    running = [t for t, s in rows if s == "running"]
    bar.total = len(rows)
    bar.n = done
    bar.set_postfix_str(running[0] if running else "", refresh=False)
    bar.refresh()


def _dag_test_child(out: Path) -> int:
    """In the child: parse the DAG folder, run the DAG once, write the outcome as JSON."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    if bag.import_errors or DAG_ID not in bag.dags:
        errors = {k: str(v) for k, v in bag.import_errors.items()} or {DAG_ID: "not found in " + str(DAGS_FOLDER)}
        out.write_text(json.dumps({"state": "import_error", "run_id": "", "import_errors": errors}))
        return 1
    dag = bag.dags[DAG_ID]
    run = dag.test()
    tasks = {
        ti.task_id: {"state": str(ti.state), "seconds": ti.duration, "tries": ti.try_number}
        for ti in sorted(run.get_task_instances(), key=lambda ti: ti.start_date or run.start_date)
    }
    result = {
        "state": str(run.state),
        "run_id": run.run_id,
        "tasks": tasks,
        "load_summary": _xcom(run.run_id, "run_db_raw_ingestion"),
        "uploaded_keys": _xcom(run.run_id, "upload_landed_files"),
    }
    out.write_text(json.dumps(result, default=str))
    return 0 if result["state"] == "success" else 1


def _xcom(run_id: str, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        value = session.scalar(
            select(XComModel.value).where(
                XComModel.dag_id == DAG_ID,
                XComModel.run_id == run_id,
                XComModel.task_id == task_id,
                XComModel.key == "return_value",
            )
        )
    if value is None:
        return None
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def serve(settings: Settings, port: int, env: Mapping[str, str]) -> int:
    """``airflow standalone`` (API server with the UI, scheduler, DAG processor, triggerer) on 127.0.0.1:port, in
    the foreground until Ctrl-C. Returns its exit code."""
    home = Path(env["AIRFLOW_HOME"])
    private_dir(home)
    passwords = home / "passwords.json"
    if not passwords.exists():
        write_private_file(passwords, json.dumps({ADMIN_USER: secrets.token_urlsafe(12)}), exclusive=True)
    make_private(passwords)
    password = json.loads(passwords.read_text())[ADMIN_USER]
    serve_env = standalone_env(env, port, passwords)
    print(
        f"Airflow UI: {serve_env['AIRFLOW__API__BASE_URL']}  (user {ADMIN_USER}, password {password}; kept in {passwords})"
    )
    print(
        f"DAG {DAG_ID}: press Trigger (tick 'Unpause on trigger') to run it on "
        f"{'the local stack' if is_local() else 'the configured account'}; Ctrl-C stops Airflow."
    )
    sys.stdout.flush()
    proc = subprocess.Popen([_airflow_bin(), "standalone"], env=serve_env, start_new_session=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return _stop(proc)
    finally:
        if proc.poll() is None:
            _stop(proc)


def standalone_env(env: Mapping[str, str], port: int, passwords: Path) -> dict[str, str]:
    """The environment of ``airflow standalone``: ``env`` with every component on 127.0.0.1 (the API server and UI
    at ``port``, the log servers, the scheduler's health check), the simple auth manager's admin whose password is
    kept in ``passwords``, and this environment's ``airflow`` first on PATH."""
    base_url = f"http://127.0.0.1:{port}"
    return {
        **env,
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": base_url,
        "AIRFLOW__API__WORKERS": "1",
        # the log servers listen on 127.0.0.1 (see airflow_local_settings.py), so components are found there
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airflow_local_settings.loopback_hostname",
        # off by default; should it be turned on, on 127.0.0.1 too
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__PARALLELISM": env.get("AIRFLOW__CORE__PARALLELISM", str(max(2, os.cpu_count() or 2))),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": env.get("AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL", "10"),
        # standalone starts its components as `airflow ...` from PATH: this environment's
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
    }


def _stop(proc: subprocess.Popen[bytes]) -> int:
    """Stop standalone and every component it started (they share its process group)."""
    import signal

    for sig, wait in ((signal.SIGINT, 20.0), (signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _group_alive(proc.pid):
            proc.poll()
            time.sleep(0.2)
        if not _group_alive(proc.pid):
            break
    return proc.wait()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _airflow_bin() -> str:
    return str(Path(sys.executable).parent / "airflow")


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def register_cli(sub: Any) -> None:
    p = sub.add_parser(
        "airflow",
        help="start the Airflow UI on 127.0.0.1 with the DAG and connections to the local stack",
        description="Start the local stack (unless SNOWFLAKE_ACCOUNT points at a real account), deploy the Snowflake "
        "objects, prepare the dbt manifest, then run Airflow (API server with the UI, scheduler, DAG processor, "
        "triggerer) in the foreground on 127.0.0.1. The login is printed; Ctrl-C stops everything.",
    )
    p.add_argument(
        "--port", type=int, default=None, help="port of the UI and API (default: NETFLIX_ELT_AIRFLOW_PORT or 8480)"
    )
    p.add_argument(
        "--landing", type=Path, default=None, help="landing directory the DAG uploads from (default: data/landing)"
    )
    p.set_defaults(func=cmd_airflow)


def cmd_airflow(args: argparse.Namespace) -> int:
    from . import pipeline

    settings = Settings.from_env()
    port = args.port or settings.airflow_port
    if is_local():
        LocalStack(settings).up()
    proc = pipeline.deploy(settings, quiet=True)
    if proc.returncode != 0:
        print(proc.stdout + proc.stderr, file=sys.stderr)
        raise StackError("schemachange deploy failed (output above)")
    landing = args.landing or Path(os.environ.get("NETFLIX_ELT_LANDING_DIR") or "data/landing")
    landing.mkdir(parents=True, exist_ok=True)
    env = airflow_env(settings, landing)
    ensure_metadata_db(env)
    ensure_manifest(env)
    write_local_settings(env)
    print(f"landing directory: {landing.resolve()}")
    return serve(settings, port, env)


def main(argv: list[str] | None = None) -> int:
    """Internal entry point of the child process that runs the DAG (``python -m netflix_elt.orchestrate``)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 2 and argv[0] == "dag-test":
        return _dag_test_child(Path(argv[1]))
    print("usage: python -m netflix_elt.orchestrate dag-test RESULT.json", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
