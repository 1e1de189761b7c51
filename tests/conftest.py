"""Shared fixtures. Tests that need servers start a real local stack (S3 server + Snowflake emulator) on free ports
in a temporary directory, exactly as ``make up`` does, and stop it at the end."""

from __future__ import annotations

import dataclasses
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netflix_elt.config import Settings
from netflix_elt.stack import LocalStack

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO.parent / "shared" / "datasets" / "ml-latest-small"


def interruptible() -> None:
    """``preexec_fn`` for a child that a test stops with Ctrl-C (SIGINT): a shell that runs the tests in the
    background starts them with SIGINT ignored, and children inherit that; give the child the default handling."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_make_airflow(tmp_path: Path, landing: Path, **extra: str) -> tuple[Any, dict[str, str], Path]:
    """``make airflow`` in its own session, on a local stack under ``tmp_path/stack`` with free ports, loading
    ``landing``, its output in ``tmp_path/make-airflow.log``: (the process, its environment, the log). The Airflow
    port is the environment's ``NETFLIX_ELT_AIRFLOW_PORT``."""
    import os
    import subprocess

    env = {
        **os.environ,
        "NETFLIX_ELT_STACK_DIR": str(tmp_path / "stack"),
        "NETFLIX_ELT_S3_PORT": str(free_port()),
        "NETFLIX_ELT_SNOWFLAKE_PORT": str(free_port()),
        "NETFLIX_ELT_AIRFLOW_PORT": str(free_port()),
        "NETFLIX_ELT_LANDING_DIR": str(landing),
        "NETFLIX_ELT_DBT_MANIFEST": str(tmp_path / "dbt-target" / "manifest.json"),
        "NETFLIX_ELT_TASK_RETRIES": "0",
        **extra,
    }
    env.pop("AIRFLOW_HOME", None)
    env.pop("SNOWFLAKE_ACCOUNT", None)
    out = tmp_path / "make-airflow.log"
    with out.open("w") as log:
        proc = subprocess.Popen(
            ["make", "-s", "airflow"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=interruptible,
        )
    return proc, env, out


def snowpark_session(stack: LocalStack, schema: str) -> Any:
    """A Snowpark session on the stack's database as its administrator (close it when done)."""
    from snowflake.snowpark import Session

    env = stack.env()
    return Session.builder.configs(
        {
            "account": "emulator",
            "user": env["SNOWFLAKE_USER"],
            "password": env["SNOWFLAKE_PASSWORD"],
            "host": "127.0.0.1",
            "port": stack.snowflake.port,
            "protocol": "http",
            "database": stack.settings.database,
            "schema": schema,
            "network_timeout": 120,
        }
    ).create()


def make_stack(root: Path) -> LocalStack:
    settings = dataclasses.replace(
        Settings.from_env(),
        stack_dir=root,
        s3_port=free_port(),
        snowflake_port=free_port(),
        bucket="netflix-landing",
        prefix="movielens/",
        database="NETFLIX",
    )
    return LocalStack(settings)


def upload_to(stack: LocalStack, landing: Path, **kwargs: Any) -> Any:
    """Upload a landing directory to the stack's stage with the uploader's API (no progress bars)."""
    from uploader import upload

    return upload(
        landing,
        bucket=stack.settings.bucket,
        prefix=stack.settings.prefix,
        s3_client=stack.s3_client(),
        progress=False,
        **kwargs,
    )


def sql(stack: LocalStack, query: str) -> list[tuple[Any, ...]]:
    """Rows of one query on the stack's database (schema RAW), in a session of its own."""
    with stack.connect(schema="RAW", network_timeout=300) as conn:
        cur = conn.cursor()
        cur.execute(query)
        return list(cur.fetchall())


def point_at(stack: LocalStack, mp: pytest.MonkeyPatch) -> None:
    """Make ``stack`` the pipeline's target through the environment, as a user would (``mp`` undoes it)."""
    for k, v in {
        "NETFLIX_ELT_STACK_DIR": str(stack.root),
        "NETFLIX_ELT_S3_PORT": str(stack.s3.port),
        "NETFLIX_ELT_SNOWFLAKE_PORT": str(stack.snowflake.port),
        "NETFLIX_ELT_UPLOAD_STATE_DIR": str(stack.root / "upload-state"),
    }.items():
        mp.setenv(k, v)
    mp.delenv("SNOWFLAKE_ACCOUNT", raising=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest modules first (``pytest.mark.slow(minutes=...)``): ``make test`` runs modules on parallel workers
    (pytest-xdist, a module at a time per worker, in this order), so the long ones start together and the short ones
    fill in around them. Within a module the order is kept."""

    def minutes(item: pytest.Item) -> float:
        marker = item.get_closest_marker("slow")
        return float(marker.kwargs.get("minutes", 1)) if marker else 0.0

    items.sort(key=minutes, reverse=True)  # stable: same-cost modules and each module's tests keep their order


@pytest.fixture(scope="session", autouse=True)
def upload_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The uploader's state (its per-destination locks and journals) in a directory of this test session, not the
    user's ``~/.local/state``: runs of the tests at once, and the user's own uploads, never wait on each other."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("upload-state")
    mp.setenv("NETFLIX_ELT_UPLOAD_STATE_DIR", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="module")
def target_stack(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: pytest.MonkeyPatch
) -> Iterator[LocalStack]:
    """A fresh local stack for the module, the pipeline's target through the environment (as users set it); nothing
    deployed yet."""
    stack = make_stack(tmp_path_factory.mktemp("stack"))
    point_at(stack, monkeypatch_module)
    stack.up()
    try:
        yield stack
    finally:
        stack.down()


@pytest.fixture(scope="module")
def deployment(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch_module: pytest.MonkeyPatch
) -> Iterator[tuple[LocalStack, Any]]:
    """A fresh local stack for the module with the migrations applied, the pipeline's target through the environment,
    and how it was deployed (tests/snapshots.py's ``Deployed``)."""
    from tests import snapshots

    stack = make_stack(tmp_path_factory.mktemp("stack"))
    point_at(stack, monkeypatch_module)
    try:
        yield stack, snapshots.deploy(stack)  # starts the stack
    finally:
        stack.down()


@pytest.fixture(scope="module")
def deployed_stack(deployment: tuple[LocalStack, Any]) -> LocalStack:
    """:func:`deployment`'s stack."""
    return deployment[0]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One running local stack for the test session."""
    s = make_stack(tmp_path_factory.mktemp("stack"))
    s.up()
    try:
        yield s
    finally:
        s.down()


@pytest.fixture()
def sf(stack: LocalStack) -> Iterator[object]:
    """A connector connection to the emulator (database NETFLIX, schema PUBLIC)."""
    conn = stack.connect(schema="PUBLIC", network_timeout=120)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not SAMPLE.is_dir():
        pytest.skip("../shared/datasets/ml-latest-small is not present")
    return SAMPLE
