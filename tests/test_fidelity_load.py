"""RAW.LOAD_RAW_FILES under Snowflake's documented behaviour, on an emulator as strict as Snowflake: recorded times
are UTC whatever the session's time zone, files keep their identity when METADATA$FILENAME carries the stage URL's
path, rows with a wrong number of fields are rejected in a COPY with a transformation, two CALLs at once never load
a file twice (no enforced primary key; READ COMMITTED), rejected rows are recorded without temporary tables (not
allowed in an owner's-rights procedure) and with a bounded count, and a CALL that leaves files for later says
WAITING. Each test stages its own files directly on S3 under their stage keys and loads only them."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from netflix_elt import contracts, pipeline
from netflix_elt.stack import LocalStack
from tests.conftest import REPO, sql

pytestmark = [pytest.mark.slow(minutes=3.5), pytest.mark.stack]

RATINGS = "userId,movieId,rating,timestamp"
MOVIES = "movieId,title,genres"
LINKS = "movieId,imdbId,tmdbId"


@pytest.fixture(scope="module")
def stack(deployed_stack: LocalStack) -> LocalStack:
    return deployed_stack


def csv(header: str, *rows: str) -> bytes:
    return "".join(f"{line}\n" for line in (header, *rows)).encode()


def stage(stack: LocalStack, name: str, content: bytes, part: tuple[int, int] | None = None) -> str:
    """Put a file on the stage under its stage key (as the uploader names it) and return the key."""
    dataset = contracts.contract_for(name).contract.dataset
    uploaded_at = dt.datetime.now(dt.UTC).strftime(contracts.UPLOADED_AT_FORMAT)
    sha = hashlib.sha256(content).hexdigest()
    key = contracts.stage_key(dataset, uploaded_at, sha, name, *(part or (None, None)))
    body = gzip.compress(content) if part else content
    stack.s3_client().put_object(Bucket=stack.settings.bucket, Key=stack.settings.prefix + key, Body=body)
    return key


def unique_rows(n: int, user: int) -> list[str]:
    """n ratings rows no other test stages (the user id is the caller's)."""
    return [f"{user},{i},4.0,{1_700_000_000 + i}" for i in range(1, n + 1)]


def rows_of(stack: LocalStack, table: str, key: str) -> int:
    """RAW rows whose SOURCE_FILE is the staged object ``key`` in either form METADATA$FILENAME takes."""
    forms = f"'{key}', '{stack.settings.prefix}{key}'"
    return int(sql(stack, f"SELECT COUNT(*) FROM {table} WHERE SOURCE_FILE IN ({forms})")[0][0])


def tracking(stack: LocalStack, key: str, columns: str) -> list[tuple[Any, ...]]:
    return sql(stack, f"SELECT {columns} FROM RAW.LOAD_TRACKING WHERE FILE_KEY = '{key}'")


def rejects(stack: LocalStack, key: str) -> list[tuple[Any, ...]]:
    return sql(
        stack,
        f"SELECT STAGED_FILE, LINE, ERROR, REJECTED_RECORD FROM RAW.LOAD_REJECTS WHERE FILE_KEY = '{key}' "
        "ORDER BY STAGED_FILE, LINE",
    )


def one(summary: dict[str, Any]) -> dict[str, Any]:
    (f,) = summary["files"]
    return f


# -- times ---------------------------------------------------------------------------------------------------------


@pytest.fixture()
def clock(stack: LocalStack) -> Iterator[Any]:
    """Sets the emulator's clock (a UTC instant) for the test, and the real clock again after it."""

    def set_clock(instant: str) -> dt.datetime:
        sql(stack, f"SELECT SYSTEM$EMULATOR_SET_CLOCK('{instant}')")
        return dt.datetime.fromisoformat(instant)

    try:
        yield set_clock
    finally:
        sql(stack, "SELECT SYSTEM$EMULATOR_SET_CLOCK(NULL)")


def test_recorded_times_are_utc_while_the_session_is_in_los_angeles(stack: LocalStack, clock: Any) -> None:
    # 08:50 UTC on 1 November 2026 is 01:50 PDT; at 09:00 UTC Los Angeles' wall clock goes back to 01:00 PST
    at = clock("2026-11-01 08:50:00")
    ((local, utc),) = sql(stack, "SELECT CURRENT_TIMESTAMP()::TIMESTAMP_NTZ, SYSDATE()")
    assert utc - local > dt.timedelta(hours=6), "the session's TIMEZONE is America/Los_Angeles, as by default"

    key = stage(stack, "ratings_20261101.csv", csv(RATINGS, *unique_rows(3, 900_001)))
    assert one(pipeline.load([key]))["status"] == "LOADED"
    after = at + dt.timedelta(minutes=5)
    ((claimed, started, finished),) = tracking(stack, key, "CLAIMED_AT, STARTED_AT, FINISHED_AT")
    ((first, last),) = sql(
        stack, f"SELECT MIN(LOADED_AT), MAX(LOADED_AT) FROM RAW.RATINGS WHERE SOURCE_FILE LIKE '%{key}'"
    )
    for name, value in (("CLAIMED_AT", claimed), ("STARTED_AT", started), ("FINISHED_AT", finished)):
        assert at <= value <= after, (name, value)
    assert at <= first <= last <= after
    assert claimed <= started <= first <= finished

    # a CALL that died holding a file: an hour later in UTC its claim is stale, though Los Angeles' wall clock
    # (01:55 PST) is only 5 minutes past the claim's (01:50 PDT)
    held = stage(stack, "ratings_20261102.csv", csv(RATINGS, *unique_rows(2, 900_002)))
    pipeline.load([held])
    sql(stack, f"UPDATE RAW.LOAD_TRACKING SET STATUS = 'LOADING', LOAD_ID = 'dead-call' WHERE FILE_KEY = '{held}'")
    clock("2026-11-01 09:55:00")
    taken = one(pipeline.load([held]))
    assert (taken["status"], taken["rows_loaded"]) == ("LOADED", 2), taken
    assert tracking(stack, held, "ATTEMPTS") == [(2,)]
    assert rows_of(stack, "RAW.RATINGS", held) == 2


# -- file identity -------------------------------------------------------------------------------------------------


def test_files_keep_their_identity_when_source_file_carries_the_stage_path(stack: LocalStack) -> None:
    content = csv(RATINGS, "900003,1,4.0,1700000001", "900003,2,7.0,1700000002", "900003,3,3.5,1700000003")
    key = stage(stack, "ratings_20261103.csv", content)
    first = one(pipeline.load([key]))
    # the emulator names the object as Snowflake may: its path in the bucket, with the stage URL's path
    assert {r[0] for r in sql(stack, "SELECT SOURCE_FILE FROM RAW.RATINGS WHERE USER_ID = 900003")} == {
        stack.settings.prefix + key
    }
    # the rating the contract does not allow is moved to LOAD_REJECTS, under the stage-relative key
    assert (first["status"], first["rows_parsed"], first["rows_loaded"], first["rows_rejected"]) == (
        "PARTIALLY_LOADED",
        3,
        2,
        1,
    ), first
    assert [r[:3] for r in rejects(stack, key)] == [
        (key, 3, "Value '7.0' of rating is not allowed (0.5 to 5.0 in half-star steps)")
    ]
    assert sql(stack, "SELECT MOVIE_ID FROM RAW.RATINGS WHERE USER_ID = 900003 ORDER BY 1") == [(1,), (3,)]

    # a CALL died after its COPY committed, before it recorded the outcome; an hour later the next CALL takes the
    # file over and counts its rows instead of loading them again
    sql(
        stack,
        "UPDATE RAW.LOAD_TRACKING SET STATUS = 'LOADING', LOAD_ID = 'dead-call', "
        f"CLAIMED_AT = DATEADD(minute, -61, CLAIMED_AT) WHERE FILE_KEY = '{key}'",
    )
    taken = one(pipeline.load([key]))
    assert (taken["status"], taken["rows_parsed"], taken["rows_loaded"], taken["rows_rejected"]) == (
        "PARTIALLY_LOADED",
        3,
        2,
        1,
    ), taken
    assert rows_of(stack, "RAW.RATINGS", key) == 2
    assert tracking(stack, key, "ATTEMPTS, ROWS_LOADED") == [(2, 2)]
    assert pipeline.load([key])["status"] == "NOTHING_TO_LOAD"
    assert rows_of(stack, "RAW.RATINGS", key) == 2


# -- field counts --------------------------------------------------------------------------------------------------


def test_rows_with_a_wrong_number_of_fields_are_rejected_with_their_line(stack: LocalStack) -> None:
    ratings = stage(
        stack,
        "ratings_20261104.csv",
        csv(RATINGS, "900004,1,4.0,1700000001", "900004,2,5.0,1700000002,7", "900004,3,4.0", "900004,4,3.0,1700000004"),
    )
    links = stage(stack, "links_20261104.csv", csv(LINKS, "900041,0114709,862", "900042,0113497", "900043,0113228,"))
    summary = pipeline.load([ratings, links])
    by_key = {f["file"]: f for f in summary["files"]}

    r = by_key[ratings]
    assert (r["status"], r["rows_parsed"], r["rows_loaded"], r["rows_rejected"]) == ("PARTIALLY_LOADED", 4, 2, 2), r
    got = rejects(stack, ratings)
    assert [(line, record) for _, line, _, record in got] == [(3, "900004,2,5.0,1700000002,7"), (4, "900004,3,4.0")]
    assert "Number of columns in file (5) does not match that of the corresponding table (4)" in got[0][2]
    assert "Number of columns in file (3) does not match that of the corresponding table (4)" in got[1][2]
    assert sql(stack, "SELECT MOVIE_ID FROM RAW.RATINGS WHERE USER_ID = 900004 ORDER BY 1") == [(1,), (4,)]

    lk = by_key[links]
    assert (lk["status"], lk["rows_parsed"], lk["rows_loaded"], lk["rows_rejected"]) == ("PARTIALLY_LOADED", 3, 2, 1)
    ((_, line, error, record),) = rejects(stack, links)
    assert (line, record) == (3, "900042,0113497")
    assert "Number of columns in file (2) does not match that of the corresponding table (3)" in error
    # an empty last field is a field: the unknown tmdbId loads as NULL
    assert sql(stack, "SELECT MOVIE_ID, TMDB_ID FROM RAW.LINKS WHERE MOVIE_ID >= 900041 ORDER BY 1") == [
        (900041, 862),
        (900043, None),
    ]
    for key, table in ((ratings, "RAW.RATINGS"), (links, "RAW.LINKS")):
        ((parsed, loaded, rejected),) = tracking(stack, key, "ROWS_PARSED, ROWS_LOADED, ROWS_REJECTED")
        assert parsed == loaded + rejected and rows_of(stack, table, key) == loaded


# -- claims --------------------------------------------------------------------------------------------------------

ROUNDS = 20
FILES_PER_ROUND = 20


def race(keys: list[list[str]]) -> list[dict[str, Any]]:
    """Two CALLs started at once on two connections, for keys[0] and keys[1]; their summaries."""
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def call(i: int) -> None:
        barrier.wait()
        try:
            results[i] = pipeline.load(keys[i])
        except Exception as e:  # reported below; an error must not hide a double load
            results[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert all(isinstance(r, dict) for r in results), results
    return results


def test_two_calls_at_once_load_every_file_exactly_once(stack: LocalStack) -> None:
    """Each round stages 20 fresh files (rather than a FULL_REFRESH between rounds: every round starts from files
    nobody has claimed, which is the race, and RAW must grow by exactly their rows) and starts two CALLs at once for
    them; each CALL also gets one of two more files with the same content under two names (a forced re-upload)."""
    twins: list[tuple[str, str]] = []  # (the twin loaded, the other) of each round
    with stack.connect(schema="RAW", network_timeout=300) as conn:
        cur = conn.cursor()

        def counts() -> tuple[int, int]:
            cur.execute("SELECT (SELECT COUNT(*) FROM RAW.RATINGS), (SELECT COUNT(*) FROM RAW.MOVIES)")
            ratings, movies = cur.fetchone()
            return int(ratings), int(movies)

        for n in range(ROUNDS):
            keys = []
            for i in range(FILES_PER_ROUND):
                user = 910_000 + n * FILES_PER_ROUND + i
                if i % 2:
                    keys.append(stage(stack, f"ratings_202612{n + 1:02d}.csv", csv(RATINGS, *unique_rows(2, user))))
                else:
                    row = f"{user},Race {user} (2026),X"
                    keys.append(stage(stack, f"movies_202612{n + 1:02d}.csv", csv(MOVIES, row)))
            same = csv(RATINGS, *unique_rows(3, 920_000 + n))
            pair = [stage(stack, f"ratings_2026110{i + 1}.csv", same) for i in range(2)]
            ratings, movies = counts()

            results = race([[*keys, pair[0]], [*keys, pair[1]]])

            files = [f for r in results for f in r["files"]]
            loaded = sorted(f["file"] for f in files if f["status"] == "LOADED")
            assert loaded in (sorted([*keys, pair[0]]), sorted([*keys, pair[1]])), (n, results)
            assert all(f["status"] in {"LOADED", "SKIPPED", "DUPLICATE"} for f in files), (n, results)
            assert counts() == (ratings + 23, movies + 10), n
            cur.execute(
                "SELECT FILE_KEY, STATUS, ATTEMPTS FROM RAW.LOAD_TRACKING WHERE FILE_KEY IN ("
                + ", ".join(f"'{k}'" for k in keys)
                + ") ORDER BY 1"
            )
            assert cur.fetchall() == [(k, "LOADED", 1) for k in sorted(keys)], n
            for r in results:  # a CALL that found files claimed says so: a later CALL deals with them
                waiting = any(f["status"] == "SKIPPED" for f in r["files"])
                assert r["status"] == ("WAITING" if waiting else "SUCCESS"), r
            kept = pair[0] if pair[0] in loaded else pair[1]
            twins.append((kept, pair[1] if kept == pair[0] else pair[0]))

        # the twin not loaded is the other's duplicate, once that load is done
        pipeline.load([t for pair in twins for t in pair])
        cur.execute(
            "SELECT FILE_KEY, STATUS, DUPLICATE_OF FROM RAW.LOAD_TRACKING WHERE FILE_KEY IN ("
            + ", ".join(f"'{other}'" for _, other in twins)
            + ") ORDER BY 1"
        )
        assert cur.fetchall() == sorted((other, "DUPLICATE", kept) for kept, other in twins)


# -- rejected rows ---------------------------------------------------------------------------------------------------


def test_rejected_rows_are_recorded_by_the_owners_rights_procedure(stack: LocalStack) -> None:
    assert "EXECUTE AS OWNER" in (REPO / "migrations" / "R__load_raw_files.sql").read_text()
    key = stage(stack, "ratings_20261105.csv", csv(RATINGS, "900005,1,4.0,1700000001", "900005,2,four,1700000002"))
    f = one(pipeline.load([key]))
    assert (f["status"], f["rows_loaded"], f["rows_rejected"]) == ("PARTIALLY_LOADED", 1, 1), f
    ((staged, line, error, record),) = rejects(stack, key)
    assert (staged, line, record) == (key, 3, "900005,2,four,1700000002")
    assert "Numeric value 'four' is not recognized" in error


def test_rejected_rows_recorded_are_capped_per_file_and_counted(stack: LocalStack) -> None:
    from snowflake.procedures.load_raw_files import MAX_REJECTS_RECORDED

    bad = MAX_REJECTS_RECORDED + 5
    rows = [f"900006,{i},x{i},1700000000" for i in range(1, bad + 1)] + ["900006,0,4.0,1700000000"]
    key = stage(stack, "ratings_20261106.csv", csv(RATINGS, *rows))
    f = one(pipeline.load([key]))
    assert (f["status"], f["rows_parsed"], f["rows_loaded"], f["rows_rejected"]) == (
        "PARTIALLY_LOADED",
        bad + 1,
        1,
        bad,
    ), {k: v for k, v in f.items() if k != "first_error"}
    assert f"5 of the {bad:,} rejected rows are not recorded in RAW.LOAD_REJECTS" in f["first_error"]
    assert f["first_error"].startswith("Numeric value 'x1' is not recognized")
    assert sql(stack, f"SELECT COUNT(*), MIN(LINE) FROM RAW.LOAD_REJECTS WHERE FILE_KEY = '{key}'") == [
        (MAX_REJECTS_RECORDED, 2)
    ]
    assert tracking(stack, key, "ROWS_REJECTED") == [(bad,)]


# -- WAITING ---------------------------------------------------------------------------------------------------------


def test_a_call_that_leaves_files_for_later_says_waiting(stack: LocalStack) -> None:
    held = stage(stack, "ratings_20261107.csv", csv(RATINGS, *unique_rows(2, 900_007)))
    checksum = contracts.parse_stage_key(held).checksum  # type: ignore[union-attr]
    sql(
        stack,
        "INSERT INTO RAW.LOAD_TRACKING (FILE_KEY, DATASET, FILE_NAME, CONTENT_CHECKSUM, STATUS, LOAD_ID, CLAIMED_AT) "
        f"VALUES ('{held}', 'ratings', 'ratings_20261107.csv', '{checksum}', 'LOADING', "
        "'other-call', SYSDATE())",
    )
    summary = pipeline.load([held])
    assert summary["status"] == "WAITING", summary
    assert one(summary)["status"] == "SKIPPED"
    assert "held by another CALL" in summary["message"] and "run the load again later" in summary["message"]
    assert rows_of(stack, "RAW.RATINGS", held) == 0

    content = csv(RATINGS, *unique_rows(2, 900_008))
    part = stage(stack, "ratings_20261108.csv", content, part=(1, 2))
    incomplete = pipeline.load([part])
    assert incomplete["status"] == "WAITING", incomplete
    assert one(incomplete)["status"] == "INCOMPLETE"
    assert "not completely staged" in incomplete["message"] and "every part is staged" in incomplete["message"]
    assert json.dumps(incomplete)  # a plain JSON summary
