"""The local stack and `make airflow` leak nothing to another local user: no secret on a command line (``ps`` shows
every process's argv to everyone), servers on 127.0.0.1 only, private state files, `down` never signals a process
the stack did not start, and the uploader never reads or prints a file outside the landing directory."""

from __future__ import annotations

import configparser
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psutil
import pytest
from botocore.exceptions import ClientError

from netflix_elt.contracts import CONTRACTS
from netflix_elt.generate import generate
from netflix_elt.stack import LocalStack
from tests.conftest import REPO, free_port, make_stack, start_make_airflow

pytestmark = pytest.mark.slow(minutes=3)

DAG_ID = "full_netflix_pipeline"
AIRFLOW_COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")


# -- watching processes ------------------------------------------------------------------------------------------------


@dataclass
class Seen:
    """What a process showed while it was watched: its command line and the addresses it listened on."""

    cmdline: str = ""
    listening: set[tuple[str, int]] = field(default_factory=set)


def _family(roots: Iterable[int]) -> list[psutil.Process]:
    out: list[psutil.Process] = []
    for pid in roots:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            out += [root, *root.children(recursive=True)]
    return out


def observe(roots: Iterable[int], seen: dict[int, Seen]) -> None:
    """Record the command line and listening sockets of ``roots`` and all their descendants."""
    for proc in _family(roots):
        try:
            cmdline = "\0".join(proc.cmdline())
            listening = {
                (c.laddr.ip, c.laddr.port) for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN
            }
        except psutil.Error:
            continue
        entry = seen.setdefault(proc.pid, Seen())
        entry.cmdline = entry.cmdline or cmdline
        entry.listening |= listening


class Watcher:
    """Observes a process tree in a thread, every few tenths of a second, until stopped."""

    def __init__(self, roots: Iterable[int], extra_roots: Any = None) -> None:
        self.roots = list(roots)
        self.extra_roots = extra_roots or (lambda: [])
        self.seen: dict[int, Seen] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            observe([*self.roots, *self.extra_roots()], self.seen)
            self._stop.wait(0.3)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


def secrets_on_command_lines(seen: dict[int, Seen], secrets: dict[str, str]) -> list[str]:
    return [
        f"{name} in the command line of pid {pid}: {s.cmdline.replace(chr(0), ' ')[:200]}"
        for pid, s in seen.items()
        for name, value in secrets.items()
        if value and value in s.cmdline
    ]


def listening_beyond_loopback(seen: dict[int, Seen]) -> list[str]:
    return [
        f"pid {pid} listens on {ip}:{port} ({s.cmdline.replace(chr(0), ' ')[:120]})"
        for pid, s in seen.items()
        for ip, port in sorted(s.listening)
        if ip != "127.0.0.1"
    ]


def stack_pids(stack: LocalStack) -> list[int]:
    return [int(p.read_text()) for p in (stack.s3.pidfile, stack.snowflake.pidfile) if p.exists()]


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


# -- the local stack ---------------------------------------------------------------------------------------------------


@pytest.fixture()
def running_stack(tmp_path: Path) -> Iterator[LocalStack]:
    stack = make_stack(tmp_path / "stack")
    stack.up()
    try:
        yield stack
    finally:
        stack.down()


def test_stack_servers_show_no_secret_on_their_command_lines_and_listen_on_loopback_only(
    running_stack: LocalStack,
) -> None:
    seen: dict[int, Seen] = {}
    observe(stack_pids(running_stack), seen)
    assert len(seen) >= 2
    assert any("rclone" in s.cmdline for s in seen.values())
    assert any("snowflake.emulator" in s.cmdline for s in seen.values())
    problems = secrets_on_command_lines(seen, running_stack.credentials()) + listening_beyond_loopback(seen)
    assert not problems, "\n".join(problems)
    # the S3 server got its key all the same: requests signed with it are served, others refused
    bucket = running_stack.settings.bucket
    running_stack.s3_client().put_object(Bucket=bucket, Key="probe.txt", Body=b"x")
    creds = running_stack.credentials()
    stranger = boto3.client(
        "s3",
        endpoint_url=running_stack.settings.s3_endpoint,
        aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key="not-" + creds["AWS_SECRET_ACCESS_KEY"],  # pragma: allowlist secret (a wrong one)
        region_name="us-east-1",
    )
    with pytest.raises(ClientError) as denied:
        stranger.get_object(Bucket=bucket, Key="probe.txt")
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_stack_state_is_private_to_its_user(running_stack: LocalStack) -> None:
    assert mode(running_stack.root) == 0o700
    assert mode(running_stack.credentials_file) == 0o600


