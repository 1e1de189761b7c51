"""`netflix-elt docs`: dbt docs of a built local stack, written to a temporary target path (the repository's
netflix_dbt/target is left alone), and `--serve` in a subprocess: the docs on 127.0.0.1 until SIGINT.

The stack: generated data (scale tiny) deployed, loaded and built with tests/test_dbt.py's `Project`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from netflix_elt import cli, contracts
from netflix_elt.generate import generate
from netflix_elt.stack import port_open
from netflix_elt.transform import PROJECT_DIR
from tests.conftest import REPO, free_port, interruptible
from tests.test_dbt import Project, loaded_project, local_only  # noqa: F401 - local_only: fixture

pytestmark = pytest.mark.slow(minutes=1)

MODELS = sorted(p.stem for p in (PROJECT_DIR / "models").rglob("*.sql"))
MARTS = sorted(p.stem for p in (PROJECT_DIR / "models" / "marts").rglob("*.sql"))
# the RAW tables the staging models read: one per file contract, and the load tracking
SOURCES = [*contracts.DATASETS, "load_tracking"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, local_only: None) -> Iterator[Project]:  # noqa: F811
    """Generated data (scale tiny) deployed, loaded and built. In ``make mutation``, from a snapshot of an earlier
    build of the same code but netflix_elt/docs.py, which the build does not run (tests/snapshots.py's ``ran``)."""
    root = tmp_path_factory.mktemp("docs")
    generate(root / "landing", scale="tiny")
    yield from loaded_project(root, root / "landing", build=True, snapshot="docs", excluded=("netflix_elt/docs.py",))


def stack_env(project: Project, target: Path) -> dict[str, str]:
    """Variables that point `netflix-elt` at the test's stack, and dbt's files at a temporary folder."""
    s = project.stack.settings
    return {
        "NETFLIX_ELT_STACK_DIR": str(s.stack_dir),
        "NETFLIX_ELT_S3_PORT": str(s.s3_port),
        "NETFLIX_ELT_SNOWFLAKE_PORT": str(s.snowflake_port),
        "NETFLIX_ELT_BUCKET": s.bucket,
        "NETFLIX_ELT_PREFIX": s.prefix,
        "SNOWFLAKE_DATABASE": s.database,
        "SNOWFLAKE_WAREHOUSE": s.warehouse,
        "DBT_TARGET_PATH": str(target),
        "DBT_LOG_PATH": str(target.parent / "logs"),
    }


def repo_target_state() -> dict[str, int]:
    target = PROJECT_DIR / "target"
    return {p.name: p.stat().st_mtime_ns for p in target.glob("*") if p.is_file()} if target.is_dir() else {}


def test_docs_generates_manifest_and_catalog_of_the_built_models(
    generated: Project,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    target = tmp_path / "target"
    for k, v in stack_env(generated, target).items():
        monkeypatch.setenv(k, v)
    before = repo_target_state()

    assert cli.main(["docs"]) == 0
    out = capsys.readouterr().out
    assert "dbt docs generate: SUCCESS" in out, out[-3000:]
    for name in ("index.html", "manifest.json", "catalog.json"):
        assert str(target / name) in out and (target / name).is_file()
    assert f"{len(MODELS)} models, {len(SOURCES)} sources" in out
    assert repo_target_state() == before  # nothing written to netflix_dbt/target

    manifest = json.loads((target / "manifest.json").read_text())
    catalog = json.loads((target / "catalog.json").read_text())
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    assert sorted(models) == MODELS and len(MARTS) == 4
    assert not [name for name, n in models.items() if not n["description"].strip()]

    # each mart's table is in the catalog with exactly the columns its yml documents, each with a type
    for mart in MARTS:
        node = models[mart]
        entry = catalog["nodes"][node["unique_id"]]
        assert entry["metadata"]["schema"] == "MARTS" and entry["metadata"]["name"] == mart.upper()
        assert entry["metadata"]["type"].upper() in {"BASE TABLE", "TABLE"}
        columns = {c.lower(): col for c, col in entry["columns"].items()}
        assert set(columns) == {c.lower() for c in node["columns"]}, mart
        assert all(col["type"] for col in columns.values())
        assert all(node["columns"][c]["description"].strip() for c in node["columns"])
    # and the RAW tables, as the sources
    raw = {s["name"]: catalog["sources"][uid] for uid, s in manifest["sources"].items()}
    assert len(raw) == len(SOURCES)
    assert {c.upper() for c in raw["ratings"]["columns"]} >= {"USER_ID", "MOVIE_ID", "RATING", "LOAD_ID"}


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on port (Linux /proc/net/tcp and tcp6, hex as the kernel has)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(addr)
    return found


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.headers.get("Content-Type", ""), response.read()


def test_docs_serve_on_localhost_until_sigint(generated: Project, tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "SNOWFLAKE_ACCOUNT"}
    env |= stack_env(generated, tmp_path / "target") | {"NETFLIX_ELT_DOCS_PORT": str(port)}
    log = tmp_path / "docs-serve.log"
    with log.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "netflix_elt", "docs", "--serve"],
            env=env,
            cwd=REPO,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=interruptible,
        )
    try:
        deadline = time.monotonic() + 120
        # the port is taken before dbt runs: wait for the page itself
        while proc.poll() is None and time.monotonic() < deadline:
            if (tmp_path / "target" / "catalog.json").exists() and port_open(port):
                try:
                    status, content_type, body = _get(f"http://127.0.0.1:{port}/")
                    break
                except OSError:
                    pass
            time.sleep(0.3)
        else:
            pytest.fail(f"docs server did not come up (exit code {proc.poll()}): {log.read_text()[-3000:]}")
        assert status == 200 and content_type.startswith("text/html")
        assert b"<title>dbt Docs</title>" in body
        assert _listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only, never 0.0.0.0 or ::

        status, content_type, body = _get(f"http://127.0.0.1:{port}/manifest.json")
        assert status == 200 and content_type == "application/json"
        manifest = json.loads(body)
        assert "model.netflix_dbt.mart_movie_ratings" in manifest["nodes"]
        status, _, body = _get(f"http://127.0.0.1:{port}/catalog.json")
        assert "model.netflix_dbt.mart_movie_ratings" in json.loads(body)["nodes"]

        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text()
    assert proc.returncode == 0, output[-3000:]
    assert f"dbt docs: http://127.0.0.1:{port}/" in output and "docs server stopped" in output
    assert not port_open(port)


def test_docs_serve_refuses_a_port_in_use_before_running_dbt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("SNOWFLAKE_ACCOUNT", raising=False)
    monkeypatch.setenv("NETFLIX_ELT_STACK_DIR", str(tmp_path / "stack"))  # no stack is started
    monkeypatch.setenv("DBT_TARGET_PATH", str(tmp_path / "target"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        assert cli.main(["docs", "--serve", "--port", str(port)]) == 1
    assert time.monotonic() - started < 10
    assert f"port {port} on 127.0.0.1 is already in use" in capsys.readouterr().err
    assert not (tmp_path / "target").exists() and not (tmp_path / "stack" / "s3.pid").exists()
