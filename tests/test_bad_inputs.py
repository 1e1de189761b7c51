"""Bad input, case by case: what a user sees for every kind of broken landing file or procedure argument.

Every case ends one of three ways, and its test checks it the way a user would:

- **refused**: the uploader exits with code 2 and a message that names the file and says what to do; nothing is
  uploaded (no data object, no index object);
- **loaded**: the file loads, its bad rows are in ``RAW.LOAD_REJECTS`` with line and reason, ``RAW.LOAD_TRACKING`` says
  ``ROWS_PARSED = ROWS_LOADED + ROWS_REJECTED`` and the RAW table holds exactly ``ROWS_LOADED`` rows of the file (by
  its ``SOURCE_FILE``);
- **harmless**: ignored or skipped with a reason, and nothing changes.

``CASES`` is the catalogue: one entry per case, with the words README.md's table "Bad input: what happens" shows
for it. A test checks that the README lists exactly these cases with these outcomes, in this order. All cases share
one local stack; each case loads only its own files (``FILES => [...]``).
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import snowflake.connector.errors

from netflix_elt import contracts
from netflix_elt.stack import LocalStack
from tests import snapshots
from tests.conftest import REPO, make_stack
from uploader import UploadError, UploadReport, index_key, upload

pytestmark = pytest.mark.stack

README_SECTION = "Bad input: what happens"


@dataclass(frozen=True)
class Case:
    id: str
    case: str  # the README table's first column
    outcome: str  # what the user sees and what to do: the README table's second column


REFUSED = "Upload refused (exit code 2), nothing uploaded:"

CASES: tuple[Case, ...] = (
    Case(
        "wrong_header",
        "Wrong header (`userId,movieId,score,timestamp`)",
        f"{REFUSED} the message names the file and shows the expected and the found header. Fix the header line.",
    ),
    Case(
        "reordered_header",
        "Header with the right columns in another order",
        f"{REFUSED} the message says the columns are all there but in another order. Write them in the expected "
        "order (and the values with them).",
    ),
    Case(
        "missing_column",
        "Header without a column (`movieId,title`)",
        f"{REFUSED} the message says which column is missing (`missing genres`). Add the column to the file.",
    ),
    Case(
        "extra_column",
        "Header with an extra column",
        f"{REFUSED} the message names the unexpected column. Remove it from the file.",
    ),
    Case(
        "missing_fields_in_row",
        "Rows with too few fields",
        "Loaded, `PARTIALLY_LOADED`: each short row is rejected once, with its line and `Number of columns in file "
        "(2) does not match that of the corresponding table (4)`; the other rows load.",
    ),
    Case(
        "extra_field_in_row",
        "A row with too many fields",
        "Loaded, `PARTIALLY_LOADED`: the row is rejected with its line and `Number of columns in file (5) ...`.",
    ),
    Case(
        "crlf",
        "Windows (CRLF) line endings",
        "Loaded like LF: every row loads, and no value keeps a stray carriage return.",
    ),
    Case(
        "bom",
        "UTF-8 byte-order mark at the start",
        "Loaded: the mark is part of the header line, which is skipped; every row loads.",
    ),
    Case(
        "empty_file",
        "Empty (0-byte) file",
        f"{REFUSED} `the file is empty; it must start with the header line`. Remove it, or write the file again.",
    ),
    Case(
        "header_only",
        "Header only, no rows",
        "Uploaded and loaded as a file of 0 rows (`LOADED`, 0 rows parsed): nothing to do.",
    ),
    Case(
        "invalid_utf8_in_row",
        "A row that is not UTF-8 (a Latin-1 `é`)",
        "Loaded, `PARTIALLY_LOADED`: the row is rejected with its line and `Invalid UTF8 detected in string`. Save "
        "the file as UTF-8 and load the corrected rows as a new file.",
    ),
    Case(
        "invalid_utf8_in_header",
        "A header line that is not UTF-8",
        f"{REFUSED} `the header line is not UTF-8 text`. Save the file as UTF-8.",
    ),
    Case(
        "unterminated_quote",
        'A quoted field that is never closed (`3,4,"open tag,100`)',
        f"{REFUSED} the message gives the data row that opens the quote (every line after it would be one field). "
        'Close the quote; inside a quoted field, write `"` as `""`.',
    ),
    Case(
        "newline_in_quoted_field",
        "A line break inside a quoted field",
        "Loaded: the row loads whole, with its line break (LF or CRLF) in the value.",
    ),
    Case(
        "one_mb_field",
        "A 1 MB field",
        "Loaded: the value is loaded whole (a field may be up to 16 MB).",
    ),
    Case(
        "nul_bytes",
        "NUL bytes",
        "A NUL inside a text field is a valid character and loads as it is; in a number field the row is rejected "
        "with `Numeric value ... is not recognized`; a run of NULs where rows should be (a file padded by a "
        "crashed writer) is rejected as one row with too few fields.",
    ),
    Case(
        "rating_out_of_range",
        "Rating outside 0.5–5.0 (`7.0`, `0.0`, `-1.0`, `10`)",
        "Loaded, `PARTIALLY_LOADED`: each such row is rejected with its line and `Value '7.0' of rating is not "
        "allowed (0.5 to 5.0 in half-star steps)` (`10` does not fit `NUMBER(2,1)`: `Numeric value '10' is out of "
        "range`); `RAW.RATINGS` holds only valid ratings.",
    ),
    Case(
        "rating_not_half_step",
        "Rating that is not a half star (`3.7`, `3.25`)",
        "Loaded, `PARTIALLY_LOADED`: rejected like an out-of-range rating. A value with more than one decimal is "
        "first rounded to one, as `NUMBER(2,1)` does: `3.25` is rejected as `3.3`, `4.04` becomes `4.0` and loads.",
    ),
    Case(
        "non_integer_ids",
        "Ids that are not integers (`abc`, `12x`, `1.5`)",
        "Loaded, `PARTIALLY_LOADED`: `abc` and `12x` are rejected with `Numeric value 'abc' is not recognized`. A "
        "number with a fraction is rounded by the `NUMBER(38,0)` conversion, as Snowflake does: `1.5` loads as "
        "user 2 and is not reported.",
    ),
    Case(
        "empty_required_value",
        "An empty value in a required column",
        "Loaded, `PARTIALLY_LOADED`: the row is rejected with `NULL result in a non-nullable column`. Only "
        "`links.csv`'s `tmdbId` may be empty (it loads as NULL).",
    ),
    Case(
        "duplicate_rows",
        "The same row twice in a file",
        "Loaded: both rows are in RAW (it keeps every row, with its row number); `CORE.FCT_RATINGS` keeps one "
        "rating per user, movie and time (the last row wins).",
    ),
    Case(
        "same_content_new_name",
        "The same file again under a new name",
        "Not uploaded again: the report says `already uploaded` and names the file it was uploaded as. Forced "
        "(`--force`), the load marks it `DUPLICATE` (with `duplicate_of`) and loads nothing twice.",
    ),
    Case(
        "unknown_file_name",
        "An unknown file name (`ratings_final.csv`, `users.csv`)",
        f"{REFUSED} `not a MovieLens file name` with the accepted names. Rename the file or move it out of the "
        "landing directory.",
    ),
    Case(
        "odd_file_names",
        "File names with spaces, quotes, SQL (`'; DROP TABLE ...`) or non-ASCII letters",
        f"{REFUSED} each name is listed as `not a MovieLens file name`. An object staged under such a key by "
        "another tool is listed in the CALL's `ignored_keys` and loads nothing.",
    ),
    Case(
        "truncated_gz",
        "A truncated `.csv.gz`",
        f"{REFUSED} `not a complete gzip file: it ends after N bytes, in the middle of its compressed data`. Copy "
        "or compress it again.",
    ),
    Case(
        "corrupt_gz",
        "A corrupt `.csv.gz` (damaged in the middle)",
        f"{REFUSED} `not a readable gzip file: its compressed data is corrupt`. Compress the CSV file again.",
    ),
    Case(
        "not_gzip_named_gz",
        "A `.csv.gz` that is not gzip at all",
        f"{REFUSED} `not a readable gzip file`. Compress it, or remove `.gz` from its name.",
    ),
    Case(
        "gzip_named_csv",
        "A gzip file named `.csv`",
        f"{REFUSED} `the file is gzip-compressed; name it ratings.csv.gz`.",
    ),
    Case(
        "directory_named_like_csv",
        "A directory named `ratings.csv`",
        "Skipped: the report lists it as `skipped` (`a directory, not a file`); the upload goes on (exit code 0).",
    ),
    Case(
        "temporary_names",
        "Files still being written under a temporary name (`.ratings.csv.part`, `ratings.csv.tmp`)",
        "Ignored: not uploaded and not listed. Rename the file to its real name once it is complete.",
    ),
    Case(
        "file_grows_during_upload",
        "A file that grows while it is uploaded",
        "Upload fails (exit code 1): `ratings.csv changed while it was being uploaded; the upload of it was undone`, "
        "and nothing of it stays on the stage. Write files under a temporary name and rename them when complete.",
    ),
    Case(
        "split_with_no_empty_part",
        "A file whose split would end with an empty part",
        "No empty part is made: files are cut only after a record, so every part holds rows, and the parts load "
        "exactly the file's rows. A header-only file that is split is one part of 0 rows (`LOADED`).",
    ),
    Case(
        "sql_in_files_argument",
        "`CALL RAW.LOAD_RAW_FILES(FILES => ['x''); DROP TABLE RAW.RATINGS; --'])`",
        "Nothing happens: the key is only a string, listed in `ignored_keys`, and the message says it is not the "
        "stage key of a MovieLens file. Every table is still there.",
    ),
    Case(
        "sql_in_datasets_argument",
        "`CALL RAW.LOAD_RAW_FILES(DATASETS => ['ratings; DROP TABLE RAW.RATINGS; --'])`",
        "The CALL fails with `unknown dataset(s) ratings; DROP TABLE RAW.RATINGS; --; expected some of: movies, "
        "ratings, ...` and changes nothing.",
    ),
)


# -- the stack -------------------------------------------------------------------------------------------------------


@dataclass
class Env:
    stack: LocalStack
    state_dir: Path

    @property
    def bucket(self) -> str:
        return self.stack.settings.bucket

    @property
    def prefix(self) -> str:
        return self.stack.settings.prefix

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        with self.stack.connect(schema="RAW", network_timeout=300) as conn:
            cur = conn.cursor()
            cur.execute(query)
            return list(cur.fetchall())

    def call(self, query: str) -> dict[str, Any]:
        (value,) = self.sql(query)[0]
        result = json.loads(value) if isinstance(value, str) else value
        assert isinstance(result, dict)
        return result

    def load(self, keys: list[str]) -> dict[str, Any]:
        """CALL the procedure for these keys, as typed in a worksheet."""
        files = ", ".join("'" + k.replace("'", "''") + "'" for k in keys)
        return self.call(f"CALL RAW.LOAD_RAW_FILES(FILES => [{files}])")

    def upload(self, landing: Path, prefix: str | None = None, **kwargs: Any) -> UploadReport:
        kwargs.setdefault("s3_client", self.stack.s3_client())
        return upload(landing, bucket=self.bucket, prefix=prefix or self.prefix, progress=False, **kwargs)

    def cli(self, landing: Path, prefix: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            **self.stack.env(),
            "NETFLIX_ELT_PREFIX": prefix,
            "NETFLIX_ELT_UPLOAD_STATE_DIR": str(self.state_dir),
            "PYTHONPATH": str(REPO),
        }
        return subprocess.run(
            [sys.executable, "-m", "uploader", str(landing), "--no-progress"],
            env=env,
            cwd=landing.parent,
            capture_output=True,
            text=True,
            timeout=120,
        )

    def objects(self, prefix: str) -> list[str]:
        s3 = self.stack.s3_client()
        keys: list[str] = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    def nothing_uploaded(self, prefix: str) -> None:
        """No data object under ``prefix`` and no content index entry for it."""
        assert self.objects(prefix) == []
        assert self.objects(index_key(prefix, "").removesuffix(".json")) == []

    def of_file(self, key: str) -> str:
        """SQL: the RAW row comes from the file ``key`` or one of its parts. SOURCE_FILE is METADATA$FILENAME: the
        stage-relative key, or the object's path in the bucket (with the stage URL's path, the prefix)."""
        return f"(STARTSWITH(SOURCE_FILE, '{key}') OR STARTSWITH(SOURCE_FILE, '{self.prefix}{key}'))"

    def raw_rows(self) -> int:
        return int(self.sql("SELECT COUNT(*) FROM RAW.RATINGS")[0][0])


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One local stack for every case, with the migrations applied."""
    state_dir = tmp_path_factory.mktemp("upload-state")
    patch = pytest.MonkeyPatch()
    patch.setenv("NETFLIX_ELT_UPLOAD_STATE_DIR", str(state_dir))
    stack = make_stack(tmp_path_factory.mktemp("bad-inputs-stack"))
    try:
        snapshots.deploy(stack)  # starts the stack
        yield Env(stack, state_dir)
    finally:
        stack.down()
        patch.undo()


