"""Crash safety and concurrency on the local stack: real processes killed with SIGKILL in the middle of their work,
then run again. Whatever was interrupted, the rerun ends where an uninterrupted run would: the same RAW rows, each
file's content staged once, no multipart upload left open, and no file held "loading" by a CALL that is gone."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from netflix_elt import contracts, pipeline
from netflix_elt.generate import SCALES, generate
from netflix_elt.stack import LocalStack, port_open
from tests.conftest import REPO, sql, upload_to
from tests.proxy import Proxy
from uploader.core import INDEX_ROOT
from uploader.lock import multipart_uploads

pytestmark = pytest.mark.slow(minutes=1)

MiB = 1 << 20


@pytest.fixture(scope="module")
def deployed(deployed_stack: LocalStack) -> LocalStack:
    return deployed_stack


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated files with a ratings.csv of about 50 MB (2M ratings)."""
    out = tmp_path_factory.mktemp("big")
    scale = dataclasses.replace(SCALES["small"], name="crash", ratings=2_000_000, genome_movies=5)
    generate(out, scale, seed=71)
    return out


# -- helpers ------------------------------------------------------------------------------------------------------


def data_rows(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f) - 1


def landing_with(tmp: Path, *files: Path) -> Path:
    landing = tmp / "landing"
    landing.mkdir(exist_ok=True)
    for f in files:
        (landing / f.name).hardlink_to(f)  # a symbolic link out of the landing directory is refused
    return landing


def s3_keys(stack: LocalStack, prefix: str) -> list[str]:
    client = stack.s3_client()
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=stack.settings.bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def open_multipart_uploads(stack: LocalStack) -> list[str]:
    return [u["Key"] for u in multipart_uploads(stack.s3_client(), stack.settings.bucket, "")]


def staged_sources(stack: LocalStack) -> dict[str, list[str]]:
    """{checksum: source keys staged with that content}: each content should be staged under one key."""
    out: dict[str, set[str]] = {}
    for key in s3_keys(stack, stack.settings.prefix):
        parsed = contracts.parse_stage_key(key.removeprefix(stack.settings.prefix))
        if parsed is not None:
            out.setdefault(parsed.checksum, set()).add(parsed.source_key)
    return {k: sorted(v) for k, v in out.items()}


def raw_rows(stack: LocalStack, dataset: str) -> int:
    return int(sql(stack, f"SELECT COUNT(*) FROM {contracts.CONTRACTS[dataset].qualified_raw_table}")[0][0])


