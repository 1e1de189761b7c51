"""The certification dataset: small synthetic MovieLens files with every kind of row the load rejects, and what the
pipeline must make of them, computed in Python without Snowflake or dbt.

The files come in three landing directories, uploaded and loaded in this order:

- ``split``: the snapshot's ``ratings.csv``, uploaded with a split threshold below its size, so it is staged as
  gzip parts and loaded as one file;
- ``snapshot``: the other five snapshot files; ``split`` and ``snapshot`` are loaded together by the DAG's load task;
- ``daily``: one day's increment files (``ratings_YYYYMMDD.csv``, ...) with a bad row of each kind appended, and
  ``genome-tags_YYYYMMDD.csv``, the snapshot's ``genome-tags.csv`` under another name (uploaded with ``force``, so
  the load sees the same content again and must mark it DUPLICATE); loaded by ``netflix-elt load``.

The generator is deterministic: the same seed gives the same bytes, so a later check can rebuild the expectations.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .. import generate

SEED = 20240721
SCALE = "tiny"
DAY = generate.DEFAULT_END + dt.timedelta(days=1)
DAILY_RATINGS = 60
BATCHES = ("split", "snapshot", "daily")
_SUFFIX = DAY.strftime("%Y%m%d")

# one row of each kind the load rejects (tests/test_bad_inputs.py has the catalogue), appended to the daily files:
# (dataset, the row as bytes, what is wrong with it)
BAD_ROWS: tuple[tuple[str, bytes, str], ...] = (
    ("ratings", b"9001,3", "too few fields"),
    ("ratings", b"9001,1,4.0,1697155200,7", "too many fields"),
    ("ratings", b"abc,1,3.0,1697155201", "an id that is not a number"),
    ("ratings", b"9001\0,2,3.0,1697155202", "a NUL byte in a number"),
    ("ratings", b"9001,2,7.0,1697155203", "a rating above 5.0"),
    ("ratings", b"9001,3,10,1697155204", "a rating that does not fit NUMBER(2,1)"),
    ("ratings", b"9001,4,3.7,1697155205", "a rating that is not a half star"),
    ("ratings", b"9001,5,,1697155206", "an empty required value"),
    ("tags", b"9001,1,fine tag,not-a-time", "a timestamp that is not a number"),
    ("movies", "990001,Am\u00e9lie (2001),Comedy".encode("latin-1"), "a row that is not UTF-8"),
    ("links", b"990002,,8844", "an empty imdbId"),
)


@dataclass
class SourceFile:
    """One landing file and what its load must give."""

    name: str
    dataset: str
    batch: str  # one of BATCHES
    path: Path
    good_rows: list[list[str]]  # the records that must reach RAW, as parsed by Python's csv module
    bad_lines: list[int] = field(default_factory=list)  # line numbers (header = 1) of the rows the load must reject
    duplicate_of: str | None = None  # name of the file whose content this one repeats

    @property
    def rows_parsed(self) -> int:
        return 0 if self.duplicate_of else len(self.good_rows) + len(self.bad_lines)

    @property
    def rows_loaded(self) -> int:
        return 0 if self.duplicate_of else len(self.good_rows)

    @property
    def rows_rejected(self) -> int:
        return 0 if self.duplicate_of else len(self.bad_lines)


@dataclass
class Dataset:
    root: Path
    files: list[SourceFile]

    def landing(self, batch: str) -> Path:
        return self.root / batch

    def in_batch(self, batch: str) -> list[SourceFile]:
        return [f for f in self.files if f.batch == batch]

    def by_name(self, name: str) -> SourceFile:
        return next(f for f in self.files if f.name == name)

    def loaded_files(self) -> list[SourceFile]:
        """Files whose rows reach RAW, in load order (the batches' order, then by name)."""
        return [f for b in BATCHES for f in sorted(self.in_batch(b), key=lambda f: f.name) if not f.duplicate_of]


def build(root: Path) -> Dataset:
    """Write the dataset under ``root`` (a new or empty directory) and return it with its expectations."""
    root.mkdir(parents=True, exist_ok=True)
    snapshot, daily = root / "generated" / "snapshot", root / "generated" / "daily"
    generate.generate(snapshot, SCALE, SEED)
    generate.generate_daily(daily, DAY, SCALE, SEED, daily_ratings=DAILY_RATINGS)
    for batch in BATCHES:
        (root / batch).mkdir(exist_ok=True)
    files: list[SourceFile] = []
    for src in sorted(snapshot.glob("*.csv")):
        batch = "split" if src.name == "ratings.csv" else "snapshot"
        files.append(_place(src, root / batch / src.name, batch))
    for src in sorted(daily.glob("*.csv")):
        files.append(_with_bad_rows(_place(src, root / "daily" / src.name, "daily")))
    duplicate = f"genome-tags_{_SUFFIX}.csv"
    shutil.copyfile(root / "snapshot" / "genome-tags.csv", root / "daily" / duplicate)
    files.append(SourceFile(duplicate, "genome-tags", "daily", root / "daily" / duplicate, [], [], "genome-tags.csv"))
    shutil.rmtree(root / "generated")
    return Dataset(root, files)


def _place(src: Path, dest: Path, batch: str) -> SourceFile:
    shutil.move(src, dest)
    dataset = dest.name.split("_")[0].removesuffix(".csv")
    return SourceFile(dest.name, dataset, batch, dest, _records(dest.read_bytes()))


def _records(content: bytes) -> list[list[str]]:
    rows = list(csv.reader(io.StringIO(content.decode("utf-8"), newline="")))
    return rows[1:]


def _with_bad_rows(f: SourceFile) -> SourceFile:
    content = f.path.read_bytes()
    if not content.endswith(b"\n"):
        content += b"\n"
    for dataset, row, _ in BAD_ROWS:
        if dataset == f.dataset:
            f.bad_lines.append(content.count(b"\n") + 1)
            content += row + b"\n"
    f.path.write_bytes(content)
    return f


# -- what the marts must say -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rating:
    user_id: int
    movie_id: int
    rating: float
    epoch_seconds: int


def ratings(ds: Dataset) -> list[Rating]:
    """Every rating event once: a (user, movie, time) loaded again keeps its latest row (load order, then row)."""
    events: dict[tuple[int, int, int], Rating] = {}
    for f in ds.loaded_files():
        if f.dataset == "ratings":
            for user, movie, rating, ts in f.good_rows:
                r = Rating(int(user), int(movie), float(rating), int(ts))
                events[(r.user_id, r.movie_id, r.epoch_seconds)] = r
    return list(events.values())


def movie_genres(ds: Dataset) -> dict[int, list[str]]:
    """Each movie's genres in its latest version (a later file corrects an earlier one)."""
    latest: dict[int, str] = {}
    for f in ds.loaded_files():
        if f.dataset == "movies":
            for movie, _title, genres in f.good_rows:
                latest[int(movie)] = genres
    return {m: ([] if g == "(no genres listed)" else sorted(set(g.split("|")))) for m, g in latest.items()}


def movie_rating_stats(ds: Dataset) -> dict[int, tuple[int, float]]:
    """Per rated movie: (number of ratings, mean rating)."""
    sums: dict[int, list[float]] = defaultdict(list)
    for r in ratings(ds):
        sums[r.movie_id].append(r.rating)
    return {m: (len(v), sum(v) / len(v)) for m, v in sums.items()}


def genre_year_stats(ds: Dataset) -> dict[tuple[str, int], tuple[int, int, int, float]]:
    """Per (genre, UTC year of the rating): (ratings, distinct users, distinct movies, mean rating); a rating counts
    once for each genre of its movie, a movie without genres or not in the catalogue not at all."""
    genres = movie_genres(ds)
    groups: dict[tuple[str, int], list[Rating]] = defaultdict(list)
    for r in ratings(ds):
        year = dt.datetime.fromtimestamp(r.epoch_seconds, dt.UTC).year
        for g in genres.get(r.movie_id, []):
            groups[(g, year)].append(r)
    return {
        k: (len(v), len({r.user_id for r in v}), len({r.movie_id for r in v}), sum(r.rating for r in v) / len(v))
        for k, v in groups.items()
    }