def test_an_existing_stack_with_open_permissions_is_made_private(tmp_path: Path) -> None:
    stack = make_stack(tmp_path / "stack")
    stack.root.mkdir(mode=0o755)
    stack.root.chmod(0o755)  # as earlier versions left it
    stack.credentials_file.write_text("AWS_ACCESS_KEY_ID=a\nAWS_SECRET_ACCESS_KEY=b\nSNOWFLAKE_PASSWORD=c\n")
    stack.credentials_file.chmod(0o644)
    stack.up()
    try:
        assert mode(stack.root) == 0o700
        assert mode(stack.credentials_file) == 0o600
        assert stack.credentials()["SNOWFLAKE_PASSWORD"] == "c"
    finally:
        stack.down()


@contextlib.contextmanager
def foreign_process() -> Iterator[subprocess.Popen[bytes]]:
    """A process of the same user that the stack did not start, leading its own process group."""
    proc = subprocess.Popen(["sleep", "1000"], start_new_session=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def stack_cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "NETFLIX_ELT_STACK_DIR": str(stack.root),
        "NETFLIX_ELT_S3_PORT": str(stack.s3.port),
        "NETFLIX_ELT_SNOWFLAKE_PORT": str(stack.snowflake.port),
    }
    env.pop("SNOWFLAKE_ACCOUNT", None)
    return subprocess.run(
        [sys.executable, "-m", "netflix_elt", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_down_leaves_alone_a_process_the_stack_did_not_start(tmp_path: Path) -> None:
    stack = make_stack(tmp_path / "stack")
    stack.root.mkdir(parents=True)
    with foreign_process() as other:
        stack.snowflake.pidfile.write_text(str(other.pid))
        down = stack_cli(stack, "down")
        time.sleep(0.5)
        assert other.poll() is None, "down signalled a process the stack did not start"
        assert down.returncode == 0, down.stderr
        assert not stack.snowflake.pidfile.exists()
        out = down.stdout + down.stderr
        assert str(other.pid) in out and "not the local snowflake server" in out, out


def test_up_leaves_alone_a_process_named_in_a_stale_pid_file(tmp_path: Path) -> None:
    stack = make_stack(tmp_path / "stack")
    stack.root.mkdir(parents=True)
    with foreign_process() as other:
        stack.s3.pidfile.write_text(str(other.pid))
        stack.up()
        try:
            time.sleep(0.5)
            assert other.poll() is None, "up signalled a process the stack did not start"
            assert stack_pids(stack)[0] != other.pid
            assert all(s["running"] for s in stack.status().values())
        finally:
            stack.down()
        assert other.poll() is None


# -- `make airflow` ----------------------------------------------------------------------------------------------------


def api_call(base: str, method: str, path: str, token: str | None = None, body: Any = None) -> Any:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, method=method, data=data, headers=headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def wait_for(what: str, timeout: float, probe: Any, proc: subprocess.Popen[bytes] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        try:
            value = probe()
            if value:
                return value
        except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError) as e:
            last = e
        time.sleep(2)
    if proc is not None and proc.poll() is not None:
        raise AssertionError(f"{what}: never ready, `make airflow` exited with {proc.returncode}")
    raise AssertionError(f"{what}: not ready after {timeout:.0f} s (last error: {last})")


def airflow_secrets(home: Path) -> dict[str, str]:
    """The Airflow login and the keys in Airflow's configuration that sign or encrypt anything."""
    out = {"Airflow admin password": json.loads((home / "passwords.json").read_text())["admin"]}
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(home / "airflow.cfg")
    for section, option in (("core", "fernet_key"), ("api_auth", "jwt_secret"), ("api", "secret_key")):
        if value := cfg.get(section, option, fallback=""):
            out[f"[{section}] {option}"] = value
    return out


@pytest.mark.timeout(900)
def test_make_airflow_shows_no_secret_on_any_command_line_and_listens_on_loopback_only(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    generate(landing, scale="tiny", seed=11)
    proc, env, out = start_make_airflow(
        tmp_path,
        landing,
        # the log servers of the scheduler and the triggerer, on ports of this test's own
        AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT=str(free_port()),
        AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT=str(free_port()),
    )
    stack_dir = tmp_path / "stack"
    home = stack_dir / "airflow"
    base = f"http://127.0.0.1:{env['NETFLIX_ELT_AIRFLOW_PORT']}"

    def servers() -> list[int]:
        pids = []
        for name in ("s3.pid", "snowflake.pid"):
            with contextlib.suppress(OSError, ValueError):
                pids.append(int((stack_dir / name).read_text()))
        return pids

    states: dict[str, str] = {}
    try:
        with Watcher([proc.pid], servers) as watcher:
            try:
                wait_for(
                    "Airflow's scheduler",
                    300,
                    lambda: api_call(base, "GET", "/api/v2/monitor/health")["scheduler"]["status"] == "healthy",
                    proc,
                )
            except AssertionError as e:
                raise AssertionError(f"{e}\n{out.read_text()[-4000:]}") from None
            password = json.loads((home / "passwords.json").read_text())["admin"]
            token = api_call(base, "POST", "/auth/token", body={"username": "admin", "password": password})
            token = token["access_token"]
            wait_for("the DAG", 180, lambda: api_call(base, "GET", f"/api/v2/dags/{DAG_ID}", token))
            # a run, so that task processes (the uploader, the load, dbt) are watched too
            today = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            run = api_call(base, "POST", f"/api/v2/dags/{DAG_ID}/dagRuns", token, {"logical_date": today.isoformat()})
            api_call(base, "PATCH", f"/api/v2/dags/{DAG_ID}", token, {"is_paused": False})
            run_path = f"/api/v2/dags/{DAG_ID}/dagRuns/{run['dag_run_id']}"

            def dbt_started() -> bool:
                tis = api_call(base, "GET", f"{run_path}/taskInstances?limit=100", token)["task_instances"]
                states.update({t["task_id"]: str(t["state"]) for t in tis})
                return any(
                    t["task_id"].startswith("netflix_dbt_run") and t["state"] in {"running", "success", "failed"}
                    for t in tis
                ) or api_call(base, "GET", run_path, token)["state"] in {"success", "failed"}

            wait_for("a dbt task of the run", 300, dbt_started)
            time.sleep(3)  # the dbt task's processes
            secrets = {
                **{f"stack {k}": v for k, v in read_env_file(stack_dir / "credentials.env").items()},
                **airflow_secrets(home),
            }
        seen = watcher.seen
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal that runs `make airflow`
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            subprocess.run(
                [sys.executable, "-m", "netflix_elt", "down"], env=env, cwd=REPO, capture_output=True, timeout=60
            )
    commands = [s.cmdline.split("\0") for s in seen.values()]
    for component in (["serve", "s3"], ["snowflake.emulator"], *[[c] for c in AIRFLOW_COMPONENTS]):
        assert any(_contains(c, component) for c in commands), f"{component} was not watched: {commands}"
    assert any(state in {"running", "success", "failed"} for state in states.values()), states
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


def _contains(args: list[str], part: list[str]) -> bool:
    return any(args[i : i + len(part)] == part for i in range(len(args)))


def read_env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


# -- the uploader ------------------------------------------------------------------------------------------------------

SECRET_MARKER = "not-for-upload-3b7e1c"  # pragma: allowlist secret (made up)


def upload_cli(landing: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``python -m uploader LANDING`` with an S3 endpoint where nothing listens (nothing may be sent anywhere)."""
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
        "AWS_ACCESS_KEY_ID": "unused",
        "AWS_SECRET_ACCESS_KEY": "unused",  # pragma: allowlist secret (made up)
        "AWS_MAX_ATTEMPTS": "1",
        "NETFLIX_ELT_S3_TIMEOUT": "2",
        "NETFLIX_ELT_UPLOAD_STATE_DIR": str(tmp_path / "upload-state"),
    }
    return subprocess.run(
        [sys.executable, "-m", "uploader", str(landing), "--no-progress"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_upload_refuses_links_out_of_the_landing_directory_and_never_shows_their_content(tmp_path: Path) -> None:
    outside = tmp_path / "home"
    outside.mkdir()
    key = outside / "id_rsa"
    key.write_text(f"{SECRET_MARKER}-first-line\nsecond line\n")
    well_formed = outside / "credentials.csv"  # passes the header check: a link must not be followed all the same
    well_formed.write_text(CONTRACTS["movies"].header_line + f"\n1,{SECRET_MARKER},Drama\n")
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "ratings.csv").symlink_to(key)
    (landing / "movies.csv").symlink_to(well_formed)
    (landing / "tags.csv").symlink_to(Path("..") / "home" / "id_rsa")  # relative, through ..

    result = upload_cli(landing, tmp_path)

    printed = result.stdout + result.stderr
    assert result.returncode == 2, printed
    assert SECRET_MARKER not in printed
    for name in ("ratings.csv", "movies.csv", "tags.csv"):
        assert f"{name}: a symbolic link to a file outside the landing directory" in printed, printed
    assert "copy the file into the landing directory" in printed


def test_upload_accepts_a_link_within_the_landing_directory(tmp_path: Path) -> None:
    from uploader.core import check_landing

    landing = tmp_path / "landing"
    generate(landing, scale="tiny", seed=11)
    (landing / "ratings.csv").rename(landing / "ratings_20240101.csv")
    (landing / "ratings.csv").symlink_to("ratings_20240101.csv")
    names = [f.name for f in check_landing(landing).files]
    assert "ratings.csv" in names and "ratings_20240101.csv" in names


@pytest.mark.parametrize("name", ["movies.csv\n", "ratings_\uff12\uff10\uff12\uff14\uff10\uff17\uff12\uff11.csv"])
def test_upload_refuses_names_that_only_look_like_movielens_names(tmp_path: Path, name: str) -> None:
    landing = tmp_path / "landing"
    landing.mkdir()
    dataset = "movies" if name.startswith("movies") else "ratings"
    (landing / name).write_text(CONTRACTS[dataset].header_line + "\n")

    result = upload_cli(landing, tmp_path)

    printed = result.stdout + result.stderr
    assert result.returncode == 2, printed
    assert f"{name!a}: not a MovieLens file name" in printed, printed