def uploader_process(
    stack: LocalStack, landing: Path, *args: str, endpoint: str | None = None
) -> subprocess.Popen[str]:
    env = {**os.environ, **stack.env(), "AWS_ENDPOINT_URL": endpoint or stack.settings.s3_endpoint}
    return subprocess.Popen(
        [sys.executable, "-m", "uploader", str(landing), "--no-progress", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(
    condition: Callable[[], bool], what: str, timeout: float = 120.0, proc: subprocess.Popen[str] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the process ended (exit {proc.returncode}) before {what}:\n{out}\n{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def kill9(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


# -- the uploader killed ---------------------------------------------------------------------------------------


def test_uploader_killed_in_a_multipart_upload(deployed: LocalStack, big: Path, tmp_path: Path) -> None:
    ratings = big / "ratings.csv"
    landing = landing_with(tmp_path, ratings)
    before = raw_rows(deployed, "ratings")
    with Proxy(deployed.s3.port, bytes_per_second=4 * MiB) as slow:
        proc = uploader_process(deployed, landing, endpoint=slow.url)
        wait_for(lambda: bool(open_multipart_uploads(deployed)), "a multipart upload to start", proc=proc)
        time.sleep(0.5)
        kill9(proc)
    assert open_multipart_uploads(deployed), "the killed run left its multipart upload open"

    report = upload_to(deployed, landing)
    assert [f.status for f in report.files] == ["uploaded"]
    assert any("multipart upload" in note for note in report.recovered), report.recovered
    assert "recovered: " in report.summary()
    assert open_multipart_uploads(deployed) == []
    assert all(len(keys) == 1 for keys in staged_sources(deployed).values())

    summary = pipeline.load(report.uploaded_keys)
    assert summary["status"] == "SUCCESS", summary
    assert raw_rows(deployed, "ratings") == before + data_rows(ratings)


def test_uploader_killed_while_sending_the_parts_of_a_split_file(
    deployed: LocalStack, big: Path, tmp_path: Path
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    split_me = source / "ratings_20240801.csv"  # rows no other file of these tests holds alone
    split_me.write_text("".join((big / "ratings.csv").read_text().splitlines(keepends=True)[:600_001]))
    landing = landing_with(tmp_path, split_me)
    before = raw_rows(deployed, "ratings")
    options = ["--split-threshold", "4MiB", "--part-size", "2MiB"]
    with Proxy(deployed.s3.port, bytes_per_second=2 * MiB) as slow:
        proc = uploader_process(deployed, landing, *options, endpoint=slow.url)
        wait_for(
            lambda: any("part0002of" in k for k in s3_keys(deployed, deployed.settings.prefix + "ratings/")),
            "two parts to be staged",
            proc=proc,
        )
        kill9(proc)

    # a CALL now sees an incomplete set of parts: it says so and loads nothing of it
    early = pipeline.load(datasets=["ratings"])
    incomplete = [f for f in early["files"] if f["status"] == "INCOMPLETE"]
    assert len(incomplete) == 1 and "run the uploader again" in incomplete[0]["first_error"], early
    assert "not completely staged" in early["message"]
    assert raw_rows(deployed, "ratings") == before

    report = upload_to(deployed, landing, split_threshold=4 * MiB, part_size=2 * MiB)
    assert [f.status for f in report.files] == ["uploaded"] and report.files[0].parts >= 5
    assert any("ratings_20240801.csv" in note for note in report.recovered), report.recovered
    sources = staged_sources(deployed)
    assert all(len(keys) == 1 for keys in sources.values()), sources  # the partial set is gone
    assert open_multipart_uploads(deployed) == []

    summary = pipeline.load(datasets=["ratings"])
    assert [f["status"] for f in summary["files"]] == ["LOADED"], summary
    assert raw_rows(deployed, "ratings") == before + data_rows(split_me)


def test_uploader_killed_between_files(deployed: LocalStack, tmp_path: Path) -> None:
    files = tmp_path / "files"
    generate(files, dataclasses.replace(SCALES["small"], name="crash", ratings=300_000, genome_movies=5), seed=72)
    landing = landing_with(tmp_path, *sorted(files.glob("*.csv")))
    index_prefix = f"{INDEX_ROOT}{deployed.settings.prefix}"
    before_index = set(s3_keys(deployed, index_prefix))
    with Proxy(deployed.s3.port, bytes_per_second=1 * MiB) as slow:
        proc = uploader_process(deployed, landing, endpoint=slow.url)
        wait_for(
            lambda: len(set(s3_keys(deployed, index_prefix)) - before_index) >= 1, "a first file to complete", proc=proc
        )
        kill9(proc)
    done_before_kill = len(set(s3_keys(deployed, index_prefix)) - before_index)
    assert done_before_kill < 6

    report = upload_to(deployed, landing)
    statuses = sorted(f.status for f in report.files)
    assert statuses.count("already uploaded") >= done_before_kill
    assert statuses.count("uploaded") + statuses.count("already uploaded") == 6
    assert all(len(keys) == 1 for keys in staged_sources(deployed).values())
    assert open_multipart_uploads(deployed) == []

    before = {d: raw_rows(deployed, d) for d in contracts.DATASETS}
    pipeline.load()
    for f in sorted(files.glob("*.csv")):
        dataset = contracts.match_file_name(f.name).contract.dataset  # type: ignore[union-attr]
        assert raw_rows(deployed, dataset) == before[dataset] + data_rows(f), f.name


def test_two_uploaders_at_once_upload_each_file_once(deployed: LocalStack, tmp_path: Path) -> None:
    files = tmp_path / "files"
    generate(files, dataclasses.replace(SCALES["small"], name="crash", ratings=200_000, genome_movies=5), seed=73)
    landing = landing_with(tmp_path, *sorted(files.glob("*.csv")))
    with Proxy(deployed.s3.port, bytes_per_second=2 * MiB) as slow:
        first = uploader_process(deployed, landing, "--json", endpoint=slow.url)
        second = uploader_process(deployed, landing, "--json", endpoint=slow.url)
        outs = [p.communicate(timeout=300) for p in (first, second)]
    assert (first.returncode, second.returncode) == (0, 0), outs
    reports = [json.loads(out) for out, _ in outs]
    uploaded = [f["name"] for r in reports for f in r["files"] if f["status"] == "uploaded"]
    assert len(uploaded) == len(set(uploaded)) >= 5  # by one of them only (genome-tags.csv may be staged already)
    for r in reports:
        assert {f["status"] for f in r["files"]} <= {"uploaded", "already uploaded"}
    assert any("waiting for it to finish" in err for _, err in outs), outs
    assert all(len(keys) == 1 for keys in staged_sources(deployed).values())
    before = raw_rows(deployed, "ratings")
    pipeline.load()
    assert raw_rows(deployed, "ratings") == before + data_rows(files / "ratings.csv")


# -- the CALL's caller and the emulator killed -----------------------------------------------------------------


def loading_keys(stack: LocalStack) -> list[str]:
    return [r[0] for r in sql(stack, "SELECT FILE_KEY FROM RAW.LOAD_TRACKING WHERE STATUS = 'LOADING'")]


def call_process(stack: LocalStack) -> subprocess.Popen[str]:
    code = "import json; from netflix_elt import pipeline; print(json.dumps(pipeline.load(datasets=['ratings'])))"
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def stage_rows(stack: LocalStack, source: Path, daily: Path, start: int, stop: int | None) -> tuple[Path, int]:
    """Stage a daily file holding lines ``start:stop`` of ``source`` (with its header) after loading whatever else
    is pending; returns it and the RAW ratings count before it is loaded."""
    lines = source.read_text().splitlines(keepends=True)
    daily.write_text(lines[0] + "".join(lines[start:stop]))
    del lines
    pipeline.load()
    upload_to(stack, landing_with(daily.parent, daily))
    return daily, raw_rows(stack, "ratings")


def test_caller_killed_during_a_call(deployed: LocalStack, big: Path, tmp_path: Path) -> None:
    daily, before = stage_rows(deployed, big / "ratings.csv", tmp_path / "ratings_20240802.csv", 600_001, 1_600_001)

    caller = call_process(deployed)
    wait_for(lambda: bool(loading_keys(deployed)), "the CALL to claim the file", proc=caller)
    kill9(caller)
    # like a query in Snowflake, the CALL runs on without its client; the file is never left half loaded: its COPY
    # commits, then the CALL records the outcome (at once: the rows are clean, nothing leaves RAW again; a tenth of a
    # second on an idle machine, 20 s leaves room for a busy one)
    expected = before + data_rows(daily)
    wait_for(lambda: raw_rows(deployed, "ratings") == expected, "the CALL's COPY", timeout=300)
    wait_for(lambda: not loading_keys(deployed), "the CALL to record the file's outcome", timeout=20)
    status = sql(deployed, "SELECT STATUS, ROWS_LOADED FROM RAW.LOAD_TRACKING WHERE FILE_NAME = 'ratings_20240802.csv'")
    assert status == [("LOADED", data_rows(daily))]

    again = pipeline.load(datasets=["ratings"])
    assert again["status"] == "NOTHING_TO_LOAD", again
    assert raw_rows(deployed, "ratings") == before + data_rows(daily)


def test_emulator_killed_during_a_call(deployed: LocalStack, big: Path, tmp_path: Path) -> None:
    daily, before = stage_rows(deployed, big / "ratings.csv", tmp_path / "ratings_20240803.csv", 1_600_001, None)

    caller = call_process(deployed)
    wait_for(lambda: bool(loading_keys(deployed)), "the CALL to claim the file", proc=caller)
    # the machine goes down: the CALL's client and the emulator are killed in the middle of the COPY
    kill9(caller)
    os.killpg(int(deployed.snowflake.pidfile.read_text()), signal.SIGKILL)
    wait_for(lambda: not port_open(deployed.snowflake.port), "the emulator to be gone")
    deployed.up()  # restart: the databases, the stage and the procedure are all still there
    assert raw_rows(deployed, "ratings") == before  # the interrupted COPY left no rows
    held = pipeline.load(datasets=["ratings"])
    skipped = [f for f in held["files"] if f["status"] == "SKIPPED"]
    assert len(skipped) == 1 and "takes the file over" in skipped[0]["first_error"], held
    assert raw_rows(deployed, "ratings") == before

    # an hour later (the claim's age is what counts), the next CALL takes the dead CALL's file over
    sql(deployed, "UPDATE RAW.LOAD_TRACKING SET CLAIMED_AT = DATEADD(minute, -61, CLAIMED_AT) WHERE STATUS = 'LOADING'")
    taken = pipeline.load(datasets=["ratings"])
    assert [f["status"] for f in taken["files"]] == ["LOADED"], taken
    assert raw_rows(deployed, "ratings") == before + data_rows(daily)
    attempts = sql(deployed, "SELECT ATTEMPTS FROM RAW.LOAD_TRACKING WHERE FILE_NAME = 'ratings_20240803.csv'")
    assert attempts == [(2,)]
    assert pipeline.load(datasets=["ratings"])["status"] == "NOTHING_TO_LOAD"
