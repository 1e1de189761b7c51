"""The dbt project netflix_dbt on the local stack: dbt build on generated data and on the real MovieLens sample,
marts checked against an independent DuckDB computation from the CSV files, the last row of a duplicated event
winning, the incremental fct_ratings after a daily file, and every compiled model parsed as Snowflake SQL.

Each dataset gets its own stack (deploy, upload, load as in tests/test_load.py); dbt runs in-process through
netflix_elt.transform with its target/ and logs/ in a temporary directory. dbt is invoked as few times as possible
(~3 s start-up each): per dataset, one build, one incremental build after the daily file, one full-refresh run.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
import sqlglot

from netflix_elt import pipeline, transform
from netflix_elt.generate import generate, generate_daily
from netflix_elt.stack import LocalStack
from tests import snapshots
from tests.conftest import make_stack
from uploader import upload

pytestmark = pytest.mark.slow(minutes=2)

MODELS = 24  # staging views, core and intermediate tables, marts
VIEWS = 8  # the staging models


@dataclass
class Load:
    """One upload and CALL: the landing files it loaded, by stage key."""

    load_id: str
    files: dict[str, Path]


@dataclass
class Project:
    """A deployed local stack with data loaded, and where dbt writes for it."""

    stack: LocalStack
    work: Path
    builds: list[dict[str, Any]] = field(default_factory=list)
    loads: list[Load] = field(default_factory=list)  # in the order they were made
    # int_load_batches' documented numbering: each build gives the loads it finds for the first time one batch
    # number, one above the highest so far
    batches: dict[str, int] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = pipeline.target_env(self.stack.settings)
        env["DBT_TARGET_PATH"] = str(self.work / "target")
        env["DBT_LOG_PATH"] = str(self.work / "logs")
        return env

    def dbt(self, *args: str) -> transform.DbtResult:
        return transform.run_dbt(["--quiet", *args, "--threads", "2"], self.env)

    def build(self, *args: str) -> dict[str, Any]:
        """`dbt build` (stopping at the first failure), which must pass."""
        result = self.dbt("build", "--fail-fast", *args)
        summary = {"success": result.success, "counts": result.counts(), "failures": result.failures()}
        self.builds.append(summary)
        assert result.success, (result.exception, [(f["name"], f["message"]) for f in result.failures()])
        new_loads = [load.load_id for load in self.loads if load.load_id not in self.batches]
        if new_loads:
            batch = max(self.batches.values(), default=0) + 1
            self.batches.update(dict.fromkeys(new_loads, batch))
        return summary

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        with self.stack.connect(schema="PUBLIC", network_timeout=300) as conn:
            cur = conn.cursor()
            cur.execute(query)
            return list(cur.fetchall())

    def upload_and_load(self, landing: Path) -> dict[str, Any]:
        report = upload(
            landing,
            bucket=self.stack.settings.bucket,
            prefix=self.stack.settings.prefix,
            s3_client=self.stack.s3_client(),
            progress=False,
        )
        summary = pipeline.load(report.uploaded_keys, settings=self.stack.settings)
        assert summary["status"] == "SUCCESS", summary["message"]
        assert all(f.parts == 0 for f in report.uploaded)  # one object per file: its key is the file's key
        self.loads.append(Load(summary["load_id"], {f.keys[0]: landing / f.name for f in report.uploaded}))
        return summary


@pytest.fixture(scope="module")
def local_only() -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    mp.delenv("SNOWFLAKE_ACCOUNT", raising=False)  # pipeline.is_local(): the emulator, never a real account
    yield
    mp.undo()


def loaded_project(
    root: Path,
    *landings: Path,
    build: bool = False,
    snapshot: str | None = None,
    excluded: tuple[str, ...] = ("netflix_dbt/",),
) -> Iterator[Project]:
    """A deployed stack with each landing folder uploaded and loaded in turn (and built, with ``build``). With
    ``snapshot`` (a name), in ``make mutation``, from a snapshot of an earlier run of the same code but ``excluded``
    (tests/snapshots.py's ``ran``): by default the dbt project, which loading does not read, so that a break in a
    model costs its build, not the loads again."""
    stack = make_stack(root / "stack")
    project = Project(stack, root)

    def load() -> str:
        snapshots.deploy(stack)  # starts the stack
        for landing in landings:
            project.upload_and_load(landing)
        if build:
            project.build()
        return json.dumps([[load.load_id, {k: str(p) for k, p in load.files.items()}] for load in project.loads])

    try:
        if snapshot is None:
            load()
        else:
            loads, restored = snapshots.ran(snapshot, stack, root, load, excluded=excluded)
            if restored:
                project.loads = [Load(i, {k: Path(p) for k, p in files.items()}) for i, files in json.loads(loads)]
        yield project
    finally:
        stack.down()


# Hand-written files loaded with the generated data: events of one user on one movie, each event sent more than once
# with a different rating. All at the end of 1995, before the generator's first day (1996-01-01), so the
# (genre, 1995) rows of mart_genre_year_popularity hold only these events.
DUP_USER = 990001
DUP_MOVIE = 990001
EVENT_A = 820281600  # 1995-12-30 00:00:00 UTC
EVENT_B = 820285200  # an hour later
EVENT_C = 820400400  # the next day, 09:00
# in the first load, next to the generated files: A and B twice each, and the movie twice (a corrected version)
DUPLICATES_FIRST = {
    "ratings_20231001.csv": (
        "userId,movieId,rating,timestamp\n"
        f"{DUP_USER},{DUP_MOVIE},1.0,{EVENT_A}\n"
        f"{DUP_USER},{DUP_MOVIE},0.5,{EVENT_B}\n"
        f"{DUP_USER},{DUP_MOVIE},2.0,{EVENT_A}\n"
        f"{DUP_USER},{DUP_MOVIE},4.5,{EVENT_B}\n"  # B's last row
    ),
    "links_20231001.csv": f"movieId,imdbId,tmdbId\n{DUP_MOVIE},114709,\n",  # no tmdbId
    "movies_20231001.csv": (
        "movieId,title,genres\n"
        f"{DUP_MOVIE},First Draft (1993),Horror\n"
        f"{DUP_MOVIE},Final Cut (1994),Comedy|Drama\n"  # the movie's last row
    ),
}
# in a second load, before the first build: A again (a later file wins over every row of the earlier one), C twice
DUPLICATES_LATER = {
    "ratings_20231002.csv": (
        "userId,movieId,rating,timestamp\n"
        f"{DUP_USER},{DUP_MOVIE},1.5,{EVENT_C}\n"
        f"{DUP_USER},{DUP_MOVIE},5.0,{EVENT_A}\n"  # A's last row
        f"{DUP_USER},{DUP_MOVIE},3.5,{EVENT_C}\n"  # C's last row
    ),
}


def _write_files(landing: Path, files: dict[str, str]) -> None:
    landing.mkdir(exist_ok=True)
    for name, text in files.items():
        (landing / name).write_text(text)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, local_only: None) -> Iterator[Project]:
    """Generated data (scale tiny, with genome files) with the hand-written duplicates, in two loads, built once."""
    root = tmp_path_factory.mktemp("dbt-generated")
    generate(root / "landing", scale="tiny")
    _write_files(root / "landing", DUPLICATES_FIRST)
    _write_files(root / "later", DUPLICATES_LATER)
    for project in loaded_project(root, root / "landing", root / "later", snapshot="dbt-generated"):
        project.build()
        yield project


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path, local_only: None) -> Iterator[Project]:
    """The real ml-latest-small sample, built once."""
    root = tmp_path_factory.mktemp("dbt-sample")
    for project in loaded_project(root, sample_dir):
        project.build()
        yield project


# -- generated data ---------------------------------------------------------------------------------------------------


def test_build_passes_on_generated_data(generated: Project) -> None:
    counts = generated.builds[0]["counts"]
    assert counts["model"] == {"success": MODELS}
    assert counts["snapshot"] == {"success": 1}
    assert counts["unit_test"] == {"pass": 3}
    assert set(counts["test"]) == {"pass"} and counts["test"]["pass"] > 90
    # the genome marts are filled from the generated genome files: 10 tags for each of the 20 genome movies
    assert generated.sql("SELECT COUNT(*), COUNT(DISTINCT MOVIE_ID) FROM MARTS.MART_MOVIE_TOP_GENOME_TAGS")[0] == (
        200,
        20,
    )
    (spine,) = generated.sql(
        "SELECT COUNT(*) = DATEDIFF(day, MIN(DATE_DAY), MAX(DATE_DAY)) + 1, MIN(DATE_DAY) = "
        "(SELECT MIN(RATED_DATE) FROM CORE.FCT_RATINGS) FROM CORE.DIM_DATE"
    )
    assert spine == (True, True)


def _utc(epoch: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).replace(tzinfo=None)


def test_the_last_row_of_a_duplicated_event_wins_through_dbt(generated: Project) -> None:
    # the last row of each event: A's in the later file, B's in the first file, C's in the later file
    first, later = (generated.loads[0], generated.loads[1])
    winners = {
        EVENT_A: (5.0, "ratings_20231002.csv", later.load_id),
        EVENT_B: (4.5, "ratings_20231001.csv", first.load_id),
        EVENT_C: (3.5, "ratings_20231002.csv", later.load_id),
    }
    mean = sum(rating for rating, _, _ in winners.values()) / len(winners)

    # RAW keeps every row of the files; fct_ratings keeps one row per event, the last
    (raw_rows,) = generated.sql(f"SELECT COUNT(*) FROM RAW.RATINGS WHERE USER_ID = {DUP_USER}")[0]
    assert raw_rows == 7
    facts = generated.sql(
        "SELECT RATED_AT, MOVIE_ID, RATING, SOURCE_FILE, LOAD_ID, SOURCE_ROW_NUMBER = (SELECT MAX(r.SOURCE_ROW_NUMBER) "
        "FROM RAW.RATINGS r WHERE r.SOURCE_FILE = f.SOURCE_FILE AND r.USER_ID = f.USER_ID AND r.MOVIE_ID = f.MOVIE_ID "
        "AND TO_TIMESTAMP_NTZ(r.EPOCH_SECONDS) = f.RATED_AT) AS LAST_ROW_OF_FILE "
        f"FROM CORE.FCT_RATINGS f WHERE USER_ID = {DUP_USER}"
    )
    assert {_utc(e) for e in winners} == {rated_at for rated_at, *_ in facts}
    for rated_at, movie, rating, source_file, load_id, last_row_of_file in facts:
        epoch = int(rated_at.replace(tzinfo=dt.UTC).timestamp())
        expected_rating, file_name, expected_load = winners[epoch]
        assert (movie, float(rating), source_file.rsplit("/", 1)[-1], load_id, last_row_of_file) == (
            DUP_MOVIE,
            expected_rating,
            file_name,
            expected_load,
            True,
        ), epoch
    assert generated.sql(f"SELECT RATING_COUNT, MEAN_RATING FROM CORE.DIM_USERS WHERE USER_ID = {DUP_USER}") == [
        (3, pytest.approx(mean, abs=1e-9))
    ]
    # the movie's last row is its version in the catalogue
    assert generated.sql(
        f"SELECT TITLE, ORIGINAL_TITLE, RELEASE_YEAR, GENRES FROM CORE.DIM_MOVIES WHERE MOVIE_ID = {DUP_MOVIE}"
    ) == [("Final Cut", "Final Cut (1994)", 1994, "Comedy|Drama")]
    # fct_tags deduplicates with the same rule, but all its columns are the tag event's key: which row of a
    # duplicated tag event is kept shows in none of them

    # the marts: the movie's figures from the last rows, its genres from its last row
    assert generated.sql(
        "SELECT TITLE, RELEASE_YEAR, GENRES, RATING_COUNT, MEAN_RATING, FIRST_RATED_AT, LAST_RATED_AT "
        f"FROM MARTS.MART_MOVIE_RATINGS WHERE MOVIE_ID = {DUP_MOVIE}"
    ) == [("Final Cut", 1994, "Comedy|Drama", 3, pytest.approx(mean, abs=1e-9), _utc(EVENT_A), _utc(EVENT_C))]
    genre_rows = generated.sql(
        "SELECT GENRE, RATING_COUNT, USER_COUNT, MOVIE_COUNT, MEAN_RATING FROM MARTS.MART_GENRE_YEAR_POPULARITY "
        "WHERE RATING_YEAR = 1995"
    )
    assert sorted(genre_rows) == [
        ("Comedy", 3, 1, 1, pytest.approx(mean, abs=1e-9)),
        ("Drama", 3, 1, 1, pytest.approx(mean, abs=1e-9)),
    ]
    assert generated.sql(
        "SELECT COHORT_SIZE, RATING_COUNT, MEAN_ACTIVE_DAYS FROM MARTS.MART_USER_COHORTS "
        "WHERE COHORT_MONTH = '1995-12-01'"
    ) == [(1, 3, 1.0)]


def _incremental_equals_full_refresh(project: Project, daily: Path) -> tuple[int, int]:
    """Load the daily files, build incrementally, check fct_ratings gained exactly the new events, then check a
    full refresh gives the same table row for row. Returns (rows before, rows after)."""
    (before,) = project.sql("SELECT COUNT(*) FROM CORE.FCT_RATINGS")[0]
    (watermark,) = project.sql("SELECT MAX(BATCH) FROM CORE.FCT_RATINGS")[0]
    summary = project.upload_and_load(daily)
    (ratings_file,) = [f for f in summary["files"] if f["dataset"] == "ratings"]
    new_rows = ratings_file["rows_loaded"]
    (already_there,) = project.sql(
        "SELECT COUNT(*) FROM RAW.RATINGS r WHERE r.LOAD_ID = '{0}' AND EXISTS (SELECT 1 FROM RAW.RATINGS o "
        "WHERE o.LOAD_ID <> '{0}' AND (o.USER_ID, o.MOVIE_ID, o.EPOCH_SECONDS) = (r.USER_ID, r.MOVIE_ID, "
        "r.EPOCH_SECONDS))".format(summary["load_id"])
    )[0]

    project.build()
    (after,) = project.sql("SELECT COUNT(*) FROM CORE.FCT_RATINGS")[0]
    assert after == before + new_rows - already_there
    # the incremental run only touched the new load's rows: every older row kept its load
    (touched,) = project.sql(f"SELECT COUNT(*) FROM CORE.FCT_RATINGS WHERE LOAD_ID = '{summary['load_id']}'")[0]
    assert touched == new_rows
    (older,) = project.sql(f"SELECT COUNT(*) FROM CORE.FCT_RATINGS WHERE BATCH <= {watermark}")[0]
    assert older == before - already_there
    incremental = {table: _rows(project, table) for table in INCREMENTAL_TABLES}

    # every incremental model and every mart built on them, rebuilt from all of RAW: the same rows
    refreshed = project.dbt("run", "--full-refresh", "--select", "fct_ratings+", "fct_genome_scores+")
    assert refreshed.success, refreshed.failures()
    for table in INCREMENTAL_TABLES:
        assert _rows(project, table) == incremental[table], f"{table}: incremental build differs from a full refresh"
    return before, after


# incremental models, and the marts that are built from them
INCREMENTAL_TABLES = (
    "CORE.FCT_RATINGS",
    "CORE.FCT_GENOME_SCORES",
    "CORE.INT_MOVIE_RATING_STATS",
    "CORE.INT_MOVIE_TOP_GENOME_TAGS",
    "MARTS.MART_MOVIE_RATINGS",
    "MARTS.MART_GENRE_YEAR_POPULARITY",
    "MARTS.MART_MOVIE_TOP_GENOME_TAGS",
)


def _rows(project: Project, table: str) -> list[tuple[Any, ...]]:
    """Every row of a table, sorted, floats rounded (a sum's last bits depend on the order rows are added in)."""
    rows = project.sql(f"SELECT * FROM {table}")
    return sorted(
        (tuple(round(v, 9) if isinstance(v, float) else v for v in row) for row in rows),
        key=lambda r: tuple((v is None, str(v)) for v in r),
    )


def test_daily_files_add_exactly_their_rows_and_equal_a_full_refresh(generated: Project, tmp_path: Path) -> None:
    generate_daily(tmp_path / "daily", dt.date(2023, 10, 13), scale="tiny")
    before, after = _incremental_equals_full_refresh(generated, tmp_path / "daily")
    assert after > before
    # the daily movies file corrects titles or genres: the snapshot keeps the old versions as closed rows
    (closed, current, movies) = generated.sql(
        "SELECT COUNT_IF(DBT_VALID_TO IS NOT NULL), COUNT_IF(DBT_VALID_TO IS NULL), "
        "(SELECT COUNT(*) FROM CORE.DIM_MOVIES) FROM SNAPSHOTS.MOVIES_SNAPSHOT"
    )[0]
    assert current == movies
    assert closed >= 1


# -- the marts, recomputed in DuckDB from the landing files ----------------------------------------------------------

# the README's prior weight of mart_movie_ratings' Bayesian average: "a prior of 10 ratings at the global mean"
PRIOR_WEIGHT = 10

LANDING_COLUMNS = {
    "ratings": ("userId", "movieId", "rating", "timestamp"),
    "movies": ("movieId", "title", "genres"),
    "genome_scores": ("movieId", "tagId", "relevance"),
    "genome_tags": ("tagId", "tag"),
}
LANDING_KEYS = {  # the natural keys (README, "The six file contracts")
    "ratings": "userId, movieId, timestamp",
    "movies": "movieId",
    "genome_scores": "movieId, tagId",
    "genome_tags": "tagId",
}
LANDING_NAME = re.compile(r"(?P<dataset>[a-z-]+?)(_[0-9]{8})?[.]csv")

# the documented definitions, over the rows as they arrived (`arrival`: load after load, row after row)
INDEPENDENT_SQL = f"""
-- RAW holds the ratings 0.5 to 5.0 in half stars, after rounding to one decimal as NUMBER(2,1) does; the other
-- rows are rejected by the load
CREATE TABLE valid_ratings AS
SELECT * FROM (
    SELECT arrival, load_id, file_key, userId::BIGINT AS user_id, movieId::BIGINT AS movie_id,
           TRY_CAST(rating AS DECIMAL(2, 1)) AS rating, timestamp::BIGINT AS epoch
    FROM ratings_arrivals
) WHERE rating * 2 IN (1, 2, 3, 4, 5, 6, 7, 8, 9, 10);

-- an event (user, movie, epoch second) sent more than once: its latest row wins (the latest load, then the last row)
CREATE TABLE ratings AS
SELECT user_id, movie_id, make_timestamp(epoch * 1000000) AS rated_at,
       arg_max(rating, arrival)::DOUBLE AS rating, arg_max(file_key, arrival) AS file_key,
       arg_max(load_id, arrival) AS load_id
FROM valid_ratings GROUP BY user_id, movie_id, epoch;

-- the catalogue: each movie's latest row; the title without a trailing "(YYYY)", which is its release year
CREATE TABLE catalogue AS
SELECT movie_id,
       trim(regexp_replace(trim(title), '[(][0-9]{{4}}[)]$', '')) AS title,
       nullif(regexp_extract(trim(title), '[(]([0-9]{{4}})[)]$', 1), '')::BIGINT AS release_year,
       nullif(genres, '(no genres listed)') AS genres
FROM (
    SELECT movieId::BIGINT AS movie_id, arg_max(title, arrival) AS title, arg_max(genres, arrival) AS genres
    FROM movies_arrivals GROUP BY 1
);

CREATE TABLE movie_genre AS
SELECT DISTINCT movie_id, genre
FROM (SELECT movie_id, unnest(string_split(genres, '|')) AS genre FROM catalogue WHERE genres IS NOT NULL);

CREATE TABLE genome AS
SELECT movieId::BIGINT AS movie_id, tagId::BIGINT AS tag_id, arg_max(relevance, arrival)::DOUBLE AS relevance
FROM genome_scores_arrivals GROUP BY 1, 2;

CREATE TABLE genome_tag AS
SELECT tagId::BIGINT AS tag_id, trim(arg_max(tag, arrival)) AS tag FROM genome_tags_arrivals GROUP BY 1;

CREATE TABLE mart_movie_ratings AS
WITH per_movie AS (
    SELECT movie_id, count(*) AS n, sum(rating) AS total, min(rated_at) AS first_at, max(rated_at) AS last_at
    FROM ratings GROUP BY movie_id
)
SELECT movie_id, c.title, c.release_year, c.genres, n, total / n,
       ({PRIOR_WEIGHT} * (SELECT avg(rating) FROM ratings) + total) / ({PRIOR_WEIGHT} + n), first_at, last_at
FROM per_movie LEFT JOIN catalogue c USING (movie_id);

CREATE TABLE mart_genre_year_popularity AS
SELECT genre, year(rated_at), count(*), count(DISTINCT user_id), count(DISTINCT movie_id), avg(rating),
       max(f.loaded_at), max(b.batch)
FROM ratings
JOIN movie_genre USING (movie_id)
JOIN file_loaded_at f USING (file_key)
JOIN load_batch b USING (load_id)
GROUP BY genre, year(rated_at);

CREATE TABLE mart_user_cohorts AS
WITH users AS (
    SELECT user_id, count(*) AS n, min(rated_at) AS first_at, max(rated_at) AS last_at,
           last_at::DATE - first_at::DATE AS active_days  -- calendar days, UTC
    FROM ratings GROUP BY user_id
)
SELECT date_trunc('month', first_at)::DATE, year(first_at), count(*), sum(n), sum(n) / count(*),
       avg(active_days), count(*) FILTER (WHERE active_days >= 30)
FROM users GROUP BY 1, 2;

CREATE TABLE mart_movie_top_genome_tags AS
SELECT movie_id, c.title, tag_rank, tag_id, t.tag, relevance
FROM (
    SELECT *, row_number() OVER (PARTITION BY movie_id ORDER BY relevance DESC, tag_id) AS tag_rank FROM genome
)
LEFT JOIN catalogue c USING (movie_id)
LEFT JOIN genome_tag t USING (tag_id)
WHERE tag_rank <= 10;
"""

# each mart's key and all its columns, in order
MARTS = {
    "MART_MOVIE_RATINGS": (
        "MOVIE_ID",
        "MOVIE_ID TITLE RELEASE_YEAR GENRES RATING_COUNT MEAN_RATING BAYESIAN_RATING FIRST_RATED_AT LAST_RATED_AT",
    ),
    "MART_GENRE_YEAR_POPULARITY": (
        "GENRE RATING_YEAR",
        "GENRE RATING_YEAR RATING_COUNT USER_COUNT MOVIE_COUNT MEAN_RATING RATINGS_LOADED_AT RATINGS_BATCH",
    ),
    "MART_USER_COHORTS": (
        "COHORT_MONTH",
        "COHORT_MONTH COHORT_YEAR COHORT_SIZE RATING_COUNT RATINGS_PER_USER MEAN_ACTIVE_DAYS USERS_ACTIVE_30_DAYS",
    ),
    "MART_MOVIE_TOP_GENOME_TAGS": ("MOVIE_ID TAG_RANK", "MOVIE_ID TITLE TAG_RANK TAG_ID TAG RELEVANCE"),
}


def _arrivals(con: duckdb.DuckDBPyConnection, loads: list[Load]) -> None:
    """A table <dataset>_arrivals per dataset: every data row of every loaded landing file, as text, with its load,
    its stage key and `arrival`, its place in the order the rows arrived (load after load, row after row)."""
    arrived: dict[str, list[list[Any]]] = {dataset: [] for dataset in LANDING_COLUMNS}
    arrival = 0
    for load in loads:
        for key, path in sorted(load.files.items()):
            named = LANDING_NAME.fullmatch(path.name)
            assert named, path.name
            dataset = named["dataset"].replace("-", "_")
            if dataset not in arrived:
                continue
            with path.open(newline="", encoding="utf-8") as f:
                reader = csv.reader(f)
                assert tuple(next(reader)) == LANDING_COLUMNS[dataset], path
                for record in reader:
                    arrival += 1
                    arrived[dataset].append([arrival, load.load_id, key, *record])
    for dataset, columns in LANDING_COLUMNS.items():
        names = ("arrival", "load_id", "file_key", *columns)
        by_column = list(zip(*arrived[dataset], strict=True)) or [()] * len(names)
        table = pa.table(
            {
                name: pa.array(values, pa.int64() if name == "arrival" else pa.string())
                for name, values in zip(names, by_column, strict=True)
            }
        )
        con.register("arrived", table)
        con.execute(f"CREATE TABLE {dataset}_arrivals AS SELECT * FROM arrived")
        con.unregister("arrived")
        # "the latest load, then the last row of the file": a key in two files of one load would need the files'
        # order on the stage, which none of these inputs needs
        ((in_two_files,),) = con.execute(
            f"SELECT COUNT(*) FROM (SELECT {LANDING_KEYS[dataset]}, load_id FROM {dataset}_arrivals "
            "GROUP BY ALL HAVING COUNT(DISTINCT file_key) > 1)"
        ).fetchall()
        assert in_two_files == 0, dataset


def _independent_marts(project: Project) -> dict[str, list[tuple[Any, ...]]]:
    """Every mart's rows, computed in DuckDB from the landing files of the project's loads (INDEPENDENT_SQL)."""
    con = duckdb.connect()
    _arrivals(con, project.loads)
    # when each file's rows were stamped (the load's record of its COPY), and the batch of each load
    con.execute("CREATE TABLE file_loaded_at (file_key VARCHAR, loaded_at TIMESTAMP)")
    con.executemany(
        "INSERT INTO file_loaded_at VALUES (?, ?)", project.sql("SELECT FILE_KEY, STARTED_AT FROM RAW.LOAD_TRACKING")
    )
    con.execute("CREATE TABLE load_batch (load_id VARCHAR, batch BIGINT)")
    con.executemany("INSERT INTO load_batch VALUES (?, ?)", list(project.batches.items()))
    con.execute(INDEPENDENT_SQL)
    return {mart: con.execute(f"SELECT * FROM {mart.lower()}").fetchall() for mart in MARTS}


def _differences(
    got: list[tuple[Any, ...]], expected: list[tuple[Any, ...]], columns: list[str], key: str
) -> list[str]:
    """What differs between two sets of rows, matched by their `key` columns; floats to 1e-9."""
    at = [columns.index(c) for c in key.split()]
    got_by_key = {tuple(row[i] for i in at): row for row in got}
    expected_by_key = {tuple(row[i] for i in at): row for row in expected}
    assert len(got_by_key) == len(got) and len(expected_by_key) == len(expected), "duplicate keys"
    out = [f"{k}: missing" for k in expected_by_key.keys() - got_by_key.keys()]
    out += [f"{k}: not expected" for k in got_by_key.keys() - expected_by_key.keys()]
    for k in expected_by_key.keys() & got_by_key.keys():
        for column, g, e in zip(columns, got_by_key[k], expected_by_key[k], strict=True):
            if isinstance(g, float) or isinstance(e, float):
                same = g is not None and e is not None and abs(g - e) <= 1e-9
            else:
                same = type(g) is type(e) and g == e
            if not same:
                out.append(f"{k} {column}: {g!r} in the mart, {e!r} computed")
    return sorted(out)


def test_generated_marts_equal_an_independent_duckdb_computation(generated: Project) -> None:
    expected = _independent_marts(generated)
    with generated.stack.connect(schema="MARTS", network_timeout=300) as conn:
        for mart, (key, names) in MARTS.items():
            cur = conn.cursor()
            cur.execute(f"SELECT * FROM MARTS.{mart}")
            columns = [d[0] for d in cur.description]
            assert columns == names.split(), mart  # every column of the mart is compared
            got = list(cur.fetchall())
            assert len(got) > 10, mart
            differences = _differences(got, expected[mart], columns, key)
            assert not differences, (mart, len(differences), differences[:20])


def test_links_become_imdb_title_ids_and_empty_tmdb_ids_null(generated: Project) -> None:
    """stg_links, read against links.csv itself: imdbId as an IMDb title id (`tt` and at least 7 digits, e.g.
    tt0114709), an empty tmdbId as NULL, one row per movie."""
    import csv

    expected = {}
    links = [path for load in generated.loads for path in load.files.values() if path.name.startswith("links")]
    for path in links:  # in load order: a later load's row wins
        with path.open(newline="") as f:
            for r in csv.DictReader(f):
                imdb = "tt" + r["imdbId"].strip().zfill(7)
                expected[int(r["movieId"])] = (imdb, int(r["tmdbId"]) if r["tmdbId"] else None)
    assert expected[DUP_MOVIE] == ("tt0114709", None)
    got = {
        int(m): (imdb, None if tmdb is None else int(tmdb))
        for m, imdb, tmdb in generated.sql("SELECT MOVIE_ID, IMDB_ID, TMDB_ID FROM STAGING.STG_LINKS")
    }
    assert got == expected


def test_every_compiled_model_parses_as_snowflake_sql(generated: Project) -> None:
    # models, data tests and unit tests as `dbt build` compiled them (fct_ratings in its incremental form)
    root = generated.work / "target" / "compiled"
    compiled = sorted(p for p in root.rglob("*.sql") if p.is_file())
    models = [
        p for p in compiled if p.relative_to(root).parts[1:2] == ("models",) and len(p.relative_to(root).parts) == 4
    ]
    assert len(models) == MODELS
    assert len(compiled) > 100
    for path in compiled:
        sql = path.read_text()
        try:
            sqlglot.parse_one(sql, read="snowflake")
        except sqlglot.errors.ParseError as e:  # pragma: no cover - the failure message is the point
            pytest.fail(f"{path.relative_to(generated.work)} is not valid Snowflake SQL: {e}\n{sql}")

    # dbt docs generate (after the loop: it compiles the models again) documents every model and every column
    docs = generated.dbt("docs", "generate")
    assert docs.success, (docs.exception, docs.failures())
    target = generated.work / "target"
    manifest = json.loads((target / "manifest.json").read_text())
    catalog = json.loads((target / "catalog.json").read_text())
    model_nodes = {uid: n for uid, n in manifest["nodes"].items() if n["resource_type"] == "model"}
    assert len(model_nodes) == MODELS
    # the catalog has every model's relation (the emulator's catalog query returns tables only, not the views)
    tables = {uid for uid, n in model_nodes.items() if n["config"]["materialized"] != "view"}
    assert len(tables) == MODELS - VIEWS and tables <= catalog["nodes"].keys()
    undocumented = [uid for uid, n in model_nodes.items() if not n["description"].strip()]
    undocumented += [
        f"{uid}.{c}"
        for uid, n in model_nodes.items()
        for c, col in n["columns"].items()
        if not col["description"].strip()
    ]
    # every column in the built relation is listed (and so described) in the model's yml
    undocumented += [
        f"{uid}.{c.lower()}"
        for uid, n in model_nodes.items()
        for c in catalog["nodes"].get(uid, {}).get("columns", {})
        if c.lower() not in {k.lower() for k in n["columns"]}
    ]
    assert not undocumented, undocumented


# -- the real sample --------------------------------------------------------------------------------------------------


def _duck(sample_dir: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"CREATE VIEW ratings AS SELECT * FROM read_csv('{sample_dir / 'ratings.csv'}', header=true)")
    con.execute(
        f"CREATE VIEW movies AS SELECT * FROM read_csv('{sample_dir / 'movies.csv'}', header=true, quote='\"', "
        "escape='\"')"
    )
    con.execute(f"CREATE VIEW tags AS SELECT * FROM read_csv('{sample_dir / 'tags.csv'}', header=true)")
    return con


def test_sample_marts_equal_an_independent_duckdb_computation(sample: Project, sample_dir: Path) -> None:
    counts = sample.builds[0]["counts"]
    assert counts["model"] == {"success": MODELS} and set(counts["test"]) == {"pass"}
    con = _duck(sample_dir)

    # ratings per movie and mean rating per movie
    expected = {
        m: (n, mean)
        for m, n, mean in con.execute("SELECT movieId, COUNT(*), AVG(rating) FROM ratings GROUP BY movieId").fetchall()
    }
    got = {
        int(m): (int(n), float(mean))
        for m, n, mean in sample.sql("SELECT MOVIE_ID, RATING_COUNT, MEAN_RATING FROM MARTS.MART_MOVIE_RATINGS")
    }
    assert got.keys() == expected.keys()
    assert {m: v[0] for m, v in got.items()} == {m: v[0] for m, v in expected.items()}
    assert all(abs(got[m][1] - expected[m][1]) < 1e-9 for m in expected)
    # the Bayesian average, recomputed with the documented prior weight C = 10
    (m_all,) = con.execute("SELECT AVG(rating) FROM ratings").fetchone()  # type: ignore[misc]
    bayes = dict(sample.sql("SELECT MOVIE_ID, BAYESIAN_RATING FROM MARTS.MART_MOVIE_RATINGS"))
    for movie, (n, mean) in expected.items():
        assert abs(float(bayes[movie]) - (10 * m_all + n * mean) / (10 + n)) < 1e-9

    # ratings per genre per year (UTC); movies with "(no genres listed)" count for no genre
    expected_gy = dict(
        ((g, y), n)
        for g, y, n in con.execute(
            """
            SELECT genre, year(make_timestamp(r.timestamp * 1000000)) AS y, COUNT(*)
            FROM ratings r
            JOIN (SELECT movieId, unnest(string_split(genres, '|')) AS genre FROM movies
                  WHERE genres <> '(no genres listed)') g USING (movieId)
            GROUP BY 1, 2
            """
        ).fetchall()
    )
    got_gy = {
        (g, int(y)): int(n)
        for g, y, n in sample.sql("SELECT GENRE, RATING_YEAR, RATING_COUNT FROM MARTS.MART_GENRE_YEAR_POPULARITY")
    }
    assert got_gy == expected_gy

    # number of users, and the cohorts add up to them
    (users,) = con.execute("SELECT COUNT(DISTINCT userId) FROM ratings").fetchone()  # type: ignore[misc]
    assert sample.sql("SELECT COUNT(*) FROM CORE.DIM_USERS")[0][0] == users == 610
    assert sample.sql("SELECT SUM(COHORT_SIZE), SUM(RATING_COUNT) FROM MARTS.MART_USER_COHORTS")[0] == (
        users,
        100_836,
    )

    # number of tags (distinct tag events, tag trimmed)
    (tags,) = con.execute(  # type: ignore[misc]
        "SELECT COUNT(*) FROM (SELECT DISTINCT userId, movieId, trim(tag), timestamp FROM tags)"
    ).fetchone()
    assert sample.sql("SELECT COUNT(*) FROM CORE.FCT_TAGS")[0][0] == tags

    # title parsing over the real catalogue: every "(YYYY)" title has its year, and no clean title keeps one
    assert (
        sample.sql(
            "SELECT COUNT(*) FROM CORE.DIM_MOVIES WHERE RELEASE_YEAR IS NULL AND REGEXP_LIKE(ORIGINAL_TITLE, "
            "'.*[(][0-9]{4}[)]')"
        )[0][0]
        == 0
    )
    (movies, no_genres) = sample.sql("SELECT COUNT(*), COUNT_IF(NOT HAS_GENRES) FROM CORE.DIM_MOVIES")[0]
    assert movies == 9_742
    assert no_genres == con.execute("SELECT COUNT(*) FROM movies WHERE genres = '(no genres listed)'").fetchone()[0]  # type: ignore[index]


DAILY_RATINGS = (
    "userId,movieId,rating,timestamp\n"
    "1,2,4.5,1721520000\n"  # 2024-07-21: new events of existing users and movies
    "1,5,3.0,1721523600\n"
    "610,1,5.0,1721527200\n"
    "611,1,4.0,1721530800\n"  # a new user
    "1,1,2.0,964982703\n"  # the same event as ratings.csv's first row, re-sent with a corrected rating
)


def test_sample_daily_ratings_file_is_added_incrementally(sample: Project, tmp_path: Path) -> None:
    landing = tmp_path / "daily"
    landing.mkdir()
    (landing / "ratings_20240721.csv").write_text(DAILY_RATINGS)
    before, after = _incremental_equals_full_refresh(sample, landing)
    assert after == before + 4
    assert sample.sql("SELECT RATING FROM CORE.FCT_RATINGS WHERE USER_ID = 1 AND MOVIE_ID = 1")[0][0] == 2
    assert sample.sql("SELECT COUNT(*) FROM CORE.DIM_USERS")[0][0] == 611
