"""The six file contracts: names, headers, types, RAW tables, keys; and the real GroupLens sample meets them."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import pytest

from netflix_elt import contracts
from netflix_elt.contracts import CONTRACTS, ContractError, check_header, contract_for, match_file_name


def test_six_datasets_with_their_raw_tables_and_keys() -> None:
    assert set(CONTRACTS) == {"movies", "ratings", "tags", "links", "genome-scores", "genome-tags"}
    assert {c.qualified_raw_table for c in CONTRACTS.values()} == {
        "RAW.MOVIES",
        "RAW.RATINGS",
        "RAW.TAGS",
        "RAW.LINKS",
        "RAW.GENOME_SCORES",
        "RAW.GENOME_TAGS",
    }
    for c in CONTRACTS.values():
        assert set(c.natural_key) <= set(c.header), c.dataset
        assert len({col.raw_name for col in c.columns}) == len(c.columns)
        assert not {col.raw_name for col in c.columns} & {n for n, _ in contracts.LINEAGE_COLUMNS}
    assert CONTRACTS["ratings"].header_line == "userId,movieId,rating,timestamp"
    assert CONTRACTS["genome-scores"].header_line == "movieId,tagId,relevance"
    assert CONTRACTS["ratings"].natural_key_raw == ("USER_ID", "MOVIE_ID", "EPOCH_SECONDS")


@pytest.mark.parametrize(
    ("name", "dataset", "date", "gz"),
    [
        ("ratings.csv", "ratings", None, False),
        ("ratings_20240721.csv", "ratings", "20240721", False),
        ("genome-scores.csv.gz", "genome-scores", None, True),
        ("movies_20241231.csv.gz", "movies", "20241231", True),
        ("genome-tags.csv", "genome-tags", None, False),
    ],
)
def test_file_names_that_match(name: str, dataset: str, date: str | None, gz: bool) -> None:
    m = match_file_name(name)
    assert m is not None
    assert (m.contract.dataset, m.date, m.gzipped) == (dataset, date, gz)


@pytest.mark.parametrize(
    "name",
    ["ratings.txt", "Ratings.csv", "ratings_2024072.csv", "ratings_20241301.csv", "users.csv", "ratings.csv.zip",
     "ratings 2.csv", "x_ratings.csv", "movies.csv\n", "ratings.csv.gz\n", "ratings_\uff12\uff10\uff12\uff14\uff10\uff17\uff12\uff11.csv",
     "ratings_2024\u0660721.csv", "movies.csv\nratings.csv"],
)  # fmt: skip
def test_file_names_that_do_not(name: str) -> None:
    assert match_file_name(name) is None
    with pytest.raises(ContractError, match="not a MovieLens file name"):
        contract_for(name)


def test_a_name_with_a_newline_or_look_alike_digits_is_shown_escaped() -> None:
    with pytest.raises(ContractError) as e:
        contract_for("movies.csv\n")
    assert str(e.value).startswith("'movies.csv\\n': not a MovieLens file name (the name has characters that are not")
    with pytest.raises(ContractError) as e:
        contract_for("ratings_\uff12\uff10\uff12\uff14\uff10\uff17\uff12\uff11.csv")
    assert str(e.value).startswith("'ratings_\\uff12\\uff10")
    with pytest.raises(ContractError) as e:  # a name in another language is shown as it is
        contract_for("évaluations.csv")
    assert str(e.value).startswith("évaluations.csv: not a MovieLens file name. Expected")


@pytest.mark.parametrize(
    "key",
    [
        "ratings/20261130T061502Z_3f2a9c0d1e4b5a6f/ratings.csv\n",
        "ratings/20261130T061502Z_3f2a9c0d1e4b5a6f/ratings.csv.part0001of0002.csv.gz\n",
        "ratings/\uff12\uff10\uff12\uff16\uff11\uff11\uff13\uff10T061502Z_3f2a9c0d1e4b5a6f/ratings.csv",
        "ratings/20261130T061502Z_3f2a9c0d1e4b5a6f/ratings.csv.part\uff10\uff10\uff10\uff11of0002.csv.gz",
    ],
)
def test_stage_keys_match_in_full_and_in_ascii_digits(key: str) -> None:
    assert contracts.parse_stage_key(key) is None


def test_header_check_shows_expected_and_found() -> None:
    ratings = CONTRACTS["ratings"]
    check_header("ratings.csv", ratings, "userId,movieId,rating,timestamp\n")
    with pytest.raises(ContractError) as e:
        check_header("ratings.csv", ratings, "userId,rating,movieId,timestamp\n")
    msg = str(e.value)
    assert "expected: userId,movieId,rating,timestamp" in msg
    assert "found:    userId,rating,movieId,timestamp" in msg
    assert "another order" in msg
    with pytest.raises(ContractError, match="missing timestamp"):
        check_header("ratings.csv", ratings, "userId,movieId,rating\n")
    with pytest.raises(ContractError, match="CRLF"):
        check_header("ratings.csv", ratings, "userId,movieId,rating,timestampx\r\n")


def _parse(value: str, sql_type: str) -> object:
    if sql_type == "NUMBER(38,0)":
        return int(value)
    if sql_type.startswith("NUMBER("):
        return Decimal(value)
    if sql_type == "FLOAT":
        return float(value)
    return value


def test_real_grouplens_sample_satisfies_the_contracts(sample_dir: Path) -> None:
    counts = {}
    for path in sorted(sample_dir.glob("*.csv")):
        m = contract_for(path.name)
        c = m.contract
        with path.open(newline="", encoding="utf-8") as f:
            first = f.readline()
            check_header(path.name, c, first)
            keys = set()
            n = 0
            for row in csv.reader(f):
                n += 1
                assert len(row) == len(c.columns), (path.name, n, row)
                for value, col in zip(row, c.columns, strict=True):
                    if value == "":
                        assert col.nullable, (path.name, n, col.header)
                        continue
                    _parse(value, col.sql_type)
                if c.dataset == "ratings":
                    assert float(row[2]) in contracts.RATING_VALUES
                key = tuple(row[c.header.index(k)] for k in c.natural_key)
                assert key not in keys, (path.name, key)
                keys.add(key)
        counts[c.dataset] = n
    assert counts == {"links": 9742, "movies": 9742, "ratings": 100836, "tags": 3683}


def test_stage_keys_round_trip() -> None:
    sha = "3f2a9c0d1e4b5a6f" + "0" * 48  # pragma: allowlist secret (a checksum)
    key = contracts.stage_key("ratings", "20261130T061502Z", sha, "ratings_20240721.csv")
    assert key == "ratings/20261130T061502Z_3f2a9c0d1e4b5a6f/ratings_20240721.csv"
    parsed = contracts.parse_stage_key(key)
    assert parsed is not None
    assert (parsed.dataset, parsed.checksum, parsed.name, parsed.part) == (
        "ratings",
        "3f2a9c0d1e4b5a6f",  # pragma: allowlist secret (a checksum)
        "ratings_20240721.csv",
        None,
    )
    part = contracts.stage_key("ratings", "20261130T061502Z", sha, "ratings.csv", part=3, parts=5)
    assert part == "ratings/20261130T061502Z_3f2a9c0d1e4b5a6f/ratings.csv.part0003of0005.csv.gz"
    p = contracts.parse_stage_key(part)
    assert p is not None and (p.part, p.parts, p.name) == (3, 5, "ratings.csv")
    # a part beyond the count is not a part of ours
    assert contracts.parse_stage_key(part.replace("part0003of", "part0006of")) is None
    assert p.source_key == "ratings/20261130T061502Z_3f2a9c0d1e4b5a6f/ratings.csv"
    # a dataset folder must hold files of that dataset; other keys are not ours
    assert contracts.parse_stage_key("movies/20261130T061502Z_3f2a9c0d1e4b5a6f/ratings.csv") is None
    assert contracts.parse_stage_key("ratings/ratings.csv") is None