# -- how a case ends -------------------------------------------------------------------------------------------------


def landing(tmp_path: Path, files: dict[str, bytes]) -> Path:
    out = tmp_path / "landing"
    out.mkdir(parents=True)
    for name, content in files.items():
        (out / name).write_bytes(content)
    return out


def refused(env: Env, tmp_path: Path, files: dict[str, bytes], *expected: str) -> str:
    """Run the uploader's command line on these files: exit code 2, a message naming every file and each expected
    text, and nothing uploaded. Returns the message."""
    prefix = f"refused-{uuid.uuid4().hex[:8]}/"
    result = env.cli(landing(tmp_path, files), prefix)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    message = result.stderr
    assert "nothing was uploaded" in message
    assert "run the upload again" in message
    for name in files:
        assert f"{name}: " in message, name
    for text in expected:
        assert text in message, text
    env.nothing_uploaded(prefix)
    return message


@dataclass
class Loaded:
    key: str
    result: dict[str, Any]
    rejects: list[tuple[int, str, str]]  # line, error, rejected record, in file order


def load_files(env: Env, tmp_path: Path, files: dict[str, bytes], **upload_options: Any) -> dict[str, Loaded]:
    """Upload the files to the stage, load just them, and check what a user checks for every loaded file: the CALL's
    result and LOAD_TRACKING agree, ROWS_PARSED = ROWS_LOADED + ROWS_REJECTED, LOAD_REJECTS has one row per rejected
    row, and the RAW table has exactly ROWS_LOADED rows whose SOURCE_FILE is the file (or one of its parts)."""
    report = env.upload(landing(tmp_path, files), **upload_options)
    assert [f.status for f in report.files] == ["uploaded"] * len(files)  # distinct content in every case
    summary = env.load(report.uploaded_keys)
    by_name = {f.name: f for f in report.files}
    out: dict[str, Loaded] = {}
    for result in summary["files"]:
        parsed = contracts.parse_stage_key(result["file"])
        assert parsed is not None
        key = parsed.source_key
        assert result["status"] in {"LOADED", "PARTIALLY_LOADED"}, result
        assert result["rows_parsed"] == result["rows_loaded"] + result["rows_rejected"]
        ((status, rows_parsed, rows_loaded, rows_rejected, load_id),) = env.sql(
            "SELECT STATUS, ROWS_PARSED, ROWS_LOADED, ROWS_REJECTED, LOAD_ID FROM RAW.LOAD_TRACKING "
            f"WHERE FILE_KEY = '{key}'"
        )
        assert (status, rows_parsed, rows_loaded, rows_rejected) == (
            result["status"],
            result["rows_parsed"],
            result["rows_loaded"],
            result["rows_rejected"],
        )
        assert load_id == summary["load_id"]
        table = contracts.CONTRACTS[parsed.dataset].qualified_raw_table
        in_raw = env.sql(f"SELECT COUNT(*) FROM {table} WHERE {env.of_file(key)}")[0][0]
        assert in_raw == rows_loaded
        rejects = env.sql(
            f"SELECT LINE, ERROR, REJECTED_RECORD FROM RAW.LOAD_REJECTS WHERE FILE_KEY = '{key}' "
            f"AND LOAD_ID = '{load_id}' ORDER BY STAGED_FILE, LINE"
        )
        assert len(rejects) == rows_rejected
        assert all(line and error for line, error, _ in rejects)
        if by_name[parsed.name].rows is not None:  # what the uploader counted is what the load saw
            assert rows_parsed == by_name[parsed.name].rows
        # every record of the file as Python's csv module reads it: loaded into RAW or recorded in LOAD_REJECTS
        assert in_raw + len(rejects) == records_in(files[parsed.name], parsed.name), parsed.name
        out[parsed.name] = Loaded(key, result, [(int(r[0]), str(r[1]), str(r[2])) for r in rejects])
    assert sorted(out) == sorted(files)
    return out


