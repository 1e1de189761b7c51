"""Report: one self-contained HTML page built from the dbt marts and the load tracking tables.

    netflix-elt report                          # reports/netflix_report.html
    netflix-elt report --movie 318 --top 30     # genome tags of movie 318, top 30 movies
    netflix-elt report --output /tmp/r.html

The page opens offline: inline CSS, charts drawn here as inline SVG, no script is executed (a Content Security
Policy forbids any fetch). Every number shown is also in a JSON block (``<script type="application/json"
id="report-data">``) and in ``data-value`` attributes, so other tools can read the report exactly.

Sections: top movies by Bayesian-weighted rating (MARTS.MART_MOVIE_RATINGS), the rating distribution and ratings
per year (CORE.FCT_RATINGS), genre trends (MARTS.MART_GENRE_YEAR_POPULARITY), user activity
(MARTS.MART_USER_COHORTS, CORE.DIM_USERS), the most relevant genome tags of one movie
(MARTS.MART_MOVIE_TOP_GENOME_TAGS) and pipeline health (RAW.LOAD_TRACKING, RAW.LOAD_REJECTS).
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from .config import Settings

DEFAULT_OUTPUT = Path("reports/netflix_report.html")
DEFAULT_TOP = 20
RATING_VALUES = [x / 2 for x in range(1, 11)]  # 0.5 .. 5.0
USER_BUCKETS = [1, 20, 50, 100, 200, 500, 1000, 2000]  # lower bounds of "ratings per user" buckets
GENRE_LINES = 6  # genres drawn in the trend chart (the most rated)
CHART_FILES = 30  # latest files drawn in the per-file chart (the table has all)
CHART_DAYS = 60  # latest days drawn in the per-day chart
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#7F7F7F"]  # Okabe-Ito, colour-blind safe
LOADED_COLOR, REJECTED_COLOR = "#0072B2", "#D55E00"


# -- data ----------------------------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """Database values as JSON-ready Python values (Decimal -> int or float, times -> ISO text)."""
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        return int(value) if isinstance(exponent, int) and exponent >= 0 else float(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def _query(cur: Any, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    cur.execute(sql, tuple(params))
    names = [d[0].lower() for d in cur.description]
    return [{n: _plain(v) for n, v in zip(names, row, strict=True)} for row in cur.fetchall()]


def _int(value: Any) -> int:
    return int(value or 0)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _top_movies(cur: Any, top: int) -> dict[str, Any]:
    rows = _query(
        cur,
        "SELECT MOVIE_ID, TITLE, RELEASE_YEAR, GENRES, RATING_COUNT, MEAN_RATING, BAYESIAN_RATING "
        "FROM MARTS.MART_MOVIE_RATINGS ORDER BY BAYESIAN_RATING DESC, RATING_COUNT DESC, MOVIE_ID "
        f"LIMIT {int(top)}",
    )
    for rank, r in enumerate(rows, 1):
        r["rank"] = rank
        r["rating_count"] = _int(r["rating_count"])
        r["mean_rating"] = _float(r["mean_rating"])
        r["bayesian_rating"] = _float(r["bayesian_rating"])
    return {"rows": rows}


def _summary(cur: Any) -> dict[str, Any]:
    (r,) = _query(
        cur,
        "SELECT COUNT(*) AS RATINGS, COUNT(DISTINCT USER_ID) AS USERS, COUNT(DISTINCT MOVIE_ID) AS MOVIES_RATED, "
        "AVG(RATING) AS MEAN_RATING, MIN(RATED_AT) AS FIRST_RATED_AT, MAX(RATED_AT) AS LAST_RATED_AT "
        "FROM CORE.FCT_RATINGS",
    )
    (m,) = _query(cur, "SELECT COUNT(*) AS MOVIES FROM CORE.DIM_MOVIES")
    return {
        "ratings": _int(r["ratings"]),
        "users": _int(r["users"]),
        "movies_rated": _int(r["movies_rated"]),
        "movies": _int(m["movies"]),
        "mean_rating": _float(r["mean_rating"]),
        "first_rated_at": r["first_rated_at"],
        "last_rated_at": r["last_rated_at"],
    }


def _rating_distribution(cur: Any) -> dict[str, Any]:
    counts = {
        float(r["rating"]): _int(r["ratings"])
        for r in _query(cur, "SELECT RATING, COUNT(*) AS RATINGS FROM CORE.FCT_RATINGS GROUP BY RATING")
    }
    unexpected = sorted(set(counts) - set(RATING_VALUES))
    return {
        "rows": [{"rating": v, "ratings": counts.get(v, 0)} for v in RATING_VALUES]
        + [{"rating": v, "ratings": counts[v]} for v in unexpected]
    }


def _ratings_per_year(cur: Any) -> dict[str, Any]:
    rows = _query(
        cur,
        "SELECT YEAR(RATED_AT) AS RATING_YEAR, COUNT(*) AS RATINGS, COUNT(DISTINCT USER_ID) AS USERS, "
        "COUNT(DISTINCT MOVIE_ID) AS MOVIES, AVG(RATING) AS MEAN_RATING FROM CORE.FCT_RATINGS "
        "GROUP BY YEAR(RATED_AT) ORDER BY RATING_YEAR",
    )
    for r in rows:
        for k in ("rating_year", "ratings", "users", "movies"):
            r[k] = _int(r[k])
        r["mean_rating"] = _float(r["mean_rating"])
    return {"rows": rows}


def _genre_trends(cur: Any) -> dict[str, Any]:
    rows = _query(
        cur,
        "SELECT GENRE, RATING_YEAR, RATING_COUNT, USER_COUNT, MOVIE_COUNT, MEAN_RATING "
        "FROM MARTS.MART_GENRE_YEAR_POPULARITY ORDER BY GENRE, RATING_YEAR",
    )
    genres: dict[str, dict[str, Any]] = {}
    for r in rows:
        for k in ("rating_year", "rating_count", "user_count", "movie_count"):
            r[k] = _int(r[k])
        r["mean_rating"] = _float(r["mean_rating"])
        g = genres.setdefault(
            r["genre"], {"genre": r["genre"], "ratings": 0, "rating_sum": 0.0, "years": 0, "peak_year": None}
        )
        g["ratings"] += r["rating_count"]
        g["rating_sum"] += (r["mean_rating"] or 0.0) * r["rating_count"]
        g["years"] += 1
        if g["peak_year"] is None or r["rating_count"] > g["peak_count"]:
            g["peak_year"], g["peak_count"] = r["rating_year"], r["rating_count"]
        g["first_year"] = min(g.get("first_year", r["rating_year"]), r["rating_year"])
        g["last_year"] = max(g.get("last_year", r["rating_year"]), r["rating_year"])
    totals = sorted(genres.values(), key=lambda g: (-g["ratings"], g["genre"]))
    for g in totals:
        g["mean_rating"] = g.pop("rating_sum") / g["ratings"] if g["ratings"] else None
    return {"rows": rows, "genres": totals}


def _user_activity(cur: Any) -> dict[str, Any]:
    cohorts = _query(
        cur,
        "SELECT COHORT_MONTH, COHORT_YEAR, COHORT_SIZE, RATING_COUNT, RATINGS_PER_USER, MEAN_ACTIVE_DAYS, "
        "USERS_ACTIVE_30_DAYS FROM MARTS.MART_USER_COHORTS ORDER BY COHORT_MONTH",
    )
    years: dict[int, dict[str, int]] = {}
    for c in cohorts:
        for k in ("cohort_year", "cohort_size", "rating_count", "users_active_30_days"):
            c[k] = _int(c[k])
        for k in ("ratings_per_user", "mean_active_days"):
            c[k] = _float(c[k])
        y = years.setdefault(
            c["cohort_year"],
            {"cohort_year": c["cohort_year"], "new_users": 0, "ratings": 0, "users_active_30_days": 0, "months": 0},
        )
        y["new_users"] += c["cohort_size"]
        y["ratings"] += c["rating_count"]
        y["users_active_30_days"] += c["users_active_30_days"]
        y["months"] += 1
    whens = " ".join(f"WHEN RATING_COUNT >= {b} THEN {b}" for b in reversed(USER_BUCKETS))
    found = {
        _int(r["bucket"]): r
        for r in _query(
            cur,
            f"SELECT CASE {whens} ELSE 0 END AS BUCKET, COUNT(*) AS USERS, SUM(RATING_COUNT) AS RATINGS "
            "FROM CORE.DIM_USERS GROUP BY 1",
        )
    }
    buckets = []
    for i, low in enumerate(USER_BUCKETS):
        high = USER_BUCKETS[i + 1] - 1 if i + 1 < len(USER_BUCKETS) else None
        r = found.get(low, {})
        buckets.append(
            {
                "min_ratings": low,
                "max_ratings": high,
                "label": f"{low}–{high}" if high is not None else f"{low}+",
                "users": _int(r.get("users")),
                "ratings": _int(r.get("ratings")),
            }
        )
    return {"cohorts": cohorts, "cohort_years": [years[y] for y in sorted(years)], "users_by_ratings": buckets}


def _genome(cur: Any, movie_id: int | None) -> dict[str, Any]:
    chosen = "chosen with --movie"
    if movie_id is None:
        chosen = "the top movie by Bayesian rating that has genome tags"
        first = _query(
            cur,
            "SELECT MOVIE_ID FROM MARTS.MART_MOVIE_RATINGS WHERE MOVIE_ID IN "
            "(SELECT MOVIE_ID FROM MARTS.MART_MOVIE_TOP_GENOME_TAGS) "
            "ORDER BY BAYESIAN_RATING DESC, RATING_COUNT DESC, MOVIE_ID LIMIT 1",
        )
        if not first:
            return {"movie": None, "tags": [], "chosen_by": chosen, "note": "No genome tags are loaded."}
        movie_id = _int(first[0]["movie_id"])
    tags = _query(
        cur,
        "SELECT MOVIE_ID, TITLE, TAG_RANK, TAG_ID, TAG, RELEVANCE FROM MARTS.MART_MOVIE_TOP_GENOME_TAGS "
        "WHERE MOVIE_ID = %s ORDER BY TAG_RANK",
        (movie_id,),
    )
    for t in tags:
        for k in ("movie_id", "tag_rank", "tag_id"):
            t[k] = _int(t[k])
        t["relevance"] = _float(t["relevance"])
    movie = _query(
        cur,
        "SELECT MOVIE_ID, TITLE, RELEASE_YEAR, GENRES, RATING_COUNT, MEAN_RATING, BAYESIAN_RATING "
        "FROM MARTS.MART_MOVIE_RATINGS WHERE MOVIE_ID = %s",
        (movie_id,),
    )
    info: dict[str, Any] = movie[0] if movie else {"movie_id": movie_id}
    if movie:
        info["rating_count"] = _int(info["rating_count"])
        info["mean_rating"], info["bayesian_rating"] = _float(info["mean_rating"]), _float(info["bayesian_rating"])
    if info.get("title") is None and tags:
        info["title"] = tags[0]["title"]
    note = None if tags else f"Movie {movie_id} has no genome tags."
    return {"movie": info, "tags": tags, "chosen_by": chosen, "note": note}


def _pipeline_health(cur: Any) -> dict[str, Any]:
    files = _query(
        cur,
        "SELECT FILE_KEY, DATASET, FILE_NAME, STATUS, SIZE_BYTES, PARTS, ROWS_PARSED, ROWS_LOADED, ROWS_REJECTED, "
        "FIRST_ERROR, DUPLICATE_OF, LOAD_ID, CLAIMED_AT, STARTED_AT, FINISHED_AT, ATTEMPTS "
        "FROM RAW.LOAD_TRACKING ORDER BY CLAIMED_AT, FILE_KEY",
    )
    for f in files:
        for k in ("size_bytes", "parts", "rows_parsed", "rows_loaded", "rows_rejected", "attempts"):
            f[k] = _int(f[k])
    days: dict[str, dict[str, Any]] = {}
    datasets: dict[str, dict[str, Any]] = {}
    loads: dict[str, dict[str, Any]] = {}
    for f in files:
        when = f["finished_at"] or f["claimed_at"]
        d = days.setdefault(
            when[:10], {"day": when[:10], "files": 0, "files_loaded": 0, "rows_loaded": 0, "rows_rejected": 0}
        )
        d["files"] += 1
        d["files_loaded"] += f["status"] in ("LOADED", "PARTIALLY_LOADED")
        d["rows_loaded"] += f["rows_loaded"]
        d["rows_rejected"] += f["rows_rejected"]
        s = datasets.setdefault(
            f["dataset"],
            {"dataset": f["dataset"], "files": 0, "rows_loaded": 0, "rows_rejected": 0, "last_loaded_at": None},
        )
        s["files"] += 1
        s["rows_loaded"] += f["rows_loaded"]
        s["rows_rejected"] += f["rows_rejected"]
        if f["finished_at"] and f["status"] in ("LOADED", "PARTIALLY_LOADED"):
            s["last_loaded_at"] = max(s["last_loaded_at"] or "", f["finished_at"])
        ld = loads.setdefault(
            f["load_id"],
            {"load_id": f["load_id"], "files": 0, "started_at": None, "finished_at": None, "claimed_at": None},
        )
        ld["files"] += 1
        ld["claimed_at"] = min(ld["claimed_at"] or f["claimed_at"], f["claimed_at"])
        if f["started_at"]:
            ld["started_at"] = min(ld["started_at"] or f["started_at"], f["started_at"])
        if f["finished_at"]:
            ld["finished_at"] = max(ld["finished_at"] or "", f["finished_at"])
    statuses: dict[str, int] = {}
    for f in files:
        statuses[f["status"]] = statuses.get(f["status"], 0) + 1
    errors = _query(
        cur,
        "SELECT FILE_KEY, COLUMN_NAME, ERROR, COUNT(*) AS REJECTED_ROWS, MIN(LINE) AS FIRST_LINE "
        "FROM RAW.LOAD_REJECTS GROUP BY FILE_KEY, COLUMN_NAME, ERROR "
        "ORDER BY REJECTED_ROWS DESC, FILE_KEY, FIRST_LINE LIMIT 50",
    )
    for e in errors:
        e["rejected_rows"], e["first_line"] = _int(e["rejected_rows"]), _int(e["first_line"])
    samples = _query(
        cur,
        "SELECT FILE_KEY, LINE, COLUMN_NAME, ERROR, REJECTED_RECORD, REJECTED_AT FROM RAW.LOAD_REJECTS "
        "ORDER BY REJECTED_AT DESC, FILE_KEY, LINE LIMIT 20",
    )
    (total,) = _query(cur, "SELECT COUNT(*) AS REJECTS FROM RAW.LOAD_REJECTS")
    last = max(loads.values(), key=lambda ld: ld["claimed_at"]) if loads else None
    return {
        "files": files,
        "days": [days[k] for k in sorted(days)],
        "datasets": [datasets[k] for k in sorted(datasets)],
        "last_load": last,
        "last_finished_at": max((f["finished_at"] for f in files if f["finished_at"]), default=None),
        "statuses": statuses,
        "totals": {
            "files": len(files),
            "rows_parsed": sum(f["rows_parsed"] for f in files),
            "rows_loaded": sum(f["rows_loaded"] for f in files),
            "rows_rejected": sum(f["rows_rejected"] for f in files),
            "reject_records": _int(total["rejects"]),
        },
        "errors": errors,
        "reject_samples": samples,
    }


def collect(conn: Any, movie_id: int | None = None, top: int = DEFAULT_TOP) -> dict[str, Any]:
    """Query every section. A section whose tables cannot be read (not built yet, or the role may not read them)
    gets ``{"error": message}`` instead of its data."""
    from snowflake.connector.errors import ProgrammingError

    cur = conn.cursor()
    sections: dict[str, Callable[[], dict[str, Any]]] = {
        "summary": lambda: _summary(cur),
        "top_movies": lambda: _top_movies(cur, top),
        "rating_distribution": lambda: _rating_distribution(cur),
        "ratings_per_year": lambda: _ratings_per_year(cur),
        "genre_trends": lambda: _genre_trends(cur),
        "user_activity": lambda: _user_activity(cur),
        "genome_tags": lambda: _genome(cur, movie_id),
        "pipeline_health": lambda: _pipeline_health(cur),
    }
    data: dict[str, Any] = {
        "generated_at": dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        "parameters": {"movie": movie_id, "top": top},
    }
    for name, fn in sections.items():
        try:
            data[name] = fn()
        except ProgrammingError as e:
            data[name] = {"error": (str(e).strip().splitlines() or ["unknown error"])[0]}
    return data


# -- charts (inline SVG) -------------------------------------------------------------------------------------------


def esc(value: Any) -> str:
    """Text for HTML and SVG: every &, <, >, " and ' escaped."""
    return html.escape("" if value is None else str(value), quote=True)


