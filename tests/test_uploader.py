"""The uploader against the local stack's real S3 server: contracts first, content-addressed keys, skip what is there,
split large files into gzip parts at record ends, and a command line with meaningful exit codes."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netflix_elt import contracts
from netflix_elt.generate import generate
from netflix_elt.stack import LocalStack
from tests.conftest import REPO
from uploader import LandingError, UploadError, UploadReport, file_sha256, index_key, split_csv, upload
from uploader.split import RecordCounter, find_record_end

pytestmark = pytest.mark.stack

TAGS_HEADER = ["userId", "movieId", "tag", "timestamp"]


# -- fixtures and helpers --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def s3(stack: LocalStack) -> Any:
    return stack.s3_client()


@pytest.fixture(scope="session")
def bucket(stack: LocalStack) -> str:
    return stack.settings.bucket


@pytest.fixture()
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}/"


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated tiny snapshot (six files); tests copy it before changing anything."""
    out = tmp_path_factory.mktemp("tiny")
    generate(out, scale="tiny", seed=11)
    return out


@pytest.fixture()
def landing(tiny: Path, tmp_path: Path) -> Path:
    out = tmp_path / "landing"
    shutil.copytree(tiny, out)
    return out


def run(s3: Any, bucket: str, landing: Path, prefix: str, **kwargs: Any) -> UploadReport:
    return upload(landing, bucket=bucket, prefix=prefix, s3_client=s3, progress=False, **kwargs)


def list_keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return sorted(keys)


def get(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def metadata(s3: Any, bucket: str, key: str) -> dict[str, str]:
    """Object metadata with lower-case names (AWS lower-cases them, rclone capitalises them)."""
    return {k.lower(): v for k, v in s3.head_object(Bucket=bucket, Key=key)["Metadata"].items()}


def sha256_of(path: Path) -> str:
    return file_sha256(path)[0]


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def read_csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))