def records_in(data: bytes, name: str) -> int:
    """The data records of a landing file, read with Python's csv module (quoted fields may hold newlines; a blank
    line is a record too, as COPY reads it), not counting the header."""
    import csv
    import io

    if name.endswith(".gz"):
        data = gzip.decompress(data)
    csv.field_size_limit(1 << 30)  # a case has a 1 MB field
    return sum(1 for _ in csv.reader(io.StringIO(data.decode("utf-8", errors="replace"), newline=""))) - 1


def counts(loaded: Loaded) -> tuple[str, int, int, int]:
    r = loaded.result
    return r["status"], r["rows_parsed"], r["rows_loaded"], r["rows_rejected"]


def csv(header: str, *rows: str, newline: str = "\n") -> bytes:
    return "".join(line + newline for line in (header, *rows)).encode()


RATINGS = "userId,movieId,rating,timestamp"
MOVIES = "movieId,title,genres"
TAGS = "userId,movieId,tag,timestamp"
LINKS = "movieId,imdbId,tmdbId"


# -- the cases -------------------------------------------------------------------------------------------------------

CHECKS: dict[str, Callable[[Env, Path], None]] = {}


def check(case_id: str) -> Callable[[Callable[[Env, Path], None]], Callable[[Env, Path], None]]:
    def register(fn: Callable[[Env, Path], None]) -> Callable[[Env, Path], None]:
        CHECKS[case_id] = fn
        return fn

    return register


