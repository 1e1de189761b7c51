"""The incremental dbt models under Snowflake's clock and commit order.

On Snowflake, loads do not commit in the order of their LOADED_AT: a worksheet CALL that overlaps a DAG run can
commit rows stamped earlier than rows dbt has already transformed, and CURRENT_TIMESTAMP() is in the session's
TIMEZONE (America/Los_Angeles by default), whose wall clock goes back an hour at the autumn DST change. Incremental
models that take "rows stamped after the newest I hold" skip such rows for good. These tests set the emulator's
clock (SYSTEM$EMULATOR_SET_CLOCK, a UTC instant) before each load, then check that every load reaches the facts and
marts and that each incremental model equals a full refresh.

One stack for the module: generated data (scale tiny, with genome files) loaded and built first, then each test
adds its loads. Helpers for dbt runs and table comparison come from tests/test_dbt.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netflix_elt import contracts, pipeline
from netflix_elt.generate import generate, generate_daily
from tests import snapshots
from tests.conftest import make_stack, upload_to
from tests.test_dbt import INCREMENTAL_TABLES, Project, _rows, local_only  # noqa: F401 - local_only: fixture

pytestmark = pytest.mark.slow(minutes=1.5)

TIMEZONE = "America/Los_Angeles"
BEFORE_DST_END = "2026-11-01 08:40:00"  # 01:40 PDT
AFTER_DST_END = "2026-11-01 09:10:00"  # 01:10 PST: a later instant, an earlier wall-clock time
LATE_STAMP = "2026-11-02 10:00:00"  # T1: the stamp of the load that commits last
EARLY_COMMIT = "2026-11-02 11:00:00"  # T2 > T1: the stamp of the load that commits (and is transformed) first


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, local_only: None) -> Iterator[Project]:  # noqa: F811
    """A deployed stack with the generated snapshot loaded (clock before the DST change) and built."""
    root = tmp_path_factory.mktemp("dbt-fidelity")
    stack = make_stack(root / "stack")
    project = Project(stack, root)
    generate(root / "landing", scale="tiny")

    def load() -> str:
        snapshots.deploy(stack)  # starts the stack
        load_at(project, root / "landing", BEFORE_DST_END)
        return str(project.sql("SELECT SYSDATE()")[0][0])  # the emulator's clock, run on since it was set

    try:
        # make mutation: from a snapshot of an earlier load by the same code but the dbt project, which it does not
        # read; the emulator's clock lives in the server process, which a snapshot restarts: set again to where the
        # load left it
        clock, _ = snapshots.ran("dbt-fidelity", stack, root, load, excluded=("netflix_dbt/",))
        project.sql(f"SELECT SYSTEM$EMULATOR_SET_CLOCK('{clock}')")
        project.build()
        yield project
    finally:
        stack.down()


def transform(project: Project) -> None:
    """`dbt build` of the models and the snapshot without the data and unit tests: what these tests check are the
    values the incremental runs leave (the fixture's first build runs every test)."""
    project.build("--exclude", "resource_type:test", "resource_type:unit_test")


def load_at(project: Project, landing: Path, clock: str) -> dict[str, Any]:
    """Upload a landing folder and CALL the procedure for its files with the emulator's clock set to `clock` (UTC),
    from a session whose TIMEZONE is America/Los_Angeles. Returns the procedure's summary."""
    keys = upload_to(project.stack, landing).uploaded_keys
    assert keys, f"nothing uploaded from {landing}"
    with project.stack.connect(
        schema="RAW", autocommit=True, network_timeout=300, session_parameters={"TIMEZONE": TIMEZONE}
    ) as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT SYSTEM$EMULATOR_SET_CLOCK('{clock}')")
        sql, params = pipeline.load_call_sql(keys)
        cur.execute(sql, params)
        value = cur.fetchone()[0]
    summary: dict[str, Any] = json.loads(value) if isinstance(value, str) else value
    assert summary["status"] == "SUCCESS", summary["message"]
    return summary


def incremental_equals_full_refresh(project: Project) -> None:
    """Every incremental model (and the marts built on them) as the incremental runs left it equals a rebuild from
    every load."""
    incremental = {table: _rows(project, table) for table in INCREMENTAL_TABLES}
    refreshed = project.dbt("run", "--full-refresh", "--select", "fct_ratings+", "fct_genome_scores+")
    assert refreshed.success, refreshed.failures()
    for table in INCREMENTAL_TABLES:
        assert _rows(project, table) == incremental[table], f"{table}: incremental build differs from a full refresh"


def missing_events(project: Project, load_id: str) -> int:
    """Rating events of a load that are not in fct_ratings (from whichever load wins)."""
    return int(
        project.sql(
            f"SELECT COUNT(*) FROM RAW.RATINGS r WHERE r.LOAD_ID = '{load_id}' AND NOT EXISTS (SELECT 1 FROM "
            "CORE.FCT_RATINGS f WHERE (f.USER_ID, f.MOVIE_ID, f.RATED_AT) = (r.USER_ID, r.MOVIE_ID, "
            "TO_TIMESTAMP_NTZ(r.EPOCH_SECONDS)))"
        )[0][0]
    )


def write_csv(path: Path, dataset: str, rows: list[tuple[Any, ...]]) -> None:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(contracts.CONTRACTS[dataset].header)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(out.getvalue())


def test_loads_on_both_sides_of_the_dst_change_equal_a_full_refresh(project: Project, tmp_path: Path) -> None:
    # the snapshot was loaded at 01:40 PDT; the daily files load at 01:10 PST, 30 minutes later
    generate_daily(tmp_path / "daily", dt.date(2023, 10, 13), scale="tiny")
    summary = load_at(project, tmp_path / "daily", AFTER_DST_END)
    assert any(f["dataset"] == "ratings" and f["rows_loaded"] for f in summary["files"]), summary
    transform(project)

    assert missing_events(project, summary["load_id"]) == 0
    # the genre corrections of the daily movies file reached the snapshot and the genre mart
    (closed,) = project.sql("SELECT COUNT_IF(DBT_VALID_TO IS NOT NULL) FROM SNAPSHOTS.MOVIES_SNAPSHOT")[0]
    assert closed >= 1
    incremental_equals_full_refresh(project)


def late_files(project: Project, root: Path) -> dict[str, Any]:
    """Two landing folders of crafted files on the loaded data: `early` (loaded first, stamped T2) and `late`
    (loaded after, stamped T1 < T2), and what each is expected to change."""
    user, movie, epoch, rating = project.sql(
        "SELECT USER_ID, MOVIE_ID, EPOCH_SECONDS, RATING FROM RAW.RATINGS ORDER BY 1, 2, 3 LIMIT 1"
    )[0]
    m1, m2, m3 = (r[0] for r in project.sql("SELECT MOVIE_ID FROM CORE.DIM_MOVIES WHERE HAS_GENRES ORDER BY 1 LIMIT 3"))
    title, genres = project.sql(f"SELECT ORIGINAL_TITLE, GENRES FROM CORE.DIM_MOVIES WHERE MOVIE_ID = {m2}")[0]
    new_genres = "Documentary" if "Documentary" not in genres else genres.replace("Documentary", "Western")
    genome_movie, tag = project.sql(
        "SELECT MOVIE_ID, TAG_ID FROM CORE.FCT_GENOME_SCORES ORDER BY MOVIE_ID, RELEVANCE, TAG_ID LIMIT 1"
    )[0]
    corrected = 0.5 if float(rating) != 0.5 else 1.0
    early, late = root / "early", root / "late"
    both = (user, m1, 1_800_000_000)  # in both files: the early file's row is stamped later, so it wins

    def rating_row(event: tuple[int, int, int], value: float) -> tuple[Any, ...]:
        return (event[0], event[1], value, event[2])  # the file's columns: userId, movieId, rating, timestamp

    write_csv(
        early / "ratings_20261102.csv", "ratings", [rating_row(both, 1.0), rating_row((user, m3, 1_800_000_200), 3.0)]
    )
    write_csv(
        late / "ratings_20261101.csv",
        "ratings",
        [
            rating_row(both, 5.0),
            rating_row((user, m2, 1_800_000_100), 4.0),
            rating_row((user, movie, epoch), corrected),  # a correction of a snapshot rating
        ],
    )
    write_csv(late / "genome-scores_20261101.csv", "genome-scores", [(genome_movie, tag, 1.0)])
    write_csv(late / "movies_20261101.csv", "movies", [(m2, title, new_genres)])
    return {
        "early": early,
        "late": late,
        "both": both,
        "new": (user, m2, 1_800_000_100),
        "corrected": (user, movie, epoch, corrected),
        "genome": (genome_movie, tag),
        "genre_change": (m2, new_genres.split("|")),
    }


def rating_of(project: Project, user: int, movie: int, epoch: int) -> tuple[float, str] | None:
    rows = project.sql(
        f"SELECT RATING, LOAD_ID FROM CORE.FCT_RATINGS WHERE USER_ID = {user} AND MOVIE_ID = {movie} AND RATED_AT = "
        f"TO_TIMESTAMP_NTZ({epoch})"
    )
    return (float(rows[0][0]), rows[0][1]) if rows else None


def test_a_load_that_commits_after_a_later_stamped_load_was_transformed_reaches_the_facts(
    project: Project, tmp_path: Path
) -> None:
    files = late_files(project, tmp_path)
    early = load_at(project, files["early"], EARLY_COMMIT)
    transform(project)
    late = load_at(project, files["late"], LATE_STAMP)  # its rows are stamped before the early load's
    (stamps,) = project.sql(
        "SELECT MAX(IFF(LOAD_ID = '{}', LOADED_AT, NULL)) < MIN(IFF(LOAD_ID = '{}', LOADED_AT, NULL)) "
        "FROM RAW.RATINGS".format(late["load_id"], early["load_id"])
    )[0]
    assert stamps, "the late load's rows should be stamped before the early load's"
    transform(project)

    # the late load's rows are in the facts: its new event, its correction of an older row
    assert missing_events(project, late["load_id"]) == 0
    assert rating_of(project, *files["new"]) == (4.0, late["load_id"])
    *event, corrected = files["corrected"]
    assert rating_of(project, *event) == (corrected, late["load_id"])
    # an event in both loads keeps the row stamped later (the early load's), as a full refresh does
    assert rating_of(project, *files["both"]) == (1.0, early["load_id"])
    genome_movie, tag = files["genome"]
    assert project.sql(
        f"SELECT TAG_RANK, RELEVANCE FROM MARTS.MART_MOVIE_TOP_GENOME_TAGS WHERE MOVIE_ID = {genome_movie} "
        f"AND TAG_ID = {tag}"
    ) == [(1, 1.0)]
    # ... and in the marts: the movie's new rating and its new genre
    movie, genres = files["genre_change"]
    (count,) = project.sql(f"SELECT RATING_COUNT FROM MARTS.MART_MOVIE_RATINGS WHERE MOVIE_ID = {movie}")[0]
    assert count == project.sql(f"SELECT COUNT(*) FROM CORE.FCT_RATINGS WHERE MOVIE_ID = {movie}")[0][0]
    (in_genre,) = project.sql(
        f"SELECT COUNT(*) FROM MARTS.MART_GENRE_YEAR_POPULARITY WHERE GENRE = '{genres[0]}' AND RATING_YEAR = 2027"
    )[0]
    assert in_genre == 1
    incremental_equals_full_refresh(project)


def test_a_load_still_in_progress_is_transformed_only_once_it_has_finished(project: Project, tmp_path: Path) -> None:
    """A CALL's COPY commits before the CALL has finished with the file (its out-of-contract rows leave RAW after
    it, and the tracking row says LOADING until then). A build in that moment leaves the load for a later build, which
    takes the rows the finished load left, and only those."""
    user = project.sql("SELECT MIN(USER_ID) FROM RAW.RATINGS")[0][0]
    m1, m2 = (r[0] for r in project.sql("SELECT MOVIE_ID FROM CORE.DIM_MOVIES ORDER BY 1 LIMIT 2"))
    kept, removed = (user, m1, 1_800_000_300), (user, m2, 1_800_000_400)
    write_csv(
        tmp_path / "landing" / "ratings_20261103.csv",
        "ratings",
        [(kept[0], kept[1], 2.5, kept[2]), (removed[0], removed[1], 3.5, removed[2])],
    )
    load = load_at(project, tmp_path / "landing", "2026-11-03 10:00:00")["load_id"]
    # the CALL's state between its COPY's commit and the end of its work on the file
    project.sql(f"UPDATE RAW.LOAD_TRACKING SET STATUS = 'LOADING' WHERE LOAD_ID = '{load}'")
    transform(project)
    assert project.sql(f"SELECT COUNT(*) FROM CORE.INT_LOAD_BATCHES WHERE LOAD_ID = '{load}'") == [(0,)]
    assert missing_events(project, load) == 2  # none of its rows in the facts yet
    # the CALL finishes: one of its rows leaves RAW (as an out-of-contract row does), the file is LOADED
    project.sql(
        f"DELETE FROM RAW.RATINGS WHERE LOAD_ID = '{load}' AND MOVIE_ID = {removed[1]} AND EPOCH_SECONDS = {removed[2]}"
    )
    project.sql(f"UPDATE RAW.LOAD_TRACKING SET STATUS = 'LOADED' WHERE LOAD_ID = '{load}'")
    transform(project)
    assert rating_of(project, *kept) == (2.5, load)
    assert rating_of(project, *removed) is None
    incremental_equals_full_refresh(project)
