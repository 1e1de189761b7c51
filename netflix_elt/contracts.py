"""The six MovieLens file contracts, defined once.

Everything that touches a MovieLens file derives from this module or is checked against it by a test:
the generator writes these headers, the uploader validates names and headers with it, the migrations'
RAW tables and file formats carry these columns and types, the load procedure maps file names to RAW
tables with the same patterns, and the dbt sources describe the same columns.

Standard library only: the same definitions are usable inside Snowflake's Python sandbox.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Columns every RAW table carries after the data columns, to trace each row back to its file.
LINEAGE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("SOURCE_FILE", "VARCHAR"),  # stage-relative key of the file the row came from
    ("SOURCE_ROW_NUMBER", "NUMBER(38,0)"),  # 1-based data row number in the file (the header is row 0)
    ("LOAD_ID", "VARCHAR"),  # id of the procedure run that loaded the row
    ("LOADED_AT", "TIMESTAMP_NTZ"),  # UTC time the row was loaded
)

RATING_VALUES: tuple[float, ...] = tuple(x / 2 for x in range(1, 11))  # 0.5, 1.0, ... 5.0


@dataclass(frozen=True)
class Column:
    """One CSV column: its header name, its RAW column name and Snowflake type, and whether it may be empty."""

    header: str
    raw_name: str
    sql_type: str
    nullable: bool = False
    description: str = ""
    # the only values the column may hold, when its type allows more (a row with another value is rejected at load)
    allowed: tuple[float, ...] = ()

    @property
    def is_integer(self) -> bool:
        return self.sql_type == "NUMBER(38,0)"


@dataclass(frozen=True)
class FileContract:
    """A MovieLens file: how it is named, what its header is, and where and how it lands in RAW."""

    dataset: str  # the name used in file names, e.g. "genome-scores"
    columns: tuple[Column, ...]
    natural_key: tuple[str, ...]  # header names that identify one record (one event for ratings and tags)
    description: str
    kind: str  # "event" (append-only facts) or "catalogue" (latest version wins)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def header(self) -> tuple[str, ...]:
        return tuple(c.header for c in self.columns)

    @property
    def header_line(self) -> str:
        return ",".join(self.header)

    @property
    def raw_table(self) -> str:
        """Unqualified RAW table name, e.g. GENOME_SCORES."""
        return self.dataset.upper().replace("-", "_")

    @property
    def qualified_raw_table(self) -> str:
        return f"RAW.{self.raw_table}"

    @property
    def file_format(self) -> str:
        """Name of the CSV file format (in schema RAW) used to load this file."""
        return "CSV_MOVIELENS"

    def column(self, header: str) -> Column:
        for c in self.columns:
            if c.header == header:
                return c
        raise KeyError(f"{self.dataset} has no column {header!r}")

    @property
    def natural_key_raw(self) -> tuple[str, ...]:
        return tuple(self.column(h).raw_name for h in self.natural_key)


INT = "NUMBER(38,0)"
TEXT = "VARCHAR"

CONTRACTS: dict[str, FileContract] = {
    c.dataset: c
    for c in (
        FileContract(
            dataset="movies",
            columns=(
                Column("movieId", "MOVIE_ID", INT, description="MovieLens movie id"),
                Column("title", "TITLE", TEXT, description='Title with the release year in "(YYYY)", if known'),
                Column("genres", "GENRES", TEXT, description='Pipe-separated genres, or "(no genres listed)"'),
            ),
            natural_key=("movieId",),
            description="One row per movie. Daily files correct titles and genres or add movies.",
            kind="catalogue",
        ),
        FileContract(
            dataset="ratings",
            columns=(
                Column("userId", "USER_ID", INT, description="Anonymised user id"),
                Column("movieId", "MOVIE_ID", INT, description="Rated movie"),
                Column(
                    "rating",
                    "RATING",
                    "NUMBER(2,1)",
                    description="0.5 to 5.0 in half-star steps",
                    allowed=RATING_VALUES,
                ),
                Column("timestamp", "EPOCH_SECONDS", INT, description="Seconds since 1970-01-01 UTC"),
            ),
            natural_key=("userId", "movieId", "timestamp"),
            description="One row per rating event.",
            kind="event",
        ),
        FileContract(
            dataset="tags",
            columns=(
                Column("userId", "USER_ID", INT, description="Anonymised user id"),
                Column("movieId", "MOVIE_ID", INT, description="Tagged movie"),
                Column("tag", "TAG", TEXT, description="Free-text tag"),
                Column("timestamp", "EPOCH_SECONDS", INT, description="Seconds since 1970-01-01 UTC"),
            ),
            natural_key=("userId", "movieId", "tag", "timestamp"),
            description="One row per tag a user applied to a movie.",
            kind="event",
        ),
        FileContract(
            dataset="links",
            columns=(
                Column("movieId", "MOVIE_ID", INT, description="MovieLens movie id"),
                Column("imdbId", "IMDB_ID", TEXT, description="IMDb id digits, zero-padded to 7 (no 'tt')"),
                Column("tmdbId", "TMDB_ID", INT, nullable=True, description="TMDB id; empty when unknown"),
            ),
            natural_key=("movieId",),
            description="External ids of each movie.",
            kind="catalogue",
        ),
        FileContract(
            dataset="genome-scores",
            columns=(
                Column("movieId", "MOVIE_ID", INT, description="Scored movie"),
                Column("tagId", "TAG_ID", INT, description="Genome tag"),
                Column("relevance", "RELEVANCE", "FLOAT", description="Relevance of the tag to the movie, 0 to 1"),
            ),
            natural_key=("movieId", "tagId"),
            description="Tag genome: relevance of each of the 1,128 genome tags to each movie that has a genome.",
            kind="catalogue",
        ),
        FileContract(
            dataset="genome-tags",
            columns=(
                Column("tagId", "TAG_ID", INT, description="Genome tag id"),
                Column("tag", "TAG", TEXT, description="Genome tag text"),
            ),
            natural_key=("tagId",),
            description="The 1,128 tags of the tag genome.",
            kind="catalogue",
        ),
    )
}

DATASETS: tuple[str, ...] = tuple(CONTRACTS)

# ratings.csv, ratings_20240721.csv, genome-scores.csv.gz, ...
# Names match in full (fullmatch, and \Z: `$` would also match before a final newline, so "movies.csv\n" would pass)
# and in ASCII only ([0-9], re.ASCII: \d would also match other scripts' digits, such as fullwidth ones).
FILE_NAME_PATTERN = re.compile(
    r"^(?P<dataset>" + "|".join(re.escape(d) for d in DATASETS) + r")"
    r"(?:_(?P<date>[0-9]{8}))?"
    r"\.csv(?P<gz>\.gz)?\Z",
    re.ASCII,
)


@dataclass(frozen=True)
class FileName:
    """A landing file name that matched a contract."""

    name: str
    contract: FileContract
    date: str | None  # YYYYMMDD for daily files, None for a snapshot
    gzipped: bool


class ContractError(ValueError):
    """A file that does not meet its contract. The message names the file and says how to fix it."""


def match_file_name(name: str) -> FileName | None:
    """The contract a file name belongs to, or None if it names no MovieLens file (the whole name must match)."""
    m = FILE_NAME_PATTERN.fullmatch(name)
    if not m:
        return None
    date = m.group("date")
    if date is not None and not _valid_date(date):
        return None
    return FileName(name=name, contract=CONTRACTS[m.group("dataset")], date=date, gzipped=bool(m.group("gz")))


def expected_file_names() -> str:
    """Human-readable list of accepted file names, for error messages and --help."""
    return ", ".join(f"{d}.csv" for d in DATASETS) + " (optionally _YYYYMMDD before .csv, and .gz after it)"


def shown_name(name: str) -> str:
    """A file name as messages show it: escaped (``'movies.csv\\n'``) when it has a character that is not printable,
    which could garble or drive a terminal, or a digit that only looks like one (fullwidth ``\\uff12``); as it is otherwise
    (``évaluations.csv``)."""
    look_alike = any(c.isdigit() and not c.isascii() for c in name)
    return ascii(name) if look_alike or not name.isprintable() else name


def contract_for(name: str) -> FileName:
    """Like match_file_name, but raises a ContractError that says which names are accepted."""
    matched = match_file_name(name)
    if matched is None:
        shown = shown_name(name)
        hint = ""
        if shown != name:
            hint = " (the name has characters that are not printable or only look like digits, shown escaped)"
        raise ContractError(
            f"{shown}: not a MovieLens file name{hint}. Expected one of {expected_file_names()}. "
            "Rename the file or move it out of the landing directory."
        )
    return matched


def check_header(name: str, contract: FileContract, first_line: str) -> None:
    """Raise a ContractError showing expected vs found if the header line is not exactly the contract's."""
    found = first_line.removeprefix("\ufeff").rstrip("\r\n")
    if found == contract.header_line:
        return
    hint = ""
    if first_line.startswith("\ufeff"):
        hint = " The file starts with a UTF-8 byte-order mark; save it as UTF-8 without BOM."
    elif first_line.rstrip("\n").endswith("\r"):
        hint = " The file has Windows (CRLF) line endings; convert it to LF."
    found_cols = found.split(",")
    if sorted(found_cols) == sorted(contract.header):
        hint = hint or " The columns are all there but in another order; write them in the expected order."
    else:
        missing = [c for c in contract.header if c not in found_cols]
        extra = [c for c in found_cols if c not in contract.header]
        parts = []
        if missing:
            parts.append("missing " + ", ".join(missing))
        if extra:
            parts.append("unexpected " + ", ".join(extra))
        if parts:
            hint = hint or " (" + "; ".join(parts) + ")."
    raise ContractError(
        f"{name}: wrong header for {contract.dataset}.\n  expected: {contract.header_line}\n  found:    {found}\n{hint}".rstrip()
    )