def tricky_tags(n: int, seed: int = 3) -> list[list[str]]:
    """Tag rows whose tags contain newlines (some long enough that a naive cut lands inside them), quotes, commas."""
    rnd = random.Random(seed)
    choices = ["funny", 'a "quoted" tag', "two\nlines", "comma, inside", "x" * 40, "long\n" * 150, '"\n"\n,"']
    return [[str(1 + i // 7), str(10 + i), rnd.choice(choices), str(1_500_000_000 + i)] for i in range(n)]


# -- upload, identity, metadata --------------------------------------------------------------------------------------


def test_generated_files_upload_byte_identical(s3: Any, bucket: str, landing: Path, prefix: str) -> None:
    report = run(s3, bucket, landing, prefix)

    assert [f.status for f in report.files] == ["uploaded"] * 6
    assert report.uploaded_keys == [k for f in report.files for k in f.keys]
    for f in report.files:
        source = landing / f.name
        sha = sha256_of(source)
        assert f.sha256 == sha and f.parts == 0 and len(f.keys) == 1
        parsed = contracts.parse_stage_key(f.keys[0])
        assert parsed is not None, f.keys[0]
        assert (parsed.dataset, parsed.name, parsed.checksum, parsed.part) == (f.dataset, f.name, sha[:16], None)
        assert parsed.uploaded_at == report.uploaded_at
        key = prefix + f.keys[0]
        assert get(s3, bucket, key) == source.read_bytes()
        meta = metadata(s3, bucket, key)
        assert meta["sha256"] == sha
        assert meta["source-file"] == f.name and meta["source-size"] == str(source.stat().st_size)
        index = json.loads(get(s3, bucket, index_key(prefix, sha)))
        assert index["keys"] == f.keys and index["file_name"] == f.name
        assert index["size"] == source.stat().st_size and index["uploaded_at"] == report.uploaded_at
        assert index["parts"] == []
    ratings = next(f for f in report.files if f.dataset == "ratings")
    assert ratings.rows == 1_000  # the tiny scale's ratings
    # the stage's prefix holds exactly the data objects; the index (one object per file) lives outside it
    index_keys = [index_key(prefix, f.sha256 or "") for f in report.files]
    assert list_keys(s3, bucket, prefix) == sorted(prefix + k for k in report.uploaded_keys)
    assert list_keys(s3, bucket, index_key(prefix, "")[: -len(".json")]) == sorted(index_keys)
    json.dumps(report.to_dict())
    table = report.summary()
    assert "ratings.csv" in table and "6 uploaded" in table


def test_rerun_and_renamed_content_upload_nothing(
    s3: Any, bucket: str, landing: Path, prefix: str, tmp_path: Path
) -> None:
    first = run(s3, bucket, landing, prefix)
    before = list_keys(s3, bucket, prefix)

    again = run(s3, bucket, landing, prefix)
    assert [f.status for f in again.files] == ["already uploaded"] * 6
    assert again.uploaded_keys == []
    assert [f.keys for f in again.files] == [f.keys for f in first.files]
    assert again.staged_keys == first.uploaded_keys

    renamed = tmp_path / "renamed"
    renamed.mkdir()
    shutil.copy(landing / "ratings.csv", renamed / "ratings_20240722.csv")
    shutil.copy(landing / "ratings.csv", renamed / "ratings_20240723.csv")  # twice in one run, too
    third = run(s3, bucket, renamed, prefix)
    original = next(f for f in first.files if f.name == "ratings.csv")
    assert [(f.name, f.status, f.keys) for f in third.files] == [
        ("ratings_20240722.csv", "already uploaded", original.keys),
        ("ratings_20240723.csv", "already uploaded", original.keys),
    ]
    assert "ratings.csv" in third.files[0].note
    assert list_keys(s3, bucket, prefix) == before


def test_same_content_twice_in_one_run_is_uploaded_once(
    s3: Any, bucket: str, tiny: Path, prefix: str, tmp_path: Path
) -> None:
    shutil.copy(tiny / "tags.csv", tmp_path / "tags_20240101.csv")
    shutil.copy(tiny / "tags.csv", tmp_path / "tags_20240102.csv")
    report = run(s3, bucket, tmp_path, prefix)
    assert [f.status for f in report.files] == ["uploaded", "already uploaded"]
    assert report.files[1].keys == report.files[0].keys
    assert "same content as tags_20240101.csv" in report.files[1].note
    assert len(report.uploaded_keys) == 1


def test_dry_run_writes_nothing(s3: Any, bucket: str, landing: Path, prefix: str) -> None:
    report = run(s3, bucket, landing, prefix, dry_run=True)
    assert {f.status for f in report.files} == {"would upload"}
    assert all(contracts.parse_stage_key(f.keys[0]) for f in report.files)
    assert report.uploaded_keys == []
    assert list_keys(s3, bucket, prefix) == []


# -- contracts before anything is uploaded ---------------------------------------------------------------------------


def test_wrong_header_or_unknown_name_uploads_nothing(s3: Any, bucket: str, landing: Path, prefix: str) -> None:
    ratings = landing / "ratings.csv"
    lines = ratings.read_text().splitlines(keepends=True)
    ratings.write_text("userId,movieId,timestamp,rating\n" + "".join(lines[1:]))
    (landing / "ratings_final.csv").write_text(lines[0])

    with pytest.raises(LandingError) as raised:
        run(s3, bucket, landing, prefix)

    message = str(raised.value)
    assert len(raised.value.problems) == 2
    assert "ratings.csv: wrong header for ratings" in message
    assert "expected: userId,movieId,rating,timestamp" in message
    assert "found:    userId,movieId,timestamp,rating" in message
    assert "another order" in message
    assert "ratings_final.csv: not a MovieLens file name" in message
    assert contracts.expected_file_names() in message
    assert "nothing was uploaded" in message
    assert list_keys(s3, bucket, prefix) == []  # the four good files were not uploaded either


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "the file is empty"),
        # a byte-order mark and CRLF line ends: the contract's check accepts them (Snowflake's CSV format does too)
        (b"\xef\xbb\xbfmovieId,title,genres\n1,A (1999),Drama\n", None),
        (b"movieId,title,genres\r\n1,A (1999),Drama\r\n", None),
        (b"movieId,title\n1,A (1999)\n", "missing genres"),
        (gzip.compress(b"movieId,title,genres\n", mtime=0), "gzip-compressed; name it movies.csv.gz"),
        (b"movieId;title;genres\n", "missing movieId, title, genres"),
    ],
)
def test_header_problems(
    s3: Any, bucket: str, tmp_path: Path, prefix: str, content: bytes, expected: str | None
) -> None:
    (tmp_path / "movies.csv").write_bytes(content)
    if expected is None:
        assert run(s3, bucket, tmp_path, prefix).files[0].status == "uploaded"
        return
    with pytest.raises(LandingError, match=expected):
        run(s3, bucket, tmp_path, prefix)
    assert list_keys(s3, bucket, prefix) == []


