"""The synthetic MovieLens generator: exact format, exact sizes, determinism, realism and daily increments."""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import hashlib
import io
import re
import statistics
from collections import Counter
from pathlib import Path

import duckdb
import numpy as np
import pytest

from netflix_elt import contracts
from netflix_elt import generate as g

SNAPSHOT_FILES = [f"{d}.csv" for d in contracts.DATASETS]
DAY = dt.date(2023, 10, 13)
SNAPSHOT_START = g._epoch(g.DEFAULT_START)
SNAPSHOT_END = g._epoch(g.DEFAULT_END + dt.timedelta(days=1)) - 1


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small")
    g.generate(out, "small", seed=42)
    return out


@pytest.fixture(scope="module")
def tables(small: Path) -> dict[str, list[list[str]]]:
    return {name.removesuffix(".csv"): read_rows(small / name)[1] for name in SNAPSHOT_FILES}


@pytest.fixture(scope="module")
def daily(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("daily")
    g.generate_daily(out, DAY, "small", seed=42)
    return out


# ------------------------------------------------------------------------------------------------------------------
# Format
# ------------------------------------------------------------------------------------------------------------------


def test_writes_exactly_the_six_files_with_contract_names_and_headers(small: Path) -> None:
    assert sorted(p.name for p in small.iterdir()) == sorted(SNAPSHOT_FILES)
    for name in SNAPSHOT_FILES:
        matched = contracts.match_file_name(name)
        assert matched is not None and matched.date is None and not matched.gzipped
        with open(small / name, encoding="utf-8", newline="") as f:
            first = f.readline()
        assert first == matched.contract.header_line + "\n"
        contracts.check_header(name, matched.contract, first)


def test_every_row_has_the_contract_column_count(small: Path) -> None:
    for name in SNAPSHOT_FILES:
        contract = contracts.CONTRACTS[name.removesuffix(".csv")]
        header, rows = read_rows(small / name)
        assert tuple(header) == contract.header
        bad = [r for r in rows if len(r) != len(contract.header)]
        assert not bad, f"{name}: rows with the wrong number of columns, e.g. {bad[:3]}"


def test_utf8_lf_no_bom(small: Path) -> None:
    for name in SNAPSHOT_FILES:
        data = (small / name).read_bytes()
        assert not data.startswith(b"\xef\xbb\xbf"), name
        assert b"\r" not in data, name
        assert data.endswith(b"\n"), name
        data.decode("utf-8")


@pytest.mark.parametrize("name", ["movies.csv", "tags.csv", "links.csv", "genome-tags.csv"])
def test_fields_are_quoted_only_when_needed(small: Path, name: str) -> None:
    lines = (small / name).read_text(encoding="utf-8").splitlines()
    for line in lines:
        row = next(csv.reader([line]))
        buffer = io.StringIO()
        csv.writer(buffer, quoting=csv.QUOTE_MINIMAL, lineterminator="\n").writerow(row)
        assert buffer.getvalue() == line + "\n"


def test_number_formats_match_movielens(tables: dict[str, list[list[str]]]) -> None:
    assert all(re.fullmatch(r"[0-5]\.[05]", r[2]) for r in tables["ratings"])
    assert {float(r[2]) for r in tables["ratings"]} == set(contracts.RATING_VALUES)
    assert all(re.fullmatch(r"[1-9]\d*", r[3]) for r in tables["ratings"])
    assert all(re.fullmatch(r"\d{7}", r[1]) for r in tables["links"])
    assert all(re.fullmatch(r"|[1-9]\d*", r[2]) for r in tables["links"])
    relevance = [r[2] for r in tables["genome-scores"]]
    assert all(re.fullmatch(r"0\.\d+|1\.0", v) for v in relevance)
    assert all(0 < float(v) <= 1 for v in relevance)


# ------------------------------------------------------------------------------------------------------------------
# Sizes
# ------------------------------------------------------------------------------------------------------------------


def test_small_preset_counts_are_exact(tables: dict[str, list[list[str]]]) -> None:
    scale = g.SCALES["small"]
    assert len(tables["ratings"]) == scale.ratings == 100_836
    assert len(tables["movies"]) == scale.movies == 9_742
    assert len({r[0] for r in tables["ratings"]}) == scale.users == 610
    assert len(tables["tags"]) == scale.tags == 3_683
    assert len(tables["links"]) == scale.movies
    assert len(tables["genome-tags"]) == g.GENOME_TAG_COUNT == 1_128
    assert len(tables["genome-scores"]) == scale.genome_movies * 1_128


def test_custom_ratings_count_is_exact(tmp_path: Path) -> None:
    result = g.generate(tmp_path, "small", seed=3, ratings=5_000)
    scale = g.SCALES["small"].with_ratings(5_000)
    assert result.scale == scale
    _, ratings = read_rows(tmp_path / "ratings.csv")
    _, movies = read_rows(tmp_path / "movies.csv")
    assert len(ratings) == result.rows("ratings") == 5_000
    assert len(movies) == scale.movies
    assert len({r[0] for r in ratings}) == scale.users
    assert len({(r[0], r[1]) for r in ratings}) == 5_000


def test_result_reports_rows_and_bytes(tmp_path: Path) -> None:
    result = g.generate(tmp_path, "tiny")
    assert [f.dataset for f in result.files] == list(contracts.DATASETS)
    for f in result.files:
        assert f.path.stat().st_size == f.bytes
        assert len(read_rows(f.path)[1]) == f.rows
    assert "ratings.csv" in result.summary()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp files left behind"


def test_allocate_meets_total_floor_and_caps() -> None:
    rng = np.random.default_rng(1)
    weights = np.exp(2 * rng.standard_normal(500))
    caps = rng.integers(20, 400, 500)
    n = g._allocate(50_000, weights, 20, caps)
    assert int(n.sum()) == 50_000
    assert (n >= 20).all() and (n <= caps).all()
    with pytest.raises(ValueError, match="cannot place"):
        g._allocate(int(caps.sum()) + 1, weights, 20, caps)


# ------------------------------------------------------------------------------------------------------------------
# Determinism
# ------------------------------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes_whatever_the_thread_count(small: Path, tmp_path: Path) -> None:
    g.generate(tmp_path, "small", seed=42, threads=1)
    assert digest(tmp_path) == digest(small)


def test_different_seed_gives_different_bytes(tmp_path: Path) -> None:
    g.generate(tmp_path / "a", "tiny", seed=1)
    g.generate(tmp_path / "b", "tiny", seed=1)
    g.generate(tmp_path / "c", "tiny", seed=2)
    a, b, c = digest(tmp_path / "a"), digest(tmp_path / "b"), digest(tmp_path / "c")
    assert a == b
    assert all(a[name] != c[name] for name in a if name != "genome-tags.csv")


def test_gzip_output_decompresses_to_the_plain_files(tmp_path: Path) -> None:
    g.generate(tmp_path / "plain", "tiny", seed=5)
    g.generate(tmp_path / "gz", "tiny", seed=5, gzip=True)
    g.generate(tmp_path / "gz2", "tiny", seed=5, gzip=True)
    assert digest(tmp_path / "gz") == digest(tmp_path / "gz2")
    names = sorted(p.name for p in (tmp_path / "gz").iterdir())
    assert names == sorted(f"{n}.gz" for n in SNAPSHOT_FILES)
    for name in names:
        matched = contracts.match_file_name(name)
        assert matched is not None and matched.gzipped
        assert gzip.decompress((tmp_path / "gz" / name).read_bytes()) == (tmp_path / "plain" / name[:-3]).read_bytes()


# ------------------------------------------------------------------------------------------------------------------
# Realism
# ------------------------------------------------------------------------------------------------------------------


def test_titles_and_genres_have_the_movielens_quirks(tables: dict[str, list[list[str]]]) -> None:
    titles = [r[1] for r in tables["movies"]]
    assert sum("," in t for t in titles) > 100
    assert sum(re.search(r", (The|A|An) \(\d{4}\)$", t) is not None for t in titles) > 100
    assert sum('"' in t for t in titles) > 5
    assert sum(any(ord(c) > 127 for c in t) for t in titles) > 50
    assert sum(re.search(r"\(\d{4}\)$", t) is None for t in titles) > 5
    assert sum(re.search(r"\(\d{4}\)$", t) is not None for t in titles) > 0.98 * len(titles)
    assert sum("(a.k.a. " in t for t in titles) > 10
    genres = [r[2] for r in tables["movies"]]
    no_genres = "(no genres listed)"  # MovieLens' own spelling, not the generator's constant
    assert no_genres in genres
    used = {x for gs in genres if gs != no_genres for x in gs.split("|")}
    assert used == {name for name, _ in g._GENRES}
    assert all(gs.split("|") == sorted(gs.split("|")) for gs in genres if gs != no_genres)


def test_movie_ids_have_gaps_and_links_some_unknown_tmdb(tables: dict[str, list[list[str]]]) -> None:
    ids = [int(r[0]) for r in tables["movies"]]
    assert ids == sorted(set(ids))
    assert ids[-1] > 2 * len(ids)
    assert [int(r[0]) for r in tables["links"]] == ids
    assert sum(r[2] == "" for r in tables["links"]) > 5
    assert len({r[1] for r in tables["links"]}) == len(ids)


def test_tags_have_commas_quotes_and_unicode(tables: dict[str, list[list[str]]]) -> None:
    tags = [r[2] for r in tables["tags"]]
    assert any("," in t for t in tags)
    assert any('"' in t for t in tags)
    assert any(any(ord(c) > 127 for c in t) for t in tags)
    taggers = {r[0] for r in tables["tags"]}
    assert 1 < len(taggers) < 0.5 * g.SCALES["small"].users
    assert len({(r[0], r[1], r[2], r[3]) for r in tables["tags"]}) == len(tags)


def test_rating_distribution_looks_like_movielens(tables: dict[str, list[list[str]]]) -> None:
    values = [float(r[2]) for r in tables["ratings"]]
    counts = Counter(values)
    assert 3.3 < statistics.fmean(values) < 3.7
    assert counts.most_common(1)[0][0] == 4.0
    whole = sum(c for v, c in counts.items() if v == int(v))
    assert whole > 0.6 * len(values)
    assert all(counts[v] > 0 for v in contracts.RATING_VALUES)


def test_no_duplicate_user_movie_pair_and_at_least_20_ratings_each(tables: dict[str, list[list[str]]]) -> None:
    pairs = [(r[0], r[1]) for r in tables["ratings"]]
    assert len(set(pairs)) == len(pairs)
    per_user = Counter(r[0] for r in tables["ratings"])
    assert min(per_user.values()) >= 20


def test_popularity_and_activity_are_skewed(tables: dict[str, list[list[str]]]) -> None:
    per_movie = sorted(Counter(r[1] for r in tables["ratings"]).values(), reverse=True)
    top = per_movie[: len(tables["movies"]) // 100]
    assert sum(top) > 0.10 * len(tables["ratings"])
    assert statistics.median(per_movie) < 10
    assert per_movie[0] > 100
    per_user = sorted(Counter(r[0] for r in tables["ratings"]).values(), reverse=True)
    assert per_user[0] > 10 * statistics.median(per_user)
    assert sum(per_user[: len(per_user) // 10]) > 0.35 * len(tables["ratings"])


def test_ratings_are_chronological_per_user_within_the_snapshot(tables: dict[str, list[list[str]]]) -> None:
    keys = [(int(r[0]), int(r[3])) for r in tables["ratings"]]
    assert keys == sorted(keys)
    stamps = [k[1] for k in keys]
    assert min(stamps) >= SNAPSHOT_START and max(stamps) <= SNAPSHOT_END
    assert max(stamps) - min(stamps) > 20 * 365 * 86_400
    half = [int(r[3]) for r in tables["ratings"] if float(r[2]) != int(float(r[2]))]
    assert min(half) >= g._epoch(g.HALF_STARS_FROM)


def test_genome_scores_are_low_skewed_and_complete(tables: dict[str, list[list[str]]]) -> None:
    scores = tables["genome-scores"]
    movies = {r[0] for r in scores}
    assert len(scores) == len(movies) * 1_128 == g.SCALES["small"].genome_movies * 1_128
    by_movie = Counter(r[0] for r in scores)
    assert set(by_movie.values()) == {1_128}
    relevance = [float(r[2]) for r in scores]
    assert statistics.median(relevance) < 0.2
    assert max(relevance) > 0.9
    assert [r[0] for r in tables["genome-tags"]] == [str(i) for i in range(1, 1_129)]
    assert len({r[1] for r in tables["genome-tags"]}) == 1_128


def test_every_referenced_movie_exists(tables: dict[str, list[list[str]]]) -> None:
    movies = {r[0] for r in tables["movies"]}
    for name in ("ratings", "tags", "links", "genome-scores"):
        column = 0 if name in ("links", "genome-scores") else 1
        assert {r[column] for r in tables[name]} <= movies, name
    assert len({r[1] for r in tables["ratings"]}) > 0.5 * len(movies)


def test_ratings_come_after_the_movie_is_released(small: Path) -> None:
    con = duckdb.connect()
    late = con.execute(
        f"""
        SELECT count(*) FROM read_csv('{small / "ratings.csv"}') r
        JOIN read_csv('{small / "movies.csv"}', quote='"', escape='"') m USING (movieId)
        WHERE regexp_matches(m.title, '\\(\\d{{4}}\\)$')
          AND year(to_timestamp(r.timestamp)) < CAST(regexp_extract(m.title, '\\((\\d{{4}})\\)$', 1) AS INTEGER)
        """
    ).fetchone()
    assert late == (0,)


# ------------------------------------------------------------------------------------------------------------------
# Daily increments
# ------------------------------------------------------------------------------------------------------------------


def test_daily_files_are_named_and_headed_by_contract(daily: Path) -> None:
    names = sorted(p.name for p in daily.iterdir())
    assert names == sorted(f"{d}_20231013.csv" for d in ("ratings", "tags", "movies", "links"))
    for name in names:
        matched = contracts.match_file_name(name)
        assert matched is not None and matched.date == "20231013"
        header, rows = read_rows(daily / name)
        assert tuple(header) == matched.contract.header
        assert all(len(r) == len(header) for r in rows)


def test_daily_ratings_fall_within_the_day(daily: Path, tables: dict[str, list[list[str]]]) -> None:
    _, ratings = read_rows(daily / "ratings_20231013.csv")
    start = g._epoch(DAY)
    assert len(ratings) == g.SCALES["small"].default_daily_ratings
    assert all(start <= int(r[3]) < start + 86_400 for r in ratings)
    assert {float(r[2]) for r in ratings} <= set(contracts.RATING_VALUES)
    keys = [(int(r[0]), int(r[3])) for r in ratings]
    assert keys == sorted(keys)
    assert len({(r[0], r[1]) for r in ratings}) == len(ratings)
    base_users = {r[0] for r in tables["ratings"]}
    users = {r[0] for r in ratings}
    assert len(users & base_users) > 0.8 * len(users)
    assert users - base_users, "expected a new user"
    assert all(int(u) > 610 for u in users - base_users)
    _, tags = read_rows(daily / "tags_20231013.csv")
    assert tags and all(start <= int(r[3]) < start + 86_400 for r in tags)


def test_daily_movies_correct_existing_and_add_new(daily: Path, tables: dict[str, list[list[str]]]) -> None:
    base = {r[0]: r for r in tables["movies"]}
    base_max = max(int(i) for i in base)
    _, movies = read_rows(daily / "movies_20231013.csv")
    existing = [r for r in movies if r[0] in base]
    new = [r for r in movies if r[0] not in base]
    assert existing and new
    assert all(r != base[r[0]] for r in existing)
    assert all(int(r[0]) > base_max for r in new)
    _, links = read_rows(daily / "links_20231013.csv")
    assert [r[0] for r in links] == [r[0] for r in new]
    assert all(re.fullmatch(r"\d{7}", r[1]) for r in links)
    _, ratings = read_rows(daily / "ratings_20231013.csv")
    assert {r[1] for r in ratings} <= set(base) | {r[0] for r in new}


def test_daily_is_deterministic_and_days_differ(daily: Path, tmp_path: Path) -> None:
    g.generate_daily(tmp_path, DAY, "small", seed=42)
    assert digest(tmp_path) == digest(daily)
    g.generate_daily(tmp_path, DAY + dt.timedelta(days=1), "small", seed=42)
    next_day = {n.replace("20231014", "20231013"): h for n, h in digest(tmp_path).items() if "20231014" in n}
    assert all(next_day[n] != h for n, h in digest(daily).items())


def test_consecutive_days_use_fresh_ids(tmp_path: Path) -> None:
    first = g.generate_daily(tmp_path, DAY, "small", seed=42, daily_ratings=2_000)
    second = g.generate_daily(tmp_path, DAY + dt.timedelta(days=1), "small", seed=42, daily_ratings=2_000)
    assert first.rows("ratings") == second.rows("ratings") == 2_000
    ids = [int(r[0]) for day in ("20231013", "20231014") for r in read_rows(tmp_path / f"links_{day}.csv")[1]]
    assert len(ids) == len(set(ids))


def test_daily_day_must_follow_the_snapshot(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"ends on 2023-10-12; 2023-10-12 is not after that"):
        g.generate_daily(tmp_path, g.DEFAULT_END, "tiny")
    with pytest.raises(ValueError, match="2023-10-13 on"):
        g.generate_daily(tmp_path, dt.date(2020, 1, 1), "tiny")
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------------------------


def test_cli_writes_snapshot_and_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert g.main(["--scale", "tiny", "--out", str(tmp_path), "--seed", "9"]) == 0
    out, err = capsys.readouterr()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(SNAPSHOT_FILES)
    assert "ratings.csv" in out and "1,000" in out and "total" in out
    assert err.count("wrote ") == 6


def test_cli_daily_days_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--scale", "tiny", "--out", str(tmp_path), "--daily", "2023-10-20", "--days", "2", "--gzip"]
    assert g.main(args) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{d}_{day}.csv.gz" for d in ("ratings", "tags", "movies", "links") for day in ("20231020", "20231021")
    )
    capsys.readouterr()
    assert g.main(["--scale", "tiny", "--out", str(tmp_path), "--daily", "2023-01-01"]) == 2
    assert "not after" in capsys.readouterr().err
    assert g.main(["--scale", "tiny", "--out", str(tmp_path), "--daily-ratings", "5"]) == 2
    assert "--daily-ratings applies to daily increments" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        g.main(["--scale", "huge"])


def test_cli_help_describes_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        g.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--out", "--scale", "--ratings", "--seed", "--daily", "--days", "--daily-ratings", "--gzip"):
        assert option in text
    assert "ml-32m" in text and "python -m netflix_elt.generate" in text


def test_register_cli_adds_generate_subcommand(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser(prog="netflix-elt")
    g.register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["generate", "--scale", "tiny", "--ratings", "500", "--out", str(tmp_path)])
    assert args.out == tmp_path and args.ratings == 500 and args.seed == 42 and args.daily is None
    assert args.func(args) == 0
    _, ratings = read_rows(tmp_path / "ratings.csv")
    assert len(ratings) == 500
    help_text = parser.parse_known_args(["generate"])[0]
    assert help_text.scale == "small"