def _num(v: float) -> str:
    """Compact SVG coordinate."""
    return f"{v:.1f}".rstrip("0").rstrip(".")


def fmt_int(v: float | None) -> str:
    return "–" if v is None else f"{round(v):,}"


def fmt_rating(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _ticks(vmax: float, integer: bool, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least vmax."""
    if vmax <= 0:
        return [0, 1]
    raw = vmax / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1, math.ceil(step))
    n = math.ceil(vmax / step - 1e-9)
    return [i * step for i in range(n + 1)]


def _tick_label(v: float, integer: bool) -> str:
    if integer or float(v).is_integer():
        if abs(v) >= 1_000_000:
            return f"{v / 1_000_000:g}M"
        if abs(v) >= 10_000:
            return f"{v / 1000:g}k"
        return f"{round(v):,}"
    return f"{v:g}"


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class Series:
    name: str
    values: list[float]
    color: str = PALETTE[0]


@dataclass
class _Svg:
    chart_id: str
    title: str
    desc: str
    width: int
    height: int
    parts: list[str] = field(default_factory=list)

    def add(self, s: str) -> None:
        self.parts.append(s)

    def text(self, x: float, y: float, s: str, cls: str = "", anchor: str = "start", extra: str = "") -> None:
        c = f' class="{cls}"' if cls else ""
        self.add(f'<text x="{_num(x)}" y="{_num(y)}" text-anchor="{anchor}"{c}{extra}>{esc(s)}</text>')

    def render(self, kind: str) -> str:
        head = (
            f'<svg class="chart" id="{esc(self.chart_id)}" data-kind="{kind}" role="img" '
            f'aria-labelledby="{esc(self.chart_id)}-title {esc(self.chart_id)}-desc" '
            f'viewBox="0 0 {self.width} {self.height}" preserveAspectRatio="xMidYMin meet">'
            f'<title id="{esc(self.chart_id)}-title">{esc(self.title)}</title>'
            f'<desc id="{esc(self.chart_id)}-desc">{esc(self.desc)}</desc>'
        )
        return head + "".join(self.parts) + "</svg>"


def _legend(svg: _Svg, items: Sequence[tuple[str, str]], x0: float, y: float, max_x: float) -> float:
    """Legend swatches from (x0, y), wrapping before max_x; returns the y below it."""
    x = x0
    for name, color in items:
        w = 18 + 7 * len(name) + 14
        if x + w > max_x and x > x0:
            x, y = x0, y + 18
        svg.add(f'<rect class="swatch" x="{_num(x)}" y="{_num(y - 9)}" width="11" height="11" fill="{color}"/>')
        svg.text(x + 16, y, name, "legend")
        x += w
    return y + 18


def bar_chart(
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    horizontal: bool = False,
    stacked: bool = False,
    integer: bool = True,
    vmax: float | None = None,
    fmt: Callable[[float], str] = fmt_int,
    desc: str = "",
    label_chars: int = 30,
    width: int = 640,
) -> str:
    """A bar chart: vertical (categories along x) or horizontal (categories down the y axis), one or more series,
    grouped or stacked. Every bar is a ``rect.bar`` with ``data-label``, ``data-series``, ``data-value`` and a
    tooltip."""
    n = len(labels)
    multi = len(series) > 1
    totals = [sum(s.values[i] for s in series) for i in range(n)] if stacked else []
    top_value = max(totals or [v for s in series for v in s.values] or [0])
    ticks = _ticks(max(vmax or 0, top_value), integer)
    scale_max = ticks[-1]
    desc = desc or f"{title}: " + ", ".join(
        f"{lab} {' / '.join(fmt(s.values[i]) for s in series)}" for i, lab in enumerate(labels[:40])
    )
    if horizontal:
        row = 22 if not multi or stacked else 12 * len(series) + 10
        left, right, top, plot_h = 34 + 6.2 * label_chars, 70, 44, max(row * n, row)
        bottom = 50 + (20 if multi else 0)
        svg = _Svg(chart_id, title, desc, width, int(top + plot_h + bottom))
        plot_w = width - left - right
        svg.text(width / 2, 22, title, "chart-title", "middle")

        def sx(v: float) -> float:
            return left + v / scale_max * plot_w

        for t in ticks:
            svg.add(f'<line class="grid" x1="{_num(sx(t))}" y1="{top}" x2="{_num(sx(t))}" y2="{_num(top + plot_h)}"/>')
            svg.text(sx(t), top + plot_h + 16, _tick_label(t, integer), "tick", "middle")
        svg.add(f'<line class="axis" x1="{_num(left)}" y1="{top}" x2="{_num(left)}" y2="{_num(top + plot_h)}"/>')
        for i, lab in enumerate(labels):
            y0 = float(top + i * row)
            svg.text(left - 6, y0 + row / 2 + 4, _truncate(lab, label_chars), "cat", "end")
            cursor = float(left)  # where the next stacked segment starts
            for k, s in enumerate(series):
                v = s.values[i]
                w = v / scale_max * plot_w
                if v > 0:  # a small value is still visible
                    w = max(w, 1.5)
                if stacked:
                    y, h, x = y0 + 4, float(row - 8), cursor
                    cursor += w
                else:
                    h = (row - 8) / len(series)
                    y, x = y0 + 4 + k * h, float(left)
                svg.add(
                    f'<rect class="bar" x="{_num(x)}" y="{_num(y)}" width="{_num(w)}" height="{_num(h)}" '
                    f'fill="{s.color}" data-label="{esc(lab)}" data-series="{esc(s.name)}" data-value="{esc(v)}">'
                    f"<title>{esc(lab)}{' — ' + esc(s.name) if multi else ''}: {esc(fmt(v))}</title></rect>"
                )
                if not stacked:
                    svg.text(x + w + 4, y + h / 2 + 4, fmt(v), "value")
            if stacked:
                svg.text(cursor + 4, y0 + row / 2 + 4, fmt(totals[i]), "value")
        svg.text(left + plot_w / 2, top + plot_h + 36, x_label, "axis-label", "middle")
        svg.text(
            14,
            top + plot_h / 2,
            y_label,
            "axis-label",
            "middle",
            f' transform="rotate(-90 14 {_num(top + plot_h / 2)})"',
        )
        if multi:
            _legend(svg, [(s.name, s.color) for s in series], left, top + plot_h + 58, width - 10)
        return svg.render("bar")

    left, right, top, plot_h = 70, 16, 44, 220
    plot_w = width - left - right
    band = plot_w / max(n, 1)
    longest = max((len(lab) for lab in labels), default=1)
    every = max(1, math.ceil(n / max(1, int(plot_w // (6.0 * longest + 10)))))
    bottom = 56 + (20 if multi else 0)
    svg = _Svg(chart_id, title, desc, width, top + plot_h + bottom)
    svg.text(width / 2, 22, title, "chart-title", "middle")

    def sy(v: float) -> float:
        return top + plot_h - v / scale_max * plot_h

    for t in ticks:
        svg.add(f'<line class="grid" x1="{left}" y1="{_num(sy(t))}" x2="{left + plot_w}" y2="{_num(sy(t))}"/>')
        svg.text(left - 6, sy(t) + 4, _tick_label(t, integer), "tick", "end")
    svg.add(f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}"/>')
    group = min(band * 0.78, 36.0 * len(series))
    for i, lab in enumerate(labels):
        x0 = left + i * band + (band - group) / 2
        cursor = float(top + plot_h)  # where the next stacked segment starts (from the bottom)
        for k, s in enumerate(series):
            v = s.values[i]
            h = v / scale_max * plot_h
            if v > 0:  # a small value is still visible
                h = max(h, 1.5)
            if stacked:
                w, x, y2 = group, x0, cursor
                cursor -= h
            else:
                w, x, y2 = group / len(series), x0 + k * group / len(series), float(top + plot_h)
            y1 = y2 - h
            svg.add(
                f'<rect class="bar" x="{_num(x)}" y="{_num(y1)}" width="{_num(w)}" height="{_num(y2 - y1)}" '
                f'fill="{s.color}" data-label="{esc(lab)}" data-series="{esc(s.name)}" data-value="{esc(v)}">'
                f"<title>{esc(lab)}{' — ' + esc(s.name) if multi else ''}: {esc(fmt(v))}</title></rect>"
            )
        if i % every == 0:
            svg.text(left + (i + 0.5) * band, top + plot_h + 16, lab, "tick", "middle")
    svg.text(left + plot_w / 2, top + plot_h + 38, x_label, "axis-label", "middle")
    svg.text(
        16, top + plot_h / 2, y_label, "axis-label", "middle", f' transform="rotate(-90 16 {_num(top + plot_h / 2)})"'
    )
    if multi:
        _legend(svg, [(s.name, s.color) for s in series], left, top + plot_h + 62, width - 10)
    return svg.render("bar")


def line_chart(
    chart_id: str,
    title: str,
    xs: Sequence[int],
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    integer: bool = True,
    fmt: Callable[[float], str] = fmt_int,
    desc: str = "",
) -> str:
    """Lines over integer x values (years); every point is a ``circle.point`` with a tooltip."""
    width, left, right, top, plot_h = 640, 70, 16, 44, 240
    plot_w = width - left - right
    legend_rows = 1 + sum(7 * len(s.name) + 32 for s in series) // int(plot_w)
    bottom = 60 + 18 * legend_rows
    desc = desc or f"{title}: " + "; ".join(
        f"{s.name} " + ", ".join(f"{x} {fmt(v)}" for x, v in zip(xs, s.values, strict=True)) for s in series
    )
    svg = _Svg(chart_id, title, desc, width, top + plot_h + bottom)
    svg.text(width / 2, 22, title, "chart-title", "middle")
    ticks = _ticks(max((v for s in series for v in s.values), default=0), integer)
    lo, hi = (min(xs), max(xs)) if xs else (0, 1)

    def sx(x: float) -> float:
        return left + plot_w / 2 if hi == lo else left + (x - lo) / (hi - lo) * plot_w

    def sy(v: float) -> float:
        return top + plot_h - v / ticks[-1] * plot_h

    for t in ticks:
        svg.add(f'<line class="grid" x1="{left}" y1="{_num(sy(t))}" x2="{left + plot_w}" y2="{_num(sy(t))}"/>')
        svg.text(left - 6, sy(t) + 4, _tick_label(t, integer), "tick", "end")
    svg.add(f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}"/>')
    every = max(1, math.ceil(len(xs) / 12))
    for i, x in enumerate(xs):
        if i % every == 0 or (i == len(xs) - 1 and len(xs) > 1 and (len(xs) - 1) % every > every / 2):
            svg.add(
                f'<line class="axis" x1="{_num(sx(x))}" y1="{top + plot_h}" x2="{_num(sx(x))}" y2="{top + plot_h + 4}"/>'
            )
            svg.text(sx(x), top + plot_h + 17, str(x), "tick", "middle")
    for s in series:
        points = " ".join(f"{_num(sx(x))},{_num(sy(v))}" for x, v in zip(xs, s.values, strict=True))
        svg.add(f'<polyline class="line" points="{points}" stroke="{s.color}" data-series="{esc(s.name)}"/>')
        for x, v in zip(xs, s.values, strict=True):
            svg.add(
                f'<circle class="point" cx="{_num(sx(x))}" cy="{_num(sy(v))}" r="3" fill="{s.color}" '
                f'data-series="{esc(s.name)}" data-label="{x}" data-value="{esc(v)}">'
                f"<title>{esc(s.name)}, {x}: {esc(fmt(v))}</title></circle>"
            )
    svg.text(left + plot_w / 2, top + plot_h + 38, x_label, "axis-label", "middle")
    svg.text(
        16, top + plot_h / 2, y_label, "axis-label", "middle", f' transform="rotate(-90 16 {_num(top + plot_h / 2)})"'
    )
    _legend(svg, [(s.name, s.color) for s in series], left, top + plot_h + 62, width - 10)
    return svg.render("line")


# -- HTML ----------------------------------------------------------------------------------------------------------

CSS = """
:root { --fg: #1d2330; --muted: #5b6472; --line: #e3e6eb; --bg: #f6f7f9; --card: #fff; --accent: #b20710; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif;
  color: var(--fg); background: var(--bg); }
header { background: #141414; color: #fff; padding: 28px 32px 22px; }
header h1 { margin: 0 0 4px; font-size: 26px; letter-spacing: .2px; }
header h1 span { color: #e50914; }
header p { margin: 0; color: #c9c9c9; font-size: 14px; }
nav { background: #1f1f1f; padding: 8px 32px; position: sticky; top: 0; z-index: 1; }
nav a { color: #eee; text-decoration: none; margin-right: 18px; font-size: 14px; }
nav a:hover { text-decoration: underline; }
main { max-width: 1280px; margin: 0 auto; padding: 20px 24px 40px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 18px 22px;
  margin: 0 0 22px; }
h2 { margin: 0 0 4px; font-size: 20px; }
h3 { margin: 18px 0 6px; font-size: 16px; }
p.lead { margin: 0 0 12px; color: var(--muted); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)); gap: 12px; margin: 18px 0 4px; }
.card { background: #232323; border-radius: 8px; padding: 10px 14px; }
.card b { display: block; font-size: 20px; color: #fff; font-variant-numeric: tabular-nums; }
.card span { font-size: 12.5px; color: #bdbdbd; }
section .cards .card { background: var(--bg); border: 1px solid var(--line); }
section .cards .card b { color: var(--fg); font-size: 19px; }
section .cards .card span { color: var(--muted); }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 18px; align-items: start; }
figure { margin: 0; }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart text { font-family: inherit; font-size: 12px; fill: #333; }
svg.chart .chart-title { font-size: 15px; font-weight: 600; fill: var(--fg); }
svg.chart .axis-label { font-size: 12.5px; fill: var(--muted); }
svg.chart .tick { fill: #555; font-size: 11px; }
svg.chart .value { fill: #444; font-size: 11px; }
svg.chart .grid { stroke: #eceef2; }
svg.chart .axis { stroke: #8a919c; }
svg.chart .line { fill: none; stroke-width: 2; }
svg.chart rect.bar:hover, svg.chart circle.point:hover { opacity: .75; }
.table-wrap { overflow-x: auto; margin-top: 12px; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; }
th, td { padding: 5px 9px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; position: sticky; top: 0; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.nowrap { white-space: nowrap; }
td.key { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; word-break: break-all; }
.status { display: inline-block; white-space: nowrap; padding: 1px 7px; border-radius: 9px; font-size: 12px; font-weight: 600; }
.status.LOADED { background: #e3f4ea; color: #146c2e; }
.status.PARTIALLY_LOADED { background: #fff1dc; color: #8a4b00; }
.status.FAILED { background: #fde4e4; color: #a11212; }
.status.DUPLICATE, .status.LOADING { background: #e8ecf3; color: #39414d; }
.note { padding: 10px 14px; background: #fff8e6; border: 1px solid #f2dfb0; border-radius: 8px; }
.error { padding: 10px 14px; background: #fdecec; border: 1px solid #f3c0c0; border-radius: 8px; }
.tags { color: var(--muted); font-size: 12.5px; }
footer { color: var(--muted); font-size: 12.5px; text-align: center; padding: 0 0 30px; }
details summary { cursor: pointer; color: var(--muted); margin-top: 10px; }
@media print { nav { display: none; } section { break-inside: avoid; } }
"""


@dataclass
class Column:
    """A table column: header, the row key, how to show it; numeric columns carry the exact value in data-value."""

    header: str
    key: str
    fmt: Callable[[Any], str] = str
    numeric: bool = False
    cls: str = ""


def table(
    table_id: str,
    columns: Sequence[Column],
    rows: Iterable[dict[str, Any]],
    row_key: str | None = None,
    row_title: str | None = None,
) -> str:
    """An HTML table; each row carries ``data-key`` (the value of ``row_key``) and a tooltip (``row_title``)."""
    head = "".join(f'<th scope="col"{" class=num" if c.numeric else ""}>{esc(c.header)}</th>' for c in columns)
    body = []
    for r in rows:
        key = f' data-key="{esc(r.get(row_key))}"' if row_key else ""
        if row_title and r.get(row_title) is not None:
            key += f' title="{esc(r[row_title])}"'
        cells = []
        for c in columns:
            v = r.get(c.key)
            cls = " ".join(x for x in ("num" if c.numeric else "", c.cls) if x)
            attrs = (f' class="{cls}"' if cls else "") + f' data-col="{esc(c.key)}"'
            if c.numeric:
                attrs += f' data-value="{esc("" if v is None else json.dumps(v))}"'
            shown = ("–" if c.numeric else "") if v is None else c.fmt(v)
            cells.append(f"<td{attrs}>{shown if c.cls == 'html' else esc(shown)}</td>")
        body.append(f"<tr{key}>{''.join(cells)}</tr>")
    return (
        f'<div class="table-wrap"><table id="{esc(table_id)}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _cards(items: Sequence[tuple[str, str]]) -> str:
    return (
        '<div class="cards">'
        + "".join(f"<div class=card><b>{esc(v)}</b><span>{esc(k)}</span></div>" for k, v in items)
        + "</div>"
    )


def _when(iso: str | None) -> str:
    return "–" if not iso else iso.replace("T", " ")[:19] + " UTC"


def _second(iso: str | None) -> str:
    return "–" if not iso else iso.replace("T", " ")[:19]


def _minute(iso: str | None) -> str:
    return "–" if not iso else iso.replace("T", " ")[:16]


def _section(section_id: str, title: str, lead: str, body: str) -> str:
    return f'<section id="{esc(section_id)}"><h2>{esc(title)}</h2><p class="lead">{esc(lead)}</p>{body}</section>'


def _unavailable(data: dict[str, Any]) -> str | None:
    if "error" in data:
        return f'<p class="error">Not available: {esc(data["error"])}</p>'
    return None


def _movie_label(m: dict[str, Any]) -> str:
    year = f" ({m['release_year']})" if m.get("release_year") is not None else ""
    return f"{m.get('title') or 'movie ' + str(m.get('movie_id'))}{year}"


def _render_top(d: dict[str, Any]) -> str:
    rows = d["rows"]
    if not rows:
        return '<p class="note">MARTS.MART_MOVIE_RATINGS is empty.</p>'
    shown = rows[:15]
    chart = bar_chart(
        "chart-top-movies",
        f"Top {len(shown)} movies by Bayesian rating",
        [f"{r['rank']}. {_movie_label(r)}" for r in shown],
        [Series("Bayesian rating", [r["bayesian_rating"] for r in shown])],
        x_label="Bayesian-weighted rating (0.5–5 stars)",
        y_label="Movie",
        horizontal=True,
        integer=False,
        vmax=5.0,
        fmt=fmt_rating,
        label_chars=48,
        width=1180,
    )
    cols = [
        Column("#", "rank", str, numeric=True),
        Column("Title", "title"),
        Column("Year", "release_year", str, numeric=True),
        Column("Genres", "genres", lambda g: g.replace("|", ", "), cls="tags"),
        Column("Ratings", "rating_count", fmt_int, numeric=True),
        Column("Mean", "mean_rating", fmt_rating, numeric=True),
        Column("Bayesian", "bayesian_rating", fmt_rating, numeric=True),
        Column("Movie id", "movie_id", str, numeric=True),
    ]
    return f"<figure>{chart}</figure>" + table("top-movies-table", cols, rows, "movie_id")


def _render_ratings(dist: dict[str, Any], years: dict[str, Any]) -> str:
    parts = []
    if (msg := _unavailable(dist)) is None:
        rows = dist["rows"]
        parts.append(
            "<figure>"
            + bar_chart(
                "chart-rating-distribution",
                "Rating distribution",
                [f"{r['rating']:.1f}" for r in rows],
                [Series("Ratings", [r["ratings"] for r in rows], PALETTE[1])],
                x_label="Rating (stars)",
                y_label="Number of ratings",
            )
            + "</figure>"
        )
    else:
        parts.append(msg)
    if (msg := _unavailable(years)) is None:
        rows = years["rows"]
        parts.append(
            "<figure>"
            + bar_chart(
                "chart-ratings-per-year",
                "Ratings per year",
                [str(r["rating_year"]) for r in rows],
                [Series("Ratings", [r["ratings"] for r in rows], PALETTE[2])],
                x_label="Year the rating was given (UTC)",
                y_label="Number of ratings",
            )
            + "</figure>"
        )
    else:
        parts.append(msg)
    out = f'<div class="charts">{"".join(parts)}</div>'
    if "rows" in years:
        out += (
            "<details><summary>Ratings per year, as a table</summary>"
            + table(
                "ratings-per-year-table",
                [
                    Column("Year", "rating_year", str, numeric=True),
                    Column("Ratings", "ratings", fmt_int, numeric=True),
                    Column("Active users", "users", fmt_int, numeric=True),
                    Column("Movies rated", "movies", fmt_int, numeric=True),
                    Column("Mean rating", "mean_rating", fmt_rating, numeric=True),
                ],
                years["rows"],
                "rating_year",
            )
            + "</details>"
        )
    if "rows" in dist:
        out += (
            "<details><summary>Rating distribution, as a table</summary>"
            + table(
                "rating-distribution-table",
                [
                    Column("Rating", "rating", lambda v: f"{v:.1f}", numeric=True),
                    Column("Ratings", "ratings", fmt_int, numeric=True),
                ],
                dist["rows"],
                "rating",
            )
            + "</details>"
        )
    return out


def _render_genres(d: dict[str, Any]) -> str:
    if not d["rows"]:
        return '<p class="note">MARTS.MART_GENRE_YEAR_POPULARITY is empty.</p>'
    leaders = [g["genre"] for g in d["genres"][:GENRE_LINES]]
    years = list(range(min(r["rating_year"] for r in d["rows"]), max(r["rating_year"] for r in d["rows"]) + 1))
    counts = {(r["genre"], r["rating_year"]): r["rating_count"] for r in d["rows"]}
    series = [
        Series(g, [counts.get((g, y), 0) for y in years], PALETTE[i % len(PALETTE)]) for i, g in enumerate(leaders)
    ]
    chart = line_chart(
        "chart-genre-trends",
        f"Ratings per year of the {len(leaders)} most rated genres",
        years,
        series,
        x_label="Year the rating was given (UTC)",
        y_label="Number of ratings",
    )
    totals = d["genres"]
    share = bar_chart(
        "chart-genre-totals",
        "Ratings per genre, all years",
        [g["genre"] for g in totals],
        [Series("Ratings", [g["ratings"] for g in totals], PALETTE[0])],
        x_label="Number of ratings (a rating counts once for each genre of its movie)",
        y_label="Genre",
        horizontal=True,
        label_chars=18,
    )
    cols = [
        Column("Genre", "genre"),
        Column("Ratings", "ratings", fmt_int, numeric=True),
        Column("Mean rating", "mean_rating", fmt_rating, numeric=True),
        Column("Years with ratings", "years", str, numeric=True),
        Column("First year", "first_year", str, numeric=True),
        Column("Last year", "last_year", str, numeric=True),
        Column("Busiest year", "peak_year", str, numeric=True),
    ]
    return (
        f'<div class="charts"><figure>{chart}</figure><figure>{share}</figure></div>'
        + "<details><summary>Genres, as a table</summary>"
        + table("genre-table", cols, [{k: v for k, v in g.items() if k != "peak_count"} for g in totals], "genre")
        + "</details>"
    )


def _render_users(d: dict[str, Any]) -> str:
    years = d["cohort_years"]
    buckets = d["users_by_ratings"]
    new_users = bar_chart(
        "chart-new-users",
        "New users per year",
        [str(y["cohort_year"]) for y in years],
        [Series("New users", [y["new_users"] for y in years], PALETTE[3])],
        x_label="Year of the user's first rating (cohort)",
        y_label="Users",
    )
    activity = bar_chart(
        "chart-users-by-ratings",
        "Users by number of ratings given",
        [b["label"] for b in buckets],
        [Series("Users", [b["users"] for b in buckets], PALETTE[4])],
        x_label="Ratings given by the user",
        y_label="Users",
    )
    cols = [
        Column("Cohort year", "cohort_year", str, numeric=True),
        Column("New users", "new_users", fmt_int, numeric=True),
        Column("Ratings given since", "ratings", fmt_int, numeric=True),
        Column("Ratings per user", "ratings_per_user", lambda v: f"{v:,.1f}", numeric=True),
        Column("Active 30+ days", "users_active_30_days", fmt_int, numeric=True),
        Column("Monthly cohorts", "months", str, numeric=True),
    ]
    rows = [{**y, "ratings_per_user": y["ratings"] / y["new_users"] if y["new_users"] else None} for y in years]
    return f'<div class="charts"><figure>{new_users}</figure><figure>{activity}</figure></div>' + table(
        "cohort-table", cols, rows, "cohort_year"
    )


def _render_genome(d: dict[str, Any]) -> str:
    movie, tags = d["movie"], d["tags"]
    if not tags:
        return f'<p class="note">{esc(d["note"])}</p>'
    lead = f"{d['chosen_by'][0].upper()}{d['chosen_by'][1:]}. "
    if movie.get("bayesian_rating") is not None:
        lead += (
            f"{fmt_int(movie['rating_count'])} ratings, mean {fmt_rating(movie['mean_rating'])}, "
            f"Bayesian {fmt_rating(movie['bayesian_rating'])}."
        )
    chart = bar_chart(
        "chart-genome-tags",
        f"Most relevant genome tags: {_truncate(_movie_label(movie), 60)}",
        [t["tag"] for t in tags],
        [Series("Relevance", [t["relevance"] for t in tags], PALETTE[5])],
        x_label="Relevance of the tag to the movie (0–1)",
        y_label="Genome tag",
        horizontal=True,
        integer=False,
        vmax=1.0,
        fmt=fmt_rating,
        label_chars=26,
    )
    cols = [
        Column("Rank", "tag_rank", str, numeric=True),
        Column("Tag", "tag"),
        Column("Relevance", "relevance", fmt_rating, numeric=True),
        Column("Tag id", "tag_id", str, numeric=True),
    ]
    return (
        f'<p data-movie-id="{esc(movie["movie_id"])}"><b>{esc(_movie_label(movie))}</b> '
        f'<span class="tags">(movie {esc(movie["movie_id"])}{", " + esc(movie["genres"].replace("|", ", ")) if movie.get("genres") else ""})</span> — {esc(lead)}</p>'
        f'<div class="charts"><figure>{chart}</figure>' + table("genome-tags-table", cols, tags, "tag_rank") + "</div>"
    )


def _file_name(key: str) -> str:
    return key.rsplit("/", 1)[-1]


def _status(s: str) -> str:
    return f'<span class="status {esc(s)}">{esc(s.replace("_", " ").lower())}</span>'


def _render_health(d: dict[str, Any]) -> str:
    files, days, totals = d["files"], d["days"], d["totals"]
    if not files:
        return '<p class="note">RAW.LOAD_TRACKING is empty: nothing has been loaded yet.</p>'
    st = d["statuses"]
    last = d["last_load"]
    cards = _cards(
        [
            ("files tracked", f"{totals['files']:,}"),
            ("loaded / partially loaded", f"{st.get('LOADED', 0):,} / {st.get('PARTIALLY_LOADED', 0):,}"),
            ("failed / duplicate", f"{st.get('FAILED', 0):,} / {st.get('DUPLICATE', 0):,}"),
            ("rows loaded", f"{totals['rows_loaded']:,}"),
            ("rows rejected", f"{totals['rows_rejected']:,}"),
            ("last load (UTC)", _minute(d["last_finished_at"])),
        ]
    )
    recent = files[-CHART_FILES:]
    per_file = bar_chart(
        "chart-rows-per-file",
        "Rows per file" + (f" (latest {len(recent)} of {len(files)})" if len(recent) < len(files) else ""),
        [f["file_name"] for f in recent],
        [
            Series("Rows loaded", [f["rows_loaded"] for f in recent], LOADED_COLOR),
            Series("Rows rejected", [f["rows_rejected"] for f in recent], REJECTED_COLOR),
        ],
        x_label="Rows",
        y_label="File",
        horizontal=True,
        stacked=True,
        label_chars=30,
    )
    shown_days = days[-CHART_DAYS:]
    per_day = bar_chart(
        "chart-rows-per-day",
        "Rows per day of load",
        [x["day"] for x in shown_days],
        [
            Series("Rows loaded", [x["rows_loaded"] for x in shown_days], LOADED_COLOR),
            Series("Rows rejected", [x["rows_rejected"] for x in shown_days], REJECTED_COLOR),
        ],
        x_label="Day the load finished (UTC)",
        y_label="Rows",
    )
    file_cols = [
        Column("Dataset", "dataset"),
        Column("File", "file_name"),
        Column("Status", "status", _status, cls="html"),
        Column("Rows parsed", "rows_parsed", fmt_int, numeric=True),
        Column("Rows loaded", "rows_loaded", fmt_int, numeric=True),
        Column("Rows rejected", "rows_rejected", fmt_int, numeric=True),
        Column("Bytes", "size_bytes", fmt_int, numeric=True),
        Column("Finished (UTC)", "finished_at", _second, cls="nowrap"),
        Column("Attempts", "attempts", str, numeric=True),
        Column("First error", "first_error"),
    ]
    day_cols = [
        Column("Day", "day"),
        Column("Files", "files", fmt_int, numeric=True),
        Column("Files loaded", "files_loaded", fmt_int, numeric=True),
        Column("Rows loaded", "rows_loaded", fmt_int, numeric=True),
        Column("Rows rejected", "rows_rejected", fmt_int, numeric=True),
    ]
    ds_cols = [
        Column("Dataset", "dataset"),
        Column("Files", "files", fmt_int, numeric=True),
        Column("Rows loaded", "rows_loaded", fmt_int, numeric=True),
        Column("Rows rejected", "rows_rejected", fmt_int, numeric=True),
        Column("Last loaded (UTC)", "last_loaded_at", _second, cls="nowrap"),
    ]
    out = cards
    if last:
        out += (
            f"<p>Last load <code>{esc(last['load_id'])}</code>: {last['files']:,} file(s), started "
            f"{esc(_when(last['started_at'] or last['claimed_at']))}, finished {esc(_when(last['finished_at']))}.</p>"
        )
    out += f'<div class="charts"><figure>{per_file}</figure><figure>{per_day}</figure></div>'
    out += "<h3>Per dataset</h3>" + table("datasets-table", ds_cols, d["datasets"], "dataset")
    out += "<h3>Per day</h3>" + table("load-days-table", day_cols, days, "day")
    out += "<h3>Per file</h3><p class=tags>Hover a row for its stage key.</p>"
    out += table("load-files-table", file_cols, files, "file_key", "file_key")
    out += f"<h3>Rejected rows ({totals['reject_records']:,} in RAW.LOAD_REJECTS)</h3>"
    if d["errors"]:
        err_cols = [
            Column("File", "file_key", _file_name),
            Column("Column", "column_name"),
            Column("Error", "error"),
            Column("Rows", "rejected_rows", fmt_int, numeric=True),
            Column("First line", "first_line", str, numeric=True),
        ]
        sample_cols = [
            Column("File", "file_key", _file_name),
            Column("Line", "line", str, numeric=True),
            Column("Column", "column_name"),
            Column("Error", "error"),
            Column("Rejected record", "rejected_record", cls="key"),
        ]
        out += table("reject-errors-table", err_cols, d["errors"], row_title="file_key")
        out += "<details><summary>Latest rejected records</summary>"
        out += table("reject-samples-table", sample_cols, d["reject_samples"], row_title="file_key") + "</details>"
    else:
        out += "<p>No rejected rows.</p>"
    return out


def _json_block(data: dict[str, Any]) -> str:
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    # inside <script>: no "</script>", no "<!--", no HTML entities needed
    text = text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return f'<script type="application/json" id="report-data">{text}</script>'


def render(data: dict[str, Any], database: str = "", target: str = "") -> str:
    """The report page for collected data."""
    sections: list[tuple[str, str, str, Callable[[], str]]] = []
    s = data["summary"]
    health = data["pipeline_health"]

    def add(key: str, sid: str, title: str, lead: str, fn: Callable[[], str]) -> None:
        sections.append((sid, title, lead, lambda: _unavailable(data[key]) or fn()))

    top = data["parameters"]["top"]
    add(
        "top_movies",
        "top-movies",
        "Top movies",
        f"The {top} best-rated movies by Bayesian-weighted rating (MARTS.MART_MOVIE_RATINGS): each movie's mean is "
        "pulled towards the mean of all ratings by a prior number of ratings, so a movie with a few perfect ratings "
        "does not outrank one loved by thousands.",
        lambda: _render_top(data["top_movies"]),
    )
    sections.append(
        (
            "ratings",
            "Ratings",
            "How ratings are spread over the half-star scale, and how many were given each year (CORE.FCT_RATINGS).",
            lambda: _render_ratings(data["rating_distribution"], data["ratings_per_year"]),
        )
    )
    add(
        "genre_trends",
        "genres",
        "Genre trends",
        "Ratings of each genre per year (MARTS.MART_GENRE_YEAR_POPULARITY). A rating counts once for each genre of "
        "its movie.",
        lambda: _render_genres(data["genre_trends"]),
    )
    add(
        "user_activity",
        "users",
        "User activity",
        "Users by the year of their first rating, with what their cohorts have rated since "
        "(MARTS.MART_USER_COHORTS), and how many ratings each user has given (CORE.DIM_USERS).",
        lambda: _render_users(data["user_activity"]),
    )
    add(
        "genome_tags",
        "genome",
        "Genome tags",
        "The tags of the tag genome most relevant to one movie (MARTS.MART_MOVIE_TOP_GENOME_TAGS); "
        "choose the movie with --movie ID.",
        lambda: _render_genome(data["genome_tags"]),
    )
    add(
        "pipeline_health",
        "pipeline",
        "Pipeline health",
        "What the load procedure did with each staged file (RAW.LOAD_TRACKING) and the rows it rejected "
        "(RAW.LOAD_REJECTS).",
        lambda: _render_health(health),
    )

    if "error" in s:
        header_cards = f'<p class="error">Summary not available: {esc(s["error"])}</p>'
    else:
        header_cards = _cards(
            [
                ("ratings", f"{s['ratings']:,}"),
                ("movies rated", f"{s['movies_rated']:,} of {s['movies']:,}"),
                ("users", f"{s['users']:,}"),
                ("mean rating", fmt_rating(s["mean_rating"])),
                ("first rating", (s["first_rated_at"] or "–")[:10]),
                ("latest rating", (s["last_rated_at"] or "–")[:10]),
                (
                    "last load (UTC)",
                    _minute(health.get("last_finished_at")) if "error" not in health else "not available",
                ),
            ]
        )
    nav = "".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title, _, _ in sections)
    body = "".join(_section(sid, title, lead, fn()) for sid, title, lead, fn in sections)
    where = " · ".join(x for x in (f"database {database}" if database else "", target) if x)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        'img-src data:">'
        f"<title>netflix-elt report{' — ' + esc(database) if database else ''}</title>"
        '<link rel="icon" href="data:,">'
        f"<style>{CSS}</style></head><body>"
        f"<header><h1><span>netflix-elt</span> movie report</h1>"
        f"<p>Generated {esc(_when(data['generated_at']))}{' · ' + esc(where) if where else ''}</p>"
        f"{header_cards}</header>"
        f"<nav>{nav}</nav><main>{body}</main>"
        "<footer>Built by <code>netflix-elt report</code> from the dbt marts and RAW.LOAD_TRACKING. "
        "Every number is also in the JSON block <code>#report-data</code>.</footer>"
        f"{_json_block(data)}</body></html>\n"
    )


# -- command -------------------------------------------------------------------------------------------------------


@dataclass
class ReportResult:
    path: Path
    size_bytes: int
    seconds: float
    data: dict[str, Any]

    @property
    def unavailable(self) -> dict[str, str]:
        """Sections that could not be built, with the reason."""
        return {k: v["error"] for k, v in self.data.items() if isinstance(v, dict) and "error" in v}


def write_report(
    output: Path = DEFAULT_OUTPUT,
    settings: Settings | None = None,
    movie_id: int | None = None,
    top: int = DEFAULT_TOP,
) -> ReportResult:
    """Query the target (local emulator or real account), write the HTML page to ``output``."""
    from . import pipeline

    settings = settings or Settings.from_env()
    started = time.perf_counter()
    with pipeline.connect(settings) as conn:
        data = collect(conn, movie_id=movie_id, top=top)
    target = "local emulator" if pipeline.is_local() else "Snowflake account"
    page = render(data, database=settings.database, target=target)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf-8")
    return ReportResult(output, len(page.encode()), time.perf_counter() - started, data)


def register_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand (its handler is ``args.func(args)`` and returns the exit code)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "report",
        help="write an HTML report of the marts and the pipeline's health",
        description="Write one self-contained HTML page (opens offline) from the dbt marts and RAW.LOAD_TRACKING: top "
        "movies by Bayesian rating, rating distribution, ratings per year, genre trends, user activity, the genome "
        "tags of one movie and pipeline health (files, rows loaded and rejected per file and per day).",
    )
    p.add_argument("--output", "-o", type=Path, default=DEFAULT_OUTPUT, help="where to write it (default: %(default)s)")
    p.add_argument(
        "--movie",
        type=int,
        default=None,
        metavar="ID",
        help="movie whose genome tags to show (default: the top movie by Bayesian rating that has genome tags)",
    )
    p.add_argument("--top", type=int, default=DEFAULT_TOP, help="movies in the top list (default: %(default)s)")

    def run(args: argparse.Namespace) -> int:
        from . import pipeline
        from .stack import LocalStack

        settings = Settings.from_env()
        if pipeline.is_local():
            LocalStack(settings).up()
        result = write_report(args.output, settings, movie_id=args.movie, top=args.top)
        for section, reason in result.unavailable.items():
            print(f"warning: {section} not available: {reason}", file=sys.stderr)
        genome = result.data.get("genome_tags", {})
        if genome.get("note"):
            print(f"note: {genome['note']}", file=sys.stderr)
        print(result.path.resolve())
        return 0

    p.set_defaults(func=run)
    return p


__all__ = [
    "DEFAULT_OUTPUT",
    "ReportResult",
    "bar_chart",
    "collect",
    "line_chart",
    "register_cli",
    "render",
    "write_report",
]