def _valid_date(yyyymmdd: str) -> bool:
    import datetime as _dt

    try:
        _dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        return False
    return True


# -- where files live on the stage ---------------------------------------------------------------------------------
#
# The uploader writes every landing file under a key that says what it is, when it was uploaded and what it
# contains, so that the load procedure can work from LIST alone (it cannot read object metadata):
#
#     <dataset>/<uploaded at, UTC>_<first 16 hex digits of the file's sha256>/<file name>
#     ratings/20261130T061502Z_3f2a9c0d1e4b5a6f/ratings_20240721.csv
#
# A large file is split into gzip-compressed parts for parallel COPY; each part keeps the source file's name and
# says which part of how many it is, so that the load procedure can tell a complete set of parts from one whose
# upload is still running or was interrupted (it loads only complete sets):
#
#     ratings/20261130T061502Z_3f2a9c0d1e4b5a6f/ratings.csv.part0001of0007.csv.gz
#
# The tracking table reports per source file (the key without the ``.partNNNNofNNNN.csv.gz`` suffix).

STAGE_KEY_PATTERN = re.compile(  # in full and in ASCII, as FILE_NAME_PATTERN
    r"^(?P<dataset>" + "|".join(re.escape(d) for d in DATASETS) + r")/"
    r"(?P<uploaded_at>[0-9]{8}T[0-9]{6}Z)_(?P<checksum>[0-9a-f]{16})/"
    r"(?P<name>[^/]+?)(?:\.part(?P<part>[0-9]{4})of(?P<parts>[0-9]{4})\.csv\.gz)?\Z",
    re.ASCII,
)
CHECKSUM_HEX_DIGITS = 16
UPLOADED_AT_FORMAT = "%Y%m%dT%H%M%SZ"  # strftime format of a key's uploaded_at (UTC)