@check("wrong_header")
def _wrong_header(env: Env, tmp_path: Path) -> None:
    refused(
        env,
        tmp_path,
        {"ratings.csv": csv("userId,movieId,score,timestamp", "1,1,4.0,964982703")},
        "ratings.csv: wrong header for ratings",
        f"expected: {RATINGS}",
        "found:    userId,movieId,score,timestamp",
        "missing rating; unexpected score",
    )


@check("reordered_header")
def _reordered_header(env: Env, tmp_path: Path) -> None:
    refused(
        env,
        tmp_path,
        {"ratings.csv": csv("userId,movieId,timestamp,rating", "1,1,964982703,4.0")},
        "found:    userId,movieId,timestamp,rating",
        "all there but in another order",
    )


@check("missing_column")
def _missing_column(env: Env, tmp_path: Path) -> None:
    refused(env, tmp_path, {"movies.csv": csv("movieId,title", "1,Toy Story (1995)")}, "missing genres")


@check("extra_column")
def _extra_column(env: Env, tmp_path: Path) -> None:
    refused(env, tmp_path, {"ratings.csv": csv(RATINGS + ",source", "1,1,4.0,964982703,web")}, "unexpected source")


@check("missing_fields_in_row")
def _missing_fields_in_row(env: Env, tmp_path: Path) -> None:
    rows = csv(RATINGS, "101,1,4.0,964982703", "101,3", "101,6,4.0", "101,47,5.0,964983815")
    (f,) = load_files(env, tmp_path, {"ratings_20240801.csv": rows}).values()
    assert counts(f) == ("PARTIALLY_LOADED", 4, 2, 2)
    assert [(line, record) for line, _, record in f.rejects] == [(3, "101,3"), (4, "101,6,4.0")]
    assert "Number of columns in file (2) does not match that of the corresponding table (4)" in f.rejects[0][1]
    assert "Number of columns in file (3)" in f.rejects[1][1]


@check("extra_field_in_row")
def _extra_field_in_row(env: Env, tmp_path: Path) -> None:
    rows = csv(RATINGS, "102,1,4.0,964982703", "102,47,5.0,964983815,7")
    (f,) = load_files(env, tmp_path, {"ratings_20240802.csv": rows}).values()
    assert counts(f) == ("PARTIALLY_LOADED", 2, 1, 1)
    assert f.rejects[0][0] == 3 and "Number of columns in file (5)" in f.rejects[0][1]


@check("crlf")
def _crlf(env: Env, tmp_path: Path) -> None:
    rows = csv(MOVIES, "90001,Crlf One (1999),Drama", '90002,"Crlf, Two (2000)",Comedy|Drama', newline="\r\n")
    (f,) = load_files(env, tmp_path, {"movies_20240803.csv": rows}).values()
    assert counts(f) == ("LOADED", 2, 2, 0)
    assert env.sql("SELECT MOVIE_ID, TITLE, GENRES FROM RAW.MOVIES WHERE MOVIE_ID IN (90001, 90002) ORDER BY 1") == [
        (90001, "Crlf One (1999)", "Drama"),
        (90002, "Crlf, Two (2000)", "Comedy|Drama"),
    ]