def test_gzip_files_are_checked_through_gzip_and_uploaded_as_they_are(
    s3: Any, bucket: str, tiny: Path, tmp_path: Path, prefix: str
) -> None:
    good = tmp_path / "ratings.csv.gz"
    good.write_bytes(gzip.compress((tiny / "ratings.csv").read_bytes()))
    report = run(s3, bucket, tmp_path, prefix, split_threshold=1024, part_size=1024)  # .gz is never split
    [f] = report.files
    assert (f.status, f.parts, f.rows) == ("uploaded", 0, None)
    assert f.keys[0].endswith("/ratings.csv.gz")
    assert get(s3, bucket, prefix + f.keys[0]) == good.read_bytes()

    bad = tmp_path / "tags.csv.gz"
    bad.write_bytes(gzip.compress(b"userId,movieId,timestamp,tag\n1,2,3,x\n"))
    (tmp_path / "links.csv.gz").write_bytes(b"not gzip at all")
    with pytest.raises(LandingError) as raised:
        run(s3, bucket, tmp_path, f"{prefix}second/")
    message = str(raised.value)
    assert "tags.csv.gz: wrong header for tags" in message
    assert "links.csv.gz: not a readable gzip file" in message


def test_directories_hidden_temp_and_other_files(s3: Any, bucket: str, tiny: Path, tmp_path: Path, prefix: str) -> None:
    shutil.copy(tiny / "movies.csv", tmp_path / "movies.csv")
    (tmp_path / "ratings.csv").mkdir()
    (tmp_path / "ratings.csv" / "ratings.csv").write_text("inside a directory: not scanned\n")
    (tmp_path / "README.txt").write_text("notes\n")
    (tmp_path / ".tags.csv.swp").write_text("editor swap file\n")
    (tmp_path / "tags.csv.part").write_text("still being written\n")
    (tmp_path / "links.csv.tmp").write_text("still being written\n")

    report = run(s3, bucket, tmp_path, prefix)

    by_name = {f.name: f for f in report.files}
    assert set(by_name) == {"movies.csv", "ratings.csv", "README.txt"}
    assert by_name["movies.csv"].status == "uploaded"
    assert by_name["ratings.csv"].status == "skipped" and "directory" in by_name["ratings.csv"].note
    assert by_name["README.txt"].status == "skipped"
    assert report.uploaded_keys == by_name["movies.csv"].keys
    assert "skipped" in report.summary()


def test_missing_landing_directory(s3: Any, bucket: str, tmp_path: Path, prefix: str) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run(s3, bucket, tmp_path / "nope", prefix)


def test_missing_bucket_is_a_clear_error(s3: Any, landing: Path, prefix: str) -> None:
    with pytest.raises(UploadError, match="bucket 'no-such-bucket' does not exist"):
        run(s3, "no-such-bucket", landing, prefix)


# -- splitting -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [5, 1000, 1 << 20])
def test_split_never_cuts_inside_a_quoted_field(tmp_path: Path, chunk_size: int) -> None:
    rows = tricky_tags(1500)
    source = tmp_path / "tags.csv"
    write_csv(source, TAGS_HEADER, rows)

    parts = list(split_csv(source, 8 * 1024, tmp_dir=tmp_path, chunk_size=chunk_size))

    assert len(parts) > 10
    got: list[list[str]] = []
    for part in parts:
        data = gzip.decompress(part.path.read_bytes())
        assert data.startswith(b"userId,movieId,tag,timestamp\n") and data.endswith(b"\n")
        parsed = read_csv_rows(data)
        assert parsed[0] == TAGS_HEADER and len(parsed) - 1 == part.rows
        got += parsed[1:]
    assert got == rows
    assert sum(p.source_bytes for p in parts) == source.stat().st_size
    assert [p.number for p in parts] == list(range(1, len(parts) + 1))


def test_split_edge_cases(tmp_path: Path) -> None:
    header_only = tmp_path / "tags.csv"
    header_only.write_bytes(b"userId,movieId,tag,timestamp\n")
    [part] = split_csv(header_only, 10)
    assert part.rows == 0 and gzip.decompress(part.path.read_bytes()) == b"userId,movieId,tag,timestamp\n"
    part.path.unlink()

    no_final_newline = tmp_path / "tags_20240101.csv"
    no_final_newline.write_bytes(b"userId,movieId,tag,timestamp\n1,2,a,3\n4,5,b,6")
    parts = list(split_csv(no_final_newline, 1))
    assert [p.rows for p in parts] == [1, 1]
    assert gzip.decompress(parts[1].path.read_bytes()) == b"userId,movieId,tag,timestamp\n4,5,b,6"
    for p in parts:
        p.path.unlink()

    closed_early = split_csv(no_final_newline, 1, tmp_dir=tmp_path)
    first = next(closed_early)
    closed_early.close()  # the part being written is removed; the yielded one belongs to the caller
    first.path.unlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tags.csv", "tags_20240101.csv"]


