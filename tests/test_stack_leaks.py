"""The local stack leaks nothing to another local user: no secret on a command line (``ps`` shows
every process's argv to everyone), servers on 127.0.0.1 only, private state files, `down` never signals a process
the stack did not start, and the uploader never reads or prints a file outside the landing directory. `make
airflow`'s processes are watched the same way during tests/test_airflow_ui.py's run of the DAG."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from netflix_elt.contracts import CONTRACTS
from netflix_elt.generate import generate
from netflix_elt.stack import LocalStack
from tests.conftest import REPO, free_port, make_stack
from tests.processes import Seen, listening_beyond_loopback, mode, observe, secrets_on_command_lines

pytestmark = pytest.mark.slow(minutes=1)


def stack_pids(stack: LocalStack) -> list[int]:
    return [int(p.read_text()) for p in (stack.s3.pidfile, stack.snowflake.pidfile) if p.exists()]


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