@check("bom")
def _bom(env: Env, tmp_path: Path) -> None:
    rows = b"\xef\xbb\xbf" + csv(MOVIES, "90003,Bom One (1999),Drama", "90004,Bom Two (2001),Crime")
    (f,) = load_files(env, tmp_path, {"movies_20240804.csv": rows}).values()
    assert counts(f) == ("LOADED", 2, 2, 0)
    assert env.sql("SELECT MOVIE_ID, TITLE FROM RAW.MOVIES WHERE MOVIE_ID IN (90003, 90004) ORDER BY 1") == [
        (90003, "Bom One (1999)"),
        (90004, "Bom Two (2001)"),
    ]


@check("empty_file")
def _empty_file(env: Env, tmp_path: Path) -> None:
    refused(env, tmp_path, {"tags.csv": b""}, "tags.csv: the file is empty; it must start with the header line")


@check("header_only")
def _header_only(env: Env, tmp_path: Path) -> None:
    files = {"genome-tags.csv": csv("tagId,tag"), "links_20240805.csv": LINKS.encode()}  # the second one: no newline
    loaded = load_files(env, tmp_path, files)
    assert [counts(f) for f in loaded.values()] == [("LOADED", 0, 0, 0)] * 2


@check("invalid_utf8_in_row")
def _invalid_utf8_in_row(env: Env, tmp_path: Path) -> None:
    rows = csv(MOVIES, "90005,Utf Good (1999),Drama") + "90006,Amélie (2001),Comedy\n".encode("latin-1")
    (f,) = load_files(env, tmp_path, {"movies_20240806.csv": rows}).values()
    assert counts(f) == ("PARTIALLY_LOADED", 2, 1, 1)
    assert f.rejects[0][0] == 3 and "Invalid UTF8 detected in string" in f.rejects[0][1]


@check("invalid_utf8_in_header")
def _invalid_utf8_in_header(env: Env, tmp_path: Path) -> None:
    header = "movieId,títle,genres\n".encode("latin-1")
    refused(env, tmp_path, {"movies.csv": header + b"1,A (1999),Drama\n"}, "the header line is not UTF-8 text")


@check("unterminated_quote")
def _unterminated_quote(env: Env, tmp_path: Path) -> None:
    rows = csv(TAGS, "1,2,ok,100", '3,4,"open tag,100', "5,6,ok,300", "7,8,ok,400")
    message = refused(env, tmp_path, {"tags.csv": rows}, "a quoted field never ends: data row 2 opens a")
    assert 'write a " as ""' in message
    # compressed, the same file is refused for the same reason
    refused(env, tmp_path / "gz", {"tags.csv.gz": gzip.compress(rows)}, "data row 2 opens a")


@check("newline_in_quoted_field")
def _newline_in_quoted_field(env: Env, tmp_path: Path) -> None:
    rows = csv(TAGS, '103,1,"two\nlines",1700000001', "103,2,plain,1700000002", '103,3,"crlf ""q""\r\nx",1700000003')
    (f,) = load_files(env, tmp_path, {"tags_20240807.csv": rows}).values()
    assert counts(f) == ("LOADED", 3, 3, 0)
    assert env.sql("SELECT TAG, SOURCE_ROW_NUMBER FROM RAW.TAGS WHERE USER_ID = 103 ORDER BY 2") == [
        ("two\nlines", 1),
        ("plain", 2),
        ('crlf "q"\r\nx', 3),
    ]


@check("one_mb_field")
def _one_mb_field(env: Env, tmp_path: Path) -> None:
    tag = "m" * (1 << 20)
    rows = csv(TAGS, f"104,1,{tag},1700000004", "104,2,small,1700000005")
    (f,) = load_files(env, tmp_path, {"tags_20240808.csv": rows}).values()
    assert counts(f) == ("LOADED", 2, 2, 0)
    assert env.sql("SELECT LENGTH(TAG) FROM RAW.TAGS WHERE USER_ID = 104 ORDER BY MOVIE_ID") == [(1 << 20,), (5,)]


@check("nul_bytes")
def _nul_bytes(env: Env, tmp_path: Path) -> None:
    rows = csv(TAGS, "105,1,a\0b,1700000006", "105\0,2,x,1700000007", "105,3,ok,1700000008") + b"\0" * 32
    (f,) = load_files(env, tmp_path, {"tags_20240809.csv": rows}).values()
    assert counts(f) == ("PARTIALLY_LOADED", 4, 2, 2)
    assert env.sql("SELECT TAG FROM RAW.TAGS WHERE USER_ID = 105 ORDER BY MOVIE_ID") == [("a\0b",), ("ok",)]
    assert [line for line, _, _ in f.rejects] == [3, 5]
    assert "Numeric value '105\0' is not recognized" in f.rejects[0][1]
    assert "Number of columns in file (1)" in f.rejects[1][1]