def test_record_counting() -> None:
    counter = RecordCounter()
    for piece in [b'a,"b\n', b'c""\nd",e\n', b"f,g"]:
        counter.feed(piece)
    assert (counter.records, counter.total) == (1, 2)
    assert find_record_end(b'1,"x\ny"\n2,z\n', 0, False) == 7
    assert find_record_end(b'x\n"\n', 3, False) == -1  # position 3 is inside the quotes
    assert find_record_end(b'y\n"\nz\n', 0, True) == 3  # starts inside a quoted field


def test_large_file_is_split_into_gzip_parts(s3: Any, bucket: str, tmp_path: Path, prefix: str) -> None:
    rows = tricky_tags(3000)
    source = tmp_path / "tags.csv"
    write_csv(source, TAGS_HEADER, rows)
    small = tmp_path / "movies.csv"
    write_csv(small, ["movieId", "title", "genres"], [["1", "A, the (1999)", "Drama"]])
    assert source.stat().st_size > 4 * 64 * 1024

    report = run(s3, bucket, tmp_path, prefix, split_threshold=64 * 1024, part_size=64 * 1024)

    movies, tags = report.files
    assert movies.parts == 0 and movies.keys[0].endswith("/movies.csv")
    assert tags.status == "uploaded" and tags.parts == len(tags.keys) >= 4
    sha = sha256_of(source)
    got: list[list[str]] = []
    for n, key in enumerate(tags.keys, start=1):
        parsed = contracts.parse_stage_key(key)
        assert parsed is not None
        assert (parsed.part, parsed.parts, parsed.name, parsed.checksum) == (n, tags.parts, "tags.csv", sha[:16])
        assert parsed.source_key == key.removesuffix(f".part{n:04d}of{tags.parts:04d}.csv.gz")
        body = get(s3, bucket, prefix + key)
        assert body[:2] == b"\x1f\x8b"
        data = gzip.decompress(body)
        assert data.startswith(b"userId,movieId,tag,timestamp\n")
        part_rows = read_csv_rows(data)[1:]
        assert len(part_rows) == tags.part_rows[n - 1]
        got += part_rows
        meta = metadata(s3, bucket, prefix + key)
        assert meta["sha256"] == sha and meta["part"] == str(n)
    assert got == rows  # no row lost, doubled or cut
    assert tags.rows == len(rows) == sum(tags.part_rows)
    assert tags.uploaded_bytes < source.stat().st_size

    index = json.loads(get(s3, bucket, index_key(prefix, sha)))
    assert index["keys"] == tags.keys and index["rows"] == len(rows)
    assert [p["rows"] for p in index["parts"]] == tags.part_rows
    assert sum(p["rows"] for p in index["parts"]) == len(rows)

    # the first parts are compressed while the file is hashed; content already uploaded leaves none of them behind
    parts_dir = tmp_path.parent / f"{tmp_path.name}-parts"
    parts_dir.mkdir()
    again = run(s3, bucket, tmp_path, prefix, split_threshold=64 * 1024, part_size=64 * 1024, tmp_dir=parts_dir)
    assert [f.status for f in again.files] == ["already uploaded"] * 2
    assert again.files[1].keys == tags.keys and again.files[1].part_rows == tags.part_rows
    assert list(parts_dir.iterdir()) == []