@dataclass(frozen=True)
class StageKey:
    """A parsed stage key (relative to the stage's location)."""

    key: str
    dataset: str
    uploaded_at: str  # UPLOADED_AT_FORMAT
    checksum: str  # first 16 hex digits of the source file's sha256
    name: str  # the source (landing) file name
    part: int | None  # part number of a split file, else None
    parts: int | None  # number of parts of a split file, else None

    @property
    def source_key(self) -> str:
        """Key of the source file this object belongs to (itself, unless it is a part)."""
        return f"{self.dataset}/{self.uploaded_at}_{self.checksum}/{self.name}"


def stage_key(
    dataset: str, uploaded_at: str, sha256_hex: str, name: str, part: int | None = None, parts: int | None = None
) -> str:
    """The stage key of a landing file (or of part ``part`` of ``parts`` of it)."""
    key = f"{dataset}/{uploaded_at}_{sha256_hex[:CHECKSUM_HEX_DIGITS]}/{name}"
    if part is None:
        return key
    if parts is None or not 1 <= part <= parts <= 9999:
        raise ValueError(f"part {part} of {parts}: a split file has 1 to 9999 parts")
    return f"{key}.part{part:04d}of{parts:04d}.csv.gz"


def parse_stage_key(key: str) -> StageKey | None:
    m = STAGE_KEY_PATTERN.fullmatch(key)
    named = match_file_name(m.group("name")) if m else None
    if m is None or named is None or named.contract.dataset != m.group("dataset"):
        return None
    part, parts = m.group("part"), m.group("parts")
    if part and not 1 <= int(part) <= int(parts):
        return None
    return StageKey(
        key=key,
        dataset=m.group("dataset"),
        uploaded_at=m.group("uploaded_at"),
        checksum=m.group("checksum"),
        name=m.group("name"),
        part=int(part) if part else None,
        parts=int(parts) if parts else None,
    )