@check("rating_out_of_range")
def _rating_out_of_range(env: Env, tmp_path: Path) -> None:
    rows = csv(
        RATINGS,
        "106,1,7.0,1700000010",
        "106,2,0.0,1700000011",
        "106,3,-1.0,1700000012",
        "106,4,10,1700000013",
        "106,5,5.0,1700000014",
        "106,6,0.5,1700000015",
    )
    (f,) = load_files(env, tmp_path, {"ratings_20240810.csv": rows}).values()
    assert counts(f) == ("PARTIALLY_LOADED", 6, 2, 4)
    assert [(line, error) for line, error, _ in f.rejects] == [
        (2, "Value '7.0' of rating is not allowed (0.5 to 5.0 in half-star steps)"),
        (3, "Value '0.0' of rating is not allowed (0.5 to 5.0 in half-star steps)"),
        (4, "Value '-1.0' of rating is not allowed (0.5 to 5.0 in half-star steps)"),
        (5, "Numeric value '10' is out of range"),
    ]
    assert f.rejects[0][2] == "106,1,7.0,1700000010"
    assert f.result["first_error"] == "Numeric value '10' is out of range"
    assert env.sql("SELECT MOVIE_ID, RATING FROM RAW.RATINGS WHERE USER_ID = 106 ORDER BY 1") == [
        (5, pytest.approx(5.0)),
        (6, pytest.approx(0.5)),
    ]


@check("rating_not_half_step")
def _rating_not_half_step(env: Env, tmp_path: Path) -> None:
    rows = csv(
        RATINGS, "107,1,3.7,1700000020", "107,2,3.25,1700000021", "107,3,4.04,1700000022", "107,4,4.5,1700000023"
    )
    (f,) = load_files(env, tmp_path, {"ratings_20240811.csv": rows}).values()
    assert counts(f) == ("PARTIALLY_LOADED", 4, 2, 2)
    assert [(line, error) for line, error, _ in f.rejects] == [
        (2, "Value '3.7' of rating is not allowed (0.5 to 5.0 in half-star steps)"),
        (3, "Value '3.3' of rating is not allowed (0.5 to 5.0 in half-star steps)"),
    ]
    assert env.sql("SELECT MOVIE_ID, RATING FROM RAW.RATINGS WHERE USER_ID = 107 ORDER BY 1") == [
        (3, pytest.approx(4.0)),
        (4, pytest.approx(4.5)),
    ]


@check("non_integer_ids")
def _non_integer_ids(env: Env, tmp_path: Path) -> None:
    rows = csv(
        RATINGS, "abc,1,3.0,1700000030", "108,12x,3.0,1700000031", "1.5,3,3.0,1700000032", "108,4,3.0,1700000033"
    )
    (f,) = load_files(env, tmp_path, {"ratings_20240812.csv": rows}).values()
    assert counts(f) == ("PARTIALLY_LOADED", 4, 2, 2)
    assert [(line, error) for line, error, _ in f.rejects] == [
        (2, "Numeric value 'abc' is not recognized"),
        (3, "Numeric value '12x' is not recognized"),
    ]
    # documented: a fraction is rounded by the NUMBER(38,0) conversion, as in Snowflake
    assert env.sql("SELECT USER_ID FROM RAW.RATINGS WHERE EPOCH_SECONDS = 1700000032") == [(2,)]


@check("empty_required_value")
def _empty_required_value(env: Env, tmp_path: Path) -> None:
    rows = csv(LINKS, "90007,0114709,862", "90008,,8844", "90009,0113228,")
    (f,) = load_files(env, tmp_path, {"links_20240813.csv": rows}).values()
    assert counts(f) == ("PARTIALLY_LOADED", 3, 2, 1)
    assert f.rejects == [(3, "NULL result in a non-nullable column", "90008,,8844")]
    assert env.sql("SELECT MOVIE_ID, TMDB_ID FROM RAW.LINKS WHERE MOVIE_ID IN (90007, 90009) ORDER BY 1") == [
        (90007, 862),
        (90009, None),
    ]


@check("duplicate_rows")
def _duplicate_rows(env: Env, tmp_path: Path) -> None:
    rows = csv(RATINGS, "109,1,3.0,1700000040", "109,1,3.0,1700000040", "109,2,4.0,1700000041")
    (f,) = load_files(env, tmp_path, {"ratings_20240814.csv": rows}).values()
    assert counts(f) == ("LOADED", 3, 3, 0)
    assert env.sql("SELECT SOURCE_ROW_NUMBER FROM RAW.RATINGS WHERE USER_ID = 109 AND MOVIE_ID = 1 ORDER BY 1") == [
        (1,),
        (2,),
    ]


@check("same_content_new_name")
def _same_content_new_name(env: Env, tmp_path: Path) -> None:
    content = csv(RATINGS, "110,1,3.0,1700000050", "110,2,4.0,1700000051")
    (first,) = load_files(env, tmp_path / "first", {"ratings_20240815.csv": content}).values()
    before = env.raw_rows()

    renamed = landing(tmp_path / "renamed", {"ratings_20240816.csv": content})
    again = env.upload(renamed)
    ((name, status, note),) = [(f.name, f.status, f.note) for f in again.files]
    assert (name, status) == ("ratings_20240816.csv", "already uploaded")
    assert "as ratings_20240815.csv" in note
    assert again.uploaded_keys == []

    forced = env.upload(renamed, force=True)
    summary = env.load(forced.uploaded_keys)
    (result,) = summary["files"]
    assert (result["status"], result["duplicate_of"], result["rows_loaded"]) == ("DUPLICATE", first.key, 0)
    assert env.sql(f"SELECT STATUS, DUPLICATE_OF FROM RAW.LOAD_TRACKING WHERE FILE_KEY = '{result['file']}'") == [
        ("DUPLICATE", first.key)
    ]
    assert env.raw_rows() == before


