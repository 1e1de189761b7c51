"""Faults of the services: an S3 server that is down, slow, stalled or goes away in the middle of an upload, and a
Snowflake emulator that is stopped and restarted between the steps of the pipeline. Each ends in a clear message that
says what to do, and the next run repairs whatever was left."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
import types
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


class _Clock(type):
    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, dt.datetime)


def _uploader_clock(ahead: dt.timedelta) -> object:
    """``datetime`` for uploader.lock with its clock ``ahead`` of this machine's (the server's stays true)."""

    class Later(dt.datetime, metaclass=_Clock):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> dt.datetime:  # type: ignore[override]
            return dt.datetime.now(tz) + ahead

    return types.SimpleNamespace(datetime=Later, timedelta=dt.timedelta, UTC=dt.UTC)


def test_multipart_uploads_left_for_more_than_a_day_are_aborted_and_newer_ones_kept(
    deployed: LocalStack, files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that died on another machine left a multipart upload under the prefix. An upload run 23 hours later leaves
    it (it may be a live upload elsewhere); one run 25 hours later aborts it and says so."""
    import uploader.lock

    s3, bucket, prefix = deployed.s3_client(), deployed.settings.bucket, deployed.settings.prefix
    orphan = s3.create_multipart_upload(Bucket=bucket, Key=f"{prefix}ratings/20240101T000000Z_0/ratings.csv")
    s3.upload_part(Bucket=bucket, Key=orphan["Key"], UploadId=orphan["UploadId"], PartNumber=1, Body=b"x" * 1024)

    def open_uploads() -> list[str]:
        return [u["UploadId"] for u in uploader.lock.multipart_uploads(s3, bucket, prefix)]

    for later in ("23h", "25h"):
        (tmp_path / later).mkdir()
    monkeypatch.setattr(uploader.lock, "dt", _uploader_clock(dt.timedelta(hours=23)))
    kept = upload_to(deployed, landing_of(tmp_path / "23h", files / "links.csv"))
    assert open_uploads() == [orphan["UploadId"]]
    assert not any("aborted" in note for note in kept.recovered), kept.recovered

    monkeypatch.setattr(uploader.lock, "dt", _uploader_clock(dt.timedelta(hours=25)))
    later = upload_to(deployed, landing_of(tmp_path / "25h", files / "links.csv"))
    assert open_uploads() == []
    assert later.recovered == ["aborted 1 multipart upload(s) abandoned over a day ago"], later.recovered


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


# the connector's own thread that tries to abort the lost query fails too (nothing answers): not this test's concern
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_connection_lost_during_a_call_reads_as_a_message_and_the_rerun_loads_the_rest(
    deployed: LocalStack, tmp_path: Path
) -> None:
    """The network between the client and Snowflake goes down during a CALL: after NETFLIX_ELT_SNOWFLAKE_TIMEOUT
    seconds of the connector's retries, the load says the connection was lost and to run it again. The CALL itself runs
    on; the next load finds every row loaded once."""
    daily = tmp_path / "ratings_20240806.csv"
    daily.write_text(
        "userId,movieId,rating,timestamp\n" + "".join(f"{u},{u % 97 + 1},4.5,1722902400\n" for u in range(1, 501))
    )
    (key,) = upload_to(deployed, landing_of(tmp_path, daily)).uploaded_keys
    before = raw_rows(deployed)

    proxy = Proxy(deployed.snowflake.port, watch=b"POST /queries/v1/query-request").start()
    through_proxy = dataclasses.replace(deployed.settings, snowflake_port=proxy.port, snowflake_timeout=15)
    outcome: list[BaseException | dict[str, object]] = []

    def load() -> None:
        try:
            outcome.append(pipeline.load([key], settings=through_proxy))
        except BaseException as e:  # the assertion below shows it
            outcome.append(e)

    # another CALL holds the claim lock, so this CALL is still running (waiting for its turn) when the network goes
    with deployed.connect(schema="RAW", autocommit=False) as holder:
        holder.cursor().execute("UPDATE RAW.LOAD_LOCK SET HELD_BY = 'another CALL'")
        caller = threading.Thread(target=load)
        caller.start()
        assert proxy.forwarded.wait(120), "the CALL never went through the proxy"
        time.sleep(1)  # the rest of the request
        proxy.stop()
        caller.join(300)
        holder.rollback()
    assert len(outcome) == 1 and isinstance(outcome[0], StackError), outcome
    message = str(outcome[0])
    assert message.startswith("the connection to Snowflake was lost during the CALL"), message
    assert message.endswith("Run the load again to load the rest."), message

    # the CALL ran on without its client: its turn came once the lock was free, and it loaded the file once
    deadline = time.monotonic() + 300
    while status_of(deployed, key) in {None, "LOADING"} and time.monotonic() < deadline:
        time.sleep(0.5)
    assert status_of(deployed, key) == "LOADED"
    again = pipeline.load([key], settings=deployed.settings)
    assert again["status"] == "NOTHING_TO_LOAD", again
    assert raw_rows(deployed) == before + 500


def raw_rows(stack: LocalStack) -> int:
    with stack.connect(schema="RAW") as conn:
        cur = conn.cursor()
        cur.execute("SELECT COUNT(*) FROM RAW.RATINGS")
        return int(cur.fetchone()[0])


def status_of(stack: LocalStack, key: str) -> str | None:
    with stack.connect(schema="RAW") as conn:
        cur = conn.cursor()
        cur.execute("SELECT STATUS FROM RAW.LOAD_TRACKING WHERE FILE_KEY = %s", (key,))
        row = cur.fetchone()
        return None if row is None else str(row[0])
