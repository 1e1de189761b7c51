"""The certification's checks: the invariants the local tests check, read from the throwaway database and compared
with what Python computes from the generated files (`netflix_elt.certify.dataset`).

- every file: rows parsed = rows loaded + rows rejected (RAW.LOAD_TRACKING), and its counts and status are the
  file's own (good rows loaded, each bad row rejected, the duplicate DUPLICATE of the file it repeats);
- the same in total;
- exactly once: each file's rows in its RAW table (by SOURCE_FILE) are its good rows, and the split file's rows
  come from all of its parts (that running both loads again loads nothing is checked by the steps that run them,
  `netflix_elt.certify.run.rerun_check`);
- every rejected row is in RAW.LOAD_REJECTS with its file and line;
- the marts: each movie's rating count and mean in MART_MOVIE_RATINGS, and each genre and year's ratings, users,
  movies and mean in MART_GENRE_YEAR_POPULARITY, against the same figures computed in Python.

A check reads everything it compares afresh, so running the checks against a database that was changed after the
load (a RAW row deleted) reports FAIL.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .. import contracts, pipeline
from . import dataset as data
from .run import Certification, Check

MAX_SHOWN = 3  # differences shown in a check's detail


@dataclass
class Loaded:
    """What the database says about the load: one LOAD_TRACKING row per file name, the rejects, and the RAW rows
    per SOURCE_FILE of each dataset."""

    tracking: dict[str, dict[str, Any]]
    rejects: list[tuple[str, int, str]]  # file key, line, error
    raw: dict[str, dict[str, int]]  # dataset -> SOURCE_FILE -> rows

    @classmethod
    def read(cls, conn: Any) -> Loaded:
        cur = conn.cursor()
        cur.execute(
            "SELECT FILE_NAME, FILE_KEY, STATUS, ROWS_PARSED, ROWS_LOADED, ROWS_REJECTED, PARTS, DUPLICATE_OF "
            "FROM RAW.LOAD_TRACKING"
        )
        cols = ("name", "key", "status", "parsed", "loaded", "rejected", "parts", "duplicate_of")
        tracking = {r[0]: dict(zip(cols, r, strict=True)) for r in cur.fetchall()}
        cur.execute("SELECT FILE_KEY, LINE, ERROR FROM RAW.LOAD_REJECTS")
        rejects = [(str(k), int(line or 0), str(err or "")) for k, line, err in cur.fetchall()]
        raw: dict[str, dict[str, int]] = {}
        for name, contract in contracts.CONTRACTS.items():
            cur.execute(f"SELECT SOURCE_FILE, COUNT(*) FROM {contract.qualified_raw_table} GROUP BY SOURCE_FILE")
            raw[name] = {str(f): int(n) for f, n in cur.fetchall()}
        return cls(tracking, rejects, raw)

    def rows_of(self, dataset: str, key: str) -> tuple[int, int]:
        """RAW rows of the source file ``key`` and the number of staged objects (parts) they came from."""
        mine = [n for f, n in self.raw.get(dataset, {}).items() if key in f]
        return sum(mine), len(mine)

    def raw_total(self) -> int:
        return sum(n for by in self.raw.values() for n in by.values())


def verify(cert: Certification) -> list[Check]:
    """Every check on the database, in the order of the table."""
    ds = cert.dataset
    settings = cert.target.run_settings()
    with pipeline.connect(settings) as conn:
        loaded = Loaded.read(conn)
    checks = [
        _check("tracking: parsed = loaded + rejected, per file", lambda: _per_file_balance(loaded)),
        _check("tracking: parsed = loaded + rejected, in total", lambda: _total_balance(ds, loaded)),
        _check("tracking: each file's counts and status", lambda: _file_outcomes(ds, loaded)),
        _check("RAW: each file's good rows, exactly once", lambda: _raw_rows(ds, loaded)),
        _check("split file: loaded from all its parts", lambda: _split_file(ds, loaded)),
        _check("duplicate file: DUPLICATE, nothing loaded", lambda: _duplicate(ds, loaded)),
        _check("daily file: loaded with its bad rows rejected", lambda: _daily(ds, loaded)),
        _check("LOAD_REJECTS: every bad row, with file and line", lambda: _rejects(ds, loaded)),
    ]
    with pipeline.connect(settings) as conn:
        checks.append(_check("mart_movie_ratings = Python", lambda: _movie_ratings(ds, conn)))
        checks.append(_check("mart_genre_year_popularity = Python", lambda: _genre_years(ds, conn)))
    return checks


def _check(name: str, fn: Callable[[], list[str] | str]) -> Check:
    """A check: ``fn`` returns the differences found (FAIL) or a one-line description of what matched (PASS)."""
    try:
        found = fn()
    except Exception as e:
        return Check(name, False, f"could not be checked: {type(e).__name__}: {str(e).strip()[:300]}")
    return Check(name, True, found) if isinstance(found, str) else Check(name, False, _shown(found))


def _shown(problems: list[str]) -> str:
    more = f" (and {len(problems) - MAX_SHOWN} more)" if len(problems) > MAX_SHOWN else ""
    return "; ".join(problems[:MAX_SHOWN]) + more


def _per_file_balance(loaded: Loaded) -> list[str] | str:
    bad = [
        f"{r['name']}: {r['parsed']} parsed != {r['loaded']} loaded + {r['rejected']} rejected"
        for r in loaded.tracking.values()
        if (r["parsed"] or 0) != (r["loaded"] or 0) + (r["rejected"] or 0)
    ]
    return bad or f"{len(loaded.tracking)} files"


def _total_balance(ds: data.Dataset, loaded: Loaded) -> list[str] | str:
    parsed = sum(int(r["parsed"] or 0) for r in loaded.tracking.values())
    ok = sum(int(r["loaded"] or 0) for r in loaded.tracking.values())
    rejected = sum(int(r["rejected"] or 0) for r in loaded.tracking.values())
    want = (sum(f.rows_parsed for f in ds.files), sum(f.rows_loaded for f in ds.files))
    bad = []
    if parsed != ok + rejected:
        bad.append(f"{parsed:,} parsed != {ok:,} loaded + {rejected:,} rejected")
    if (parsed, ok) != want:
        bad.append(f"{parsed:,} parsed and {ok:,} loaded, the files have {want[0]:,} rows, {want[1]:,} good")
    return bad or f"{parsed:,} parsed = {ok:,} loaded + {rejected:,} rejected"


def _expected_status(f: data.SourceFile) -> str:
    return "DUPLICATE" if f.duplicate_of else "PARTIALLY_LOADED" if f.bad_lines else "LOADED"


def _file_outcomes(ds: data.Dataset, loaded: Loaded) -> list[str] | str:
    bad = []
    for f in ds.files:
        r = loaded.tracking.get(f.name)
        if r is None:
            bad.append(f"{f.name}: not in RAW.LOAD_TRACKING")
            continue
        got = (r["status"], r["parsed"], r["loaded"], r["rejected"])
        want = (_expected_status(f), f.rows_parsed, f.rows_loaded, f.rows_rejected)
        if got != want:
            bad.append(f"{f.name}: {_quad(got)}, expected {_quad(want)}")
    extra = sorted(set(loaded.tracking) - {f.name for f in ds.files})
    bad += [f"{name}: tracked but not part of the dataset" for name in extra]
    return bad or f"{len(ds.files)} files as generated"


def _quad(v: tuple[Any, ...]) -> str:
    return f"{v[0]} {v[1]} parsed/{v[2]} loaded/{v[3]} rejected"


def _raw_rows(ds: data.Dataset, loaded: Loaded) -> list[str] | str:
    bad = []
    for f in ds.files:
        r = loaded.tracking.get(f.name)
        if r is None:
            bad.append(f"{f.name}: not tracked, so its rows cannot be found")
            continue
        rows, _ = loaded.rows_of(f.dataset, r["key"])
        if rows != f.rows_loaded:
            bad.append(
                f"{f.name}: {rows:,} rows in {contracts.CONTRACTS[f.dataset].qualified_raw_table}, "
                f"expected its {f.rows_loaded:,} good rows"
            )
    total, want = loaded.raw_total(), sum(f.rows_loaded for f in ds.files)
    if total != want:
        bad.append(f"{total:,} RAW rows in all, expected {want:,}")
    return bad or f"{total:,} RAW rows, each file's good rows once"


def _split_file(ds: data.Dataset, loaded: Loaded) -> list[str] | str:
    (f,) = ds.in_batch("split")
    r = loaded.tracking.get(f.name)
    if r is None:
        return [f"{f.name}: not in RAW.LOAD_TRACKING"]
    rows, objects = loaded.rows_of(f.dataset, r["key"])
    bad = []
    if int(r["parts"] or 0) < 2 or objects != int(r["parts"] or 0):
        bad.append(f"{f.name}: PARTS = {r['parts']}, rows from {objects} staged object(s); expected 2 or more, all")
    if rows != f.rows_loaded:
        bad.append(f"{f.name}: {rows:,} rows loaded from its parts, expected {f.rows_loaded:,}")
    return bad or f"{f.name}: {r['parts']} parts, {rows:,} rows, one LOAD_TRACKING row"


def _duplicate(ds: data.Dataset, loaded: Loaded) -> list[str] | str:
    (f,) = [f for f in ds.files if f.duplicate_of]
    r, original = loaded.tracking.get(f.name), loaded.tracking.get(f.duplicate_of or "")
    if r is None or original is None:
        return [f"{f.name} or {f.duplicate_of} is not in RAW.LOAD_TRACKING"]
    bad = []
    if (r["status"], r["duplicate_of"]) != ("DUPLICATE", original["key"]):
        bad.append(
            f"{f.name}: {r['status']}, duplicate of {r['duplicate_of']}; expected DUPLICATE of {original['key']}"
        )
    rows, _ = loaded.rows_of(f.dataset, r["key"])
    if rows:
        bad.append(f"{f.name}: {rows} rows in RAW, expected none")
    return bad or f"{f.name}: DUPLICATE of {f.duplicate_of}, 0 rows"


def _daily(ds: data.Dataset, loaded: Loaded) -> list[str] | str:
    f = ds.by_name(f"ratings_{data.DAY:%Y%m%d}.csv")
    r = loaded.tracking.get(f.name)
    want = ("PARTIALLY_LOADED", f.rows_loaded, f.rows_rejected)
    if r is None or (r["status"], r["loaded"], r["rejected"]) != want:
        got = "not tracked" if r is None else f"{r['status']}, {r['loaded']} loaded, {r['rejected']} rejected"
        return [f"{f.name}: {got}; expected {want[0]}, {want[1]} loaded, {want[2]} rejected"]
    return f"{f.name}: {f.rows_loaded} rows loaded, {f.rows_rejected} rejected"


def _rejects(ds: data.Dataset, loaded: Loaded) -> list[str] | str:
    key_of = {name: r["key"] for name, r in loaded.tracking.items()}
    name_of = {k: n for n, k in key_of.items()}
    want = {(key_of.get(f.name, f.name), line) for f in ds.files for line in f.bad_lines}
    got = [(k, line) for k, line, _ in loaded.rejects]
    bad = [f"{name_of.get(k, k)} line {line}: not in RAW.LOAD_REJECTS" for k, line in sorted(want - set(got))]
    bad += [f"{name_of.get(k, k)} line {line}: rejected, but the row is good" for k, line in sorted(set(got) - want)]
    if len(got) != len(set(got)):
        bad.append(f"{len(got) - len(set(got))} row(s) recorded more than once")
    bad += [f"{name_of.get(k, k)} line {line}: no error text" for k, line, err in loaded.rejects if not err]
    return bad or f"{len(want)} rejected rows, each with its file, line and error ({len(data.BAD_ROWS)} kinds)"


def _movie_ratings(ds: data.Dataset, conn: Any) -> list[str] | str:
    want = data.movie_rating_stats(ds)
    if not want:  # a comparison with nothing would prove nothing
        return ["the dataset has no ratings"]
    cur = conn.cursor()
    cur.execute("SELECT MOVIE_ID, RATING_COUNT, MEAN_RATING FROM MARTS.MART_MOVIE_RATINGS")
    got = {int(m): (int(n), float(mean)) for m, n, mean in cur.fetchall()}
    bad = _compare(want, got, lambda m: f"movie {m}")
    return bad or f"{len(want)} movies: rating count and mean"


def _genre_years(ds: data.Dataset, conn: Any) -> list[str] | str:
    want = data.genre_year_stats(ds)
    if not want:
        return ["the dataset has no rated movie with genres"]
    cur = conn.cursor()
    cur.execute(
        "SELECT GENRE, RATING_YEAR, RATING_COUNT, USER_COUNT, MOVIE_COUNT, MEAN_RATING "
        "FROM MARTS.MART_GENRE_YEAR_POPULARITY"
    )
    got = {(str(g), int(y)): (int(n), int(u), int(m), float(mean)) for g, y, n, u, m, mean in cur.fetchall()}
    bad = _compare(want, got, lambda k: f"{k[0]} {k[1]}")
    return bad or f"{len(want)} genre-years: ratings, users, movies and mean"


def _compare(
    want: dict[Any, tuple[Any, ...]], got: dict[Any, tuple[Any, ...]], label: Callable[[Any], str]
) -> list[str]:
    bad = [f"{label(k)}: missing (expected {want[k]})" for k in sorted(set(want) - set(got))]
    bad += [f"{label(k)}: not expected ({got[k]})" for k in sorted(set(got) - set(want))]
    bad += [
        f"{label(k)}: {got[k]}, expected {want[k]}" for k in sorted(set(want) & set(got)) if not _same(got[k], want[k])
    ]
    return bad


def _same(a: Iterable[Any], b: Iterable[Any]) -> bool:
    return all(
        math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9) if isinstance(x, float) or isinstance(y, float) else x == y
        for x, y in zip(a, b, strict=True)
    )
