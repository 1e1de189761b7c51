"""The dbt project netflix_dbt on the local stack: dbt build on generated data and on the real MovieLens sample,
marts checked against an independent DuckDB computation from the CSV files, the incremental fct_ratings after a
daily file, and every compiled model parsed as Snowflake SQL.

Each dataset gets its own stack (deploy, upload, load as in tests/test_load.py); dbt runs in-process through
netflix_elt.transform with its target/ and logs/ in a temporary directory. dbt is invoked as few times as possible
(~3 s start-up each): per dataset, one build, one incremental build after the daily file, one full-refresh run.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlglot

from netflix_elt import pipeline, transform
from netflix_elt.generate import generate, generate_daily
from netflix_elt.stack import LocalStack
from tests.conftest import make_stack
from uploader import upload

pytestmark = pytest.mark.slow(minutes=2)

MODELS = 24  # staging views, core and intermediate tables, marts
VIEWS = 8  # the staging models


@dataclass
class Project:
    """A deployed local stack with data loaded, and where dbt writes for it."""

    stack: LocalStack
    work: Path
    builds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = pipeline.target_env(self.stack.settings)
        env["DBT_TARGET_PATH"] = str(self.work / "target")
        env["DBT_LOG_PATH"] = str(self.work / "logs")
        return env

    def dbt(self, *args: str) -> transform.DbtResult:
        return transform.run_dbt(["--quiet", *args, "--threads", "2"], self.env)

    def build(self, *args: str) -> dict[str, Any]:
        result = self.dbt("build", *args)
        summary = {"success": result.success, "counts": result.counts(), "failures": result.failures()}
        self.builds.append(summary)
        assert result.success, (result.exception, [(f["name"], f["message"]) for f in result.failures()])
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
        return summary


@pytest.fixture(scope="module")
def local_only() -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    mp.delenv("SNOWFLAKE_ACCOUNT", raising=False)  # pipeline.is_local(): the emulator, never a real account
    yield
    mp.undo()


def _project(root: Path, landing: Path) -> Iterator[Project]:
    stack = make_stack(root / "stack")
    stack.up()
    try:
        deployed = pipeline.deploy(stack.settings, quiet=True)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        project = Project(stack, root)
        project.upload_and_load(landing)
        yield project
    finally:
        stack.down()


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, local_only: None) -> Iterator[Project]:
    """Generated data (scale tiny, with genome files), built once."""
    root = tmp_path_factory.mktemp("dbt-generated")
    generate(root / "landing", scale="tiny")
    for project in _project(root, root / "landing"):
        project.build()
        yield project


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path, local_only: None) -> Iterator[Project]:
    """The real ml-latest-small sample, built once."""
    root = tmp_path_factory.mktemp("dbt-sample")
    for project in _project(root, sample_dir):
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