@check("unknown_file_name")
def _unknown_file_name(env: Env, tmp_path: Path) -> None:
    files = {"ratings_final.csv": csv(RATINGS, "1,1,4.0,964982703"), "users.csv": b"userId,name\n1,x\n"}
    message = refused(env, tmp_path, files, "ratings_final.csv: not a MovieLens file name", "users.csv: not a Movie")
    assert contracts.expected_file_names() in message


ODD_NAMES = ("ratings 2024.csv", "ratings'.csv", "ratings'; DROP TABLE RAW.RATINGS; --.csv", "évaluations.csv")


@check("odd_file_names")
def _odd_file_names(env: Env, tmp_path: Path) -> None:
    files = {name: csv(RATINGS, f"111,{i},4.0,1700000060") for i, name in enumerate(ODD_NAMES)}
    message = refused(env, tmp_path, files)
    assert message.count("not a MovieLens file name") == len(ODD_NAMES)

    # the same names staged by another tool: the procedure ignores them, and nothing runs as SQL
    before = env.raw_rows()
    s3 = env.stack.s3_client()
    keys = [f"ratings/20240101T000000Z_{i:016x}/{name}" for i, name in enumerate(ODD_NAMES)]
    for key, name in zip(keys, ODD_NAMES, strict=True):
        s3.put_object(Bucket=env.bucket, Key=env.prefix + key, Body=files[name])
    summary = env.load(keys)
    assert (summary["status"], summary["files"], summary["ignored_keys"]) == ("NOTHING_TO_LOAD", [], keys)
    assert "4 key(s) ignored, not the stage key of a MovieLens file" in summary["message"]
    assert env.raw_rows() == before