class FailingClient:
    """An S3 client that fails the upload of the keys that contain a text and passes everything else to the real one."""

    def __init__(self, real: Any, fail_suffix: str) -> None:
        self._real = real
        self._fail_suffix = fail_suffix

    def upload_file(self, filename: str, bucket: str, key: str, **kwargs: Any) -> None:
        if self._fail_suffix in key:
            raise OSError("simulated network failure")
        self._real.upload_file(filename, bucket, key, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_failure_mid_file_leaves_nothing_and_a_rerun_completes(
    s3: Any, bucket: str, tmp_path: Path, prefix: str
) -> None:
    write_csv(tmp_path / "tags.csv", TAGS_HEADER, tricky_tags(2000))
    options: dict[str, Any] = {"split_threshold": 32 * 1024, "part_size": 32 * 1024}

    parts_dir = tmp_path.parent / f"{tmp_path.name}-parts"
    parts_dir.mkdir()
    failing = FailingClient(s3, ".part0003of")
    with pytest.raises(UploadError, match="simulated network failure") as raised:
        run(failing, bucket, tmp_path, prefix, tmp_dir=parts_dir, **options)
    assert raised.value.report is not None
    assert list_keys(s3, bucket, prefix) == []  # parts 1 and 2 removed, no index
    assert list(parts_dir.iterdir()) == []  # no compressed part left behind

    report = run(s3, bucket, tmp_path, prefix, **options)
    assert report.files[0].status == "uploaded" and report.files[0].parts >= 3


class AppendingClient(FailingClient):
    """An S3 client that appends a row to the file while uploading it, like a writer that is not done yet."""

    def upload_file(self, filename: str, bucket: str, key: str, **kwargs: Any) -> None:
        self._real.upload_file(filename, bucket, key, **kwargs)
        with open(filename, "a") as f:
            f.write("1,2,3.5,1700000000\n")


def test_a_file_that_changes_during_upload_is_undone(
    s3: Any, bucket: str, tiny: Path, tmp_path: Path, prefix: str
) -> None:
    shutil.copy(tiny / "ratings.csv", tmp_path / "ratings.csv")
    with pytest.raises(UploadError, match=r"ratings\.csv changed while it was being uploaded"):
        run(AppendingClient(s3, ""), bucket, tmp_path, prefix)
    assert list_keys(s3, bucket, prefix) == []


# -- the real MovieLens sample ---------------------------------------------------------------------------------------


def test_real_sample_uploads(s3: Any, bucket: str, sample_dir: Path, prefix: str) -> None:
    report = run(s3, bucket, sample_dir, prefix)
    uploaded = {f.name: f for f in report.uploaded}
    assert sorted(uploaded) == ["links.csv", "movies.csv", "ratings.csv", "tags.csv"]
    assert [f.name for f in report.skipped] == ["README.txt"]
    assert uploaded["ratings.csv"].rows == 100_836
    assert uploaded["movies.csv"].rows == 9_742  # titles with quotes and commas are counted as one record each
    assert get(s3, bucket, prefix + uploaded["movies.csv"].keys[0]) == (sample_dir / "movies.csv").read_bytes()


# -- command line ----------------------------------------------------------------------------------------------------


@pytest.fixture()
def cli_env(stack: LocalStack, prefix: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {**os.environ, **stack.env(), "NETFLIX_ELT_PREFIX": prefix, "PYTHONPATH": str(REPO)}
    yield env


def uploader_cli(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "uploader", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_cli_help(tmp_path: Path) -> None:
    result = uploader_cli(dict(os.environ, PYTHONPATH=str(REPO)), "--help", cwd=tmp_path)
    assert result.returncode == 0
    for option in ("--bucket", "--prefix", "--split-threshold", "--part-size", "--dry-run", "--no-progress", "--json"):
        assert option in result.stdout
    assert "Exit codes" in result.stdout


def test_cli_uploads_and_reports_json(
    cli_env: dict[str, str], s3: Any, bucket: str, landing: Path, prefix: str, tmp_path: Path
) -> None:
    result = uploader_cli(
        cli_env, str(landing), "--json", "--split-threshold", "8KiB", "--part-size", "8KiB", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["totals"]["uploaded"] == 6 and report["prefix"] == prefix
    assert sorted(prefix + k for k in report["uploaded_keys"]) == [
        k for k in list_keys(s3, bucket, prefix) if "/_index/" not in k
    ]
    assert any(f["parts"] > 1 for f in report["files"])  # ratings.csv is above 8 KiB

    table = uploader_cli(cli_env, str(landing), "--no-progress", cwd=tmp_path)
    assert table.returncode == 0 and "6 already uploaded" in table.stdout


def test_cli_bad_header_exits_2(
    cli_env: dict[str, str], s3: Any, bucket: str, landing: Path, prefix: str, tmp_path: Path
) -> None:
    (landing / "links.csv").write_text("movieId,tmdbId,imdbId\n1,2,0000003\n")
    result = uploader_cli(cli_env, str(landing), cwd=tmp_path)
    assert result.returncode == 2
    assert "links.csv: wrong header for links" in result.stderr
    assert "expected: movieId,imdbId,tmdbId" in result.stderr
    assert result.stdout == ""
    assert list_keys(s3, bucket, prefix) == []

    missing = uploader_cli(cli_env, str(tmp_path / "nope"), cwd=tmp_path)
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_register_cli_adds_the_upload_subcommand(tmp_path: Path) -> None:
    import argparse

    from uploader import register_cli, run_cli

    parser = argparse.ArgumentParser(prog="netflix-elt")
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["upload", str(tmp_path), "--part-size", "32MiB", "--split-threshold", "64k", "--dry-run"])
    assert args.func is run_cli
    assert (args.landing_dir, args.part_size, args.split_threshold, args.dry_run) == (
        tmp_path,
        32 << 20,
        64 << 10,
        True,
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["upload", str(tmp_path), "--part-size", "0"])
