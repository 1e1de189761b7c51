"""Faults of the services: an S3 server that is down, slow, stalled or goes away in the middle of an upload, and a
Snowflake emulator that is stopped and restarted between the steps of the pipeline. Each ends in a clear message that
says what to do, and the next run repairs whatever was left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netflix_elt import contracts, pipeline
from netflix_elt.generate import generate
from netflix_elt.stack import LocalStack, StackError, port_open
from tests.conftest import REPO, free_port, upload_to
from tests.proxy import Proxy

pytestmark = pytest.mark.slow(minutes=1)

MiB = 1 << 20


@pytest.fixture(scope="module")
def deployed(deployed_stack: LocalStack) -> LocalStack:
    return deployed_stack


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("files")
    generate(out, "tiny", seed=81)
    return out


def landing_of(tmp: Path, *paths: Path) -> Path:
    landing = tmp / "landing"
    landing.mkdir()
    for p in paths:
        (landing / p.name).hardlink_to(p)  # a symbolic link out of the landing directory is refused
    return landing


def cli(
    stack: LocalStack, *args: str, endpoint: str | None = None, extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **stack.env(), **(extra or {})}
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    return subprocess.run(
        [sys.executable, "-m", "netflix_elt", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )


def staged(stack: LocalStack) -> list[str]:
    client = stack.s3_client()
    page = client.list_objects_v2(Bucket=stack.settings.bucket, Prefix=stack.settings.prefix)
    return [o["Key"] for o in page.get("Contents", [])]


# -- S3 ------------------------------------------------------------------------------------------------------------


def test_s3_down_is_retried_then_a_clear_error(deployed: LocalStack, files: Path, tmp_path: Path) -> None:
    landing = landing_of(tmp_path, files / "movies.csv")
    nobody = f"http://127.0.0.1:{free_port()}"
    began = time.monotonic()
    proc = cli(deployed, "upload", str(landing), "--no-progress", endpoint=nobody, extra={"AWS_MAX_ATTEMPTS": "3"})
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "could not be reached (each request was tried 3 times, with backoff)" in proc.stderr
    assert "netflix-elt up" in proc.stderr and "AWS_ENDPOINT_URL" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - began > 0.5  # backoff between the attempts (a floor, not a speed measurement)
    assert staged(deployed) == []


def test_slow_s3_still_uploads_everything(deployed: LocalStack, files: Path, tmp_path: Path) -> None:
    landing = landing_of(tmp_path, files / "ratings.csv", files / "tags.csv")
    with Proxy(deployed.s3.port, bytes_per_second=256 * 1024) as slow:
        proc = cli(deployed, "upload", str(landing), "--no-progress", endpoint=slow.url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 uploaded" in proc.stdout
    assert len(staged(deployed)) == 2


def test_stalled_s3_times_out_with_a_clear_error(deployed: LocalStack, files: Path, tmp_path: Path) -> None:
    landing = landing_of(tmp_path, files / "links.csv")
    with Proxy(deployed.s3.port, stalled=True) as stalled:
        proc = cli(
            deployed,
            "upload",
            str(landing),
            "--no-progress",
            endpoint=stalled.url,
            extra={"AWS_MAX_ATTEMPTS": "2", "NETFLIX_ELT_S3_TIMEOUT": "1"},
        )
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "did not answer in time" in proc.stderr and "NETFLIX_ELT_S3_TIMEOUT" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_s3_gone_in_the_middle_of_an_upload(deployed: LocalStack, tmp_path: Path) -> None:
    big = tmp_path / "big"
    generate(big, "tiny", seed=82, ratings=400_000)  # about 10 MB
    daily = big / "ratings_20240805.csv"
    (big / "ratings.csv").rename(daily)
    landing = landing_of(tmp_path, daily)
    env_split = ["--split-threshold", "2MiB", "--part-size", "1MiB"]
    proxy = Proxy(deployed.s3.port, bytes_per_second=2 * MiB).start()
    env = {**os.environ, **deployed.env(), "AWS_ENDPOINT_URL": proxy.url, "AWS_MAX_ATTEMPTS": "2"}
    child = subprocess.Popen(
        [sys.executable, "-m", "netflix_elt", "upload", str(landing), "--no-progress", *env_split],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not any(".part0002of" in k for k in staged(deployed)):
        assert child.poll() is None and time.monotonic() < deadline, child.communicate()
        time.sleep(0.05)
    proxy.stop()  # the server goes away
    out, err = child.communicate(timeout=300)
    assert child.returncode != 0, out + err
    assert "ratings_20240805.csv: upload failed" in err and "Run the upload again" in err
    assert "could not be deleted; the next upload deletes them" in err
    assert staged(deployed), "parts sent before S3 went away are still there (it could not delete them)"

    report = upload_to(
        deployed,
        landing,
        split_threshold=2 * MiB,
        part_size=1 * MiB,
    )
    assert [f.status for f in report.files] == ["uploaded"]
    assert any("ratings_20240805.csv" in note for note in report.recovered), report.recovered
    keys = staged(deployed)
    assert sorted(k.removeprefix(deployed.settings.prefix) for k in keys if "ratings_20240805" in k) == sorted(
        report.uploaded_keys
    ), "only the complete upload's parts are left"
    summary = pipeline.load(report.uploaded_keys)
    assert summary["totals"]["rows_loaded"] == 400_000


# -- the emulator ----------------------------------------------------------------------------------------------------


def test_emulator_restarted_between_upload_and_load(deployed: LocalStack, files: Path, tmp_path: Path) -> None:
    landing = landing_of(tmp_path, files / "genome-tags.csv")
    up = cli(deployed, "upload", str(landing), "--no-progress")
    assert up.returncode == 0, up.stderr

    pid = int(deployed.snowflake.pidfile.read_text())
    os.killpg(pid, signal.SIGKILL)
    while deployed.status()["snowflake"]["running"] or port_open(deployed.snowflake.port):
        time.sleep(0.05)
    # a client of the stopped emulator is told at once what to do (not after minutes of retries)
    with pytest.raises(StackError, match=r"emulator is not running .* Start the local stack with `netflix-elt up`"):
        pipeline.load()

    # `netflix-elt load` starts what is not running; the staged file, the procedure and the tracking survived
    again = cli(deployed, "load")
    assert again.returncode == 0, again.stdout + again.stderr
    assert deployed.status()["snowflake"]["running"]
    rows = sum(1 for _ in (files / "genome-tags.csv").open()) - 1
    with deployed.connect(schema="RAW") as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT COUNT(*) FROM {contracts.CONTRACTS['genome-tags'].qualified_raw_table}")
        assert cur.fetchone()[0] == rows
    assert pipeline.load()["status"] == "NOTHING_TO_LOAD"