@check("truncated_gz")
def _truncated_gz(env: Env, tmp_path: Path) -> None:
    data = gzip.compress(csv(TAGS, *(f"{i},{i},tag {i},{1_700_000_000 + i}" for i in range(3000))))
    refused(
        env,
        tmp_path,
        {"tags.csv.gz": data[: len(data) // 2]},
        f"tags.csv.gz: not a complete gzip file: it ends after {len(data) // 2:,} bytes",
    )


@check("corrupt_gz")
def _corrupt_gz(env: Env, tmp_path: Path) -> None:
    data = gzip.compress(csv(TAGS, *(f"{i},{i},tag {i},{1_700_000_000 + i}" for i in range(3000))))
    middle = len(data) // 2
    damaged = data[:middle] + bytes(b ^ 0x5A for b in data[middle : middle + 64]) + data[middle + 64 :]
    refused(env, tmp_path, {"tags.csv.gz": damaged}, "not a readable gzip file: its compressed data is corrupt")
    # a sound gzip of several members (what `cat a.gz b.gz` makes) is not mistaken for a corrupt one
    members = gzip.compress(csv(TAGS, "112,1,first,1700000070")) + gzip.compress(b"112,2,second,1700000071\n")
    (f,) = load_files(env, tmp_path / "members", {"tags_20240818.csv.gz": members}).values()
    assert counts(f) == ("LOADED", 2, 2, 0)


@check("not_gzip_named_gz")
def _not_gzip_named_gz(env: Env, tmp_path: Path) -> None:
    refused(env, tmp_path, {"links.csv.gz": csv(LINKS, "1,0114709,862")}, "links.csv.gz: not a readable gzip file")


@check("gzip_named_csv")
def _gzip_named_csv(env: Env, tmp_path: Path) -> None:
    data = gzip.compress(csv(RATINGS, "1,1,4.0,964982703"))
    refused(env, tmp_path, {"ratings.csv": data}, "the file is gzip-compressed; name it ratings.csv.gz")


@check("directory_named_like_csv")
def _directory_named_like_csv(env: Env, tmp_path: Path) -> None:
    root = tmp_path / "landing"
    (root / "ratings.csv").mkdir(parents=True)
    (root / "ratings.csv" / "ratings.csv").write_bytes(csv(RATINGS, "1,1,4.0,964982703"))
    prefix = f"skipped-{uuid.uuid4().hex[:8]}/"
    result = env.cli(root, prefix)
    assert result.returncode == 0, result.stderr
    assert "ratings.csv" in result.stdout and "skipped" in result.stdout
    assert "a directory, not a file" in result.stdout
    env.nothing_uploaded(prefix)


@check("temporary_names")
def _temporary_names(env: Env, tmp_path: Path) -> None:
    content = csv(RATINGS, "1,1,4.0,964982703")
    names = (".ratings.csv.part", "ratings.csv.tmp", "ratings.csv.part", "~ratings.csv", ".~lock.ratings.csv#")
    prefix = f"ignored-{uuid.uuid4().hex[:8]}/"
    report = env.upload(landing(tmp_path, dict.fromkeys(names, content)), prefix=prefix)
    assert report.files == []
    env.nothing_uploaded(prefix)


@check("file_grows_during_upload")
def _file_grows_during_upload(env: Env, tmp_path: Path) -> None:
    root = landing(tmp_path, {"ratings.csv": csv(RATINGS, "1,1,4.0,964982703", "1,3,4.0,964981247")})
    s3 = env.stack.s3_client()
    grown: list[bool] = []

    def writer_appends(**_: Any) -> None:  # the writer adds a row while the file is being sent
        if not grown:
            with open(root / "ratings.csv", "ab") as f:
                f.write(b"1,6,4.0,964982224\n")
            grown.append(True)

    s3.meta.events.register("before-send.s3.PutObject", writer_appends)
    prefix = f"grows-{uuid.uuid4().hex[:8]}/"
    with pytest.raises(
        UploadError, match=r"ratings\.csv changed while it was being uploaded; the upload of it was undone"
    ):
        env.upload(root, prefix=prefix, s3_client=s3)
    assert grown
    env.nothing_uploaded(prefix)


@check("split_with_no_empty_part")
def _split_with_no_empty_part(env: Env, tmp_path: Path) -> None:
    rows = [f"{i},2,t{i:02d},{100 + i}" for i in range(1, 7)]  # 12 bytes each
    header = TAGS + "\n"
    part_size = len(header) + 2 * 12  # the third part ends exactly at the end of the file
    files = {"tags_20240817.csv": csv(TAGS, *rows), "movies_20240817.csv": csv(MOVIES)}
    loaded = load_files(env, tmp_path, files, split_threshold=0, part_size=part_size)
    tags, movies = loaded["tags_20240817.csv"], loaded["movies_20240817.csv"]
    assert counts(tags) == ("LOADED", 6, 6, 0)
    assert tags.result["parts"] == 3
    assert env.sql(
        f"SELECT RIGHT(SOURCE_FILE, {len(tags.key) + 22}), COUNT(*) FROM RAW.TAGS WHERE {env.of_file(tags.key)} "
        "GROUP BY 1 ORDER BY 1"
    ) == [(k, 2) for k in sorted(env_parts(env, tags.key))]  # the parts' keys: the file's and .partNNNNofNNNN.csv.gz
    assert (counts(movies), movies.result["parts"]) == (("LOADED", 0, 0, 0), 1)


def env_parts(env: Env, key: str) -> list[str]:
    return [k.removeprefix(env.prefix) for k in env.objects(env.prefix + key)]


def _raw_tables(env: Env) -> set[str]:
    return {r[1] for r in env.sql("SHOW TABLES IN SCHEMA NETFLIX.RAW")}


@check("sql_in_files_argument")
def _sql_in_files_argument(env: Env, tmp_path: Path) -> None:
    tables, rows, tracked = _raw_tables(env), env.raw_rows(), env.sql("SELECT COUNT(*) FROM RAW.LOAD_TRACKING")
    summary = env.call("CALL RAW.LOAD_RAW_FILES(FILES => ['x''); DROP TABLE RAW.RATINGS; --'])")
    assert summary["status"] == "NOTHING_TO_LOAD"
    assert summary["ignored_keys"] == ["x'); DROP TABLE RAW.RATINGS; --"]
    assert "1 key(s) ignored, not the stage key of a MovieLens file" in summary["message"]
    assert _raw_tables(env) == tables and "RATINGS" in tables
    assert (env.raw_rows(), env.sql("SELECT COUNT(*) FROM RAW.LOAD_TRACKING")) == (rows, tracked)


@check("sql_in_datasets_argument")
def _sql_in_datasets_argument(env: Env, tmp_path: Path) -> None:
    tables, rows = _raw_tables(env), env.raw_rows()
    with pytest.raises(snowflake.connector.errors.ProgrammingError) as raised:
        env.call("CALL RAW.LOAD_RAW_FILES(DATASETS => ['ratings; DROP TABLE RAW.RATINGS; --'])")
    assert (
        "unknown dataset(s) ratings; DROP TABLE RAW.RATINGS; --; expected some of: "
        "movies, ratings, tags, links, genome-scores, genome-tags"
    ) in str(raised.value)
    assert _raw_tables(env) == tables and "RATINGS" in tables
    assert env.raw_rows() == rows


# -- the catalogue ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, env: Env, tmp_path: Path) -> None:
    CHECKS[case.id](env, tmp_path)


def test_every_case_has_one_check() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) >= 28
    assert set(CHECKS) == set(ids)


def readme_table() -> list[tuple[str, str]]:
    text = (REPO / "README.md").read_text()
    assert f"\n## {README_SECTION}\n" in text, f'README.md has no section "{README_SECTION}"'
    section = text.split(f"\n## {README_SECTION}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    assert lines[:2] == ["| case | what happens |", "| --- | --- |"]
    rows = []
    for line in lines[2:]:
        cells = line.removeprefix("| ").removesuffix(" |").split(" | ")
        assert len(cells) == 2, line
        rows.append((cells[0], cells[1]))
    return rows


def test_readme_lists_every_case_with_its_outcome() -> None:
    assert not [c.id for c in CASES if " | " in c.case + c.outcome or "\n" in c.case + c.outcome]
    assert readme_table() == [(c.case, c.outcome) for c in CASES]


def readme_rows() -> str:
    """The README table's rows, generated from CASES (paste them when a case changes)."""
    return "\n".join(f"| {c.case} | {c.outcome} |" for c in CASES)


if __name__ == "__main__":  # python -m tests.test_bad_inputs: the README table
    print("| case | what happens |\n| --- | --- |\n" + readme_rows())
