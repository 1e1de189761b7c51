"""`netflix-elt report` on a real local stack: `netflix-elt run --direct` on generated data (plus a daily ratings
file with malformed rows) ends by writing the report; its numbers equal the marts and RAW.LOAD_TRACKING; every text
is escaped; the page is self-contained; and it renders in headless Chromium with every chart drawn and no console
error (a screenshot is kept in tests/artifacts/).

Chromium is driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``), with the standard
library only, so console messages and the rendered DOM are read reliably.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import html
import json
import os
import select
import shutil
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from netflix_elt.generate import generate
from netflix_elt.report import USER_BUCKETS
from netflix_elt.stack import LocalStack
from tests import snapshots
from tests.conftest import REPO, make_stack
from tests.test_dbt import Project
from tests.test_stack import cli

pytestmark = pytest.mark.slow(minutes=1.5)

ARTIFACTS = REPO / "tests" / "artifacts"
HOSTILE = "<i>1</i> & 'one' \"uno\""  # a rejected userId: markup, ampersand and both quotes


# -- the report's HTML, parsed -----------------------------------------------------------------------------------------


class Page(HTMLParser):
    """Tables (cells with data-col / data-value and their text), charts (bars and points), the JSON data block,
    every tag and every URL-bearing attribute of a report page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[dict[str, Any]]] = {}
        self.charts: dict[str, dict[str, Any]] = {}
        self.tags: list[str] = []
        self.urls: list[tuple[str, str, str]] = []
        self.data_json = ""
        self._table: str | None = None
        self._row: dict[str, Any] | None = None
        self._cell: tuple[str, str | None] | None = None
        self._text: list[str] = []
        self._chart: str | None = None
        self._chart_title: str | None = None
        self._in_data = False
        self.feed(text)
        self.close()
        self.data = json.loads(self.data_json)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        for name in ("src", "href", "xlink:href", "action", "srcset", "poster", "data"):
            if name in a:
                self.urls.append((tag, name, a[name] or ""))
        if tag == "table":
            self._table = a["id"]
            self.tables[a["id"] or ""] = []
        elif tag == "tr" and self._table:
            self._row = {"_key": a.get("data-key")}
        elif tag == "td" and self._row is not None:
            self._cell = (a["data-col"] or "", a.get("data-value"))
            self._text = []
        elif tag == "svg":
            self._chart = a.get("id")
            self.charts[self._chart or ""] = {
                "class": a.get("class"),
                "role": a.get("role"),
                "bars": [],
                "points": [],
                "texts": [],
            }
        elif self._chart and tag in ("rect", "circle") and "data-value" in a:
            kind = "bars" if tag == "rect" else "points"
            self.charts[self._chart][kind].append((a.get("data-series"), a.get("data-label"), a["data-value"]))
        elif self._chart and tag == "text":
            self._chart_title = a.get("class") or ""
            self._text = []
        elif self._chart and tag == "title" and "id" in a:
            self._chart_title = "title"
            self._text = []
        elif tag == "script" and a.get("id") == "report-data":
            assert a.get("type") == "application/json"
            self._in_data = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell and self._row is not None:
            col, value = self._cell
            self._row[col] = ("".join(self._text).strip(), value)
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            if len(self._row) > 1:
                self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "svg":
            self._chart = None
        elif self._chart and tag in ("text", "title") and self._chart_title is not None:
            self.charts[self._chart]["texts"].append((self._chart_title, "".join(self._text)))
            self._chart_title = None
        elif tag == "script":
            self._in_data = False

    def handle_data(self, data: str) -> None:
        if self._in_data:
            self.data_json += data
        self._text.append(data)

    def column(self, table: str, col: str) -> list[str]:
        return [r[col][0] for r in self.tables[table]]

    def values(self, table: str, col: str) -> list[Any]:
        return [json.loads(r[col][1]) for r in self.tables[table]]


# -- the pipeline, run once --------------------------------------------------------------------------------------------


@dataclass
class Built:
    project: Project
    env: dict[str, str]
    report: Path
    run_output: str

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        return self.project.sql(query)

    def page(self, path: Path | None = None) -> Page:
        return Page((path or self.report).read_text(encoding="utf-8"))


def _daily_ratings_with_bad_rows(landing: Path, daily: Path) -> None:
    """A daily ratings file: two good rows (existing users and movies, rated in 2024) and three malformed ones."""
    lines = (landing / "ratings.csv").read_text().splitlines()
    (u1, m1), (u2, m2) = (line.split(",")[:2] for line in lines[1:3])
    daily.write_text(
        "userId,movieId,rating,timestamp\n"
        f"{u1},{m1},4.5,1722470400\n"
        f"{u1},{m1},four,1722470401\n"  # non-numeric rating
        f"{u2},{m2},3.0\n"  # missing field
        f"{HOSTILE},{m2},2.0,1722470402\n"  # non-numeric userId with markup in it
        f"{u2},{m2},5.0,1722470403\n"
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    """`netflix-elt run --direct` (start, deploy, upload, load, dbt build, report) on tiny generated data, as a user
    runs it: a subprocess whose environment points at a fresh stack on free ports."""
    root = tmp_path_factory.mktemp("report")
    stack = make_stack(root / "stack")
    landing = root / "landing"
    generate(landing, scale="tiny")
    _daily_ratings_with_bad_rows(landing, landing / "ratings_20240801.csv")
    env = {
        "NETFLIX_ELT_STACK_DIR": str(stack.root),
        "NETFLIX_ELT_S3_PORT": str(stack.s3.port),
        "NETFLIX_ELT_SNOWFLAKE_PORT": str(stack.snowflake.port),
        "SNOWFLAKE_ACCOUNT": "emulator",
        "DBT_TARGET_PATH": str(root / "dbt-target"),
        "DBT_LOG_PATH": str(root / "dbt-logs"),
        "CWD": str(root),
    }

    def run() -> str:
        proc = cli(env, "run", "--direct", "--no-progress", "--landing", str(landing), timeout=400)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    try:
        # make mutation: a break in report.py changes none of the run's warehouse, only the report the run ends with
        output, restored = snapshots.ran("report", stack, root, run, excluded=("netflix_elt/report.py",))
        if restored:  # the run's last step, by this code's report.py
            proc = cli(env, "report", timeout=400)
            assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        yield Built(Project(LocalStack(stack.settings), root), env, root / "reports" / "netflix_report.html", output)
    finally:
        LocalStack(stack.settings).down()


# -- the command -------------------------------------------------------------------------------------------------------


def test_run_ends_by_writing_the_report_and_printing_its_path(built: Built) -> None:
    assert f"report: {built.report}" in built.run_output.splitlines()[-1]
    assert built.report.stat().st_size > 20_000
    # the partial load (3 malformed rows) does not stop the run, and the report says so
    assert "PARTIAL" in built.run_output
    assert built.page().data["pipeline_health"]["totals"]["rows_rejected"] == 3


def test_report_command_options_and_output(built: Built) -> None:
    (genome_movies,) = zip(*built.sql("SELECT DISTINCT MOVIE_ID FROM MARTS.MART_MOVIE_TOP_GENOME_TAGS"), strict=True)
    chosen = max(genome_movies)
    out = built.project.work / "elsewhere" / "r.html"
    proc = cli(built.env, "report", "--output", str(out), "--movie", str(chosen), "--top", "5")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)
    page = built.page(out)
    assert page.data["parameters"] == {"movie": chosen, "top": 5}
    assert len(page.tables["top-movies-table"]) == 5
    genome = page.data["genome_tags"]
    assert genome["movie"]["movie_id"] == chosen and genome["chosen_by"] == "chosen with --movie"
    expected = built.sql(
        f"SELECT TAG_RANK, TAG_ID, TAG, RELEVANCE FROM MARTS.MART_MOVIE_TOP_GENOME_TAGS WHERE MOVIE_ID = {chosen} "
        "ORDER BY TAG_RANK"
    )
    assert [(t["tag_rank"], t["tag_id"], t["tag"], t["relevance"]) for t in genome["tags"]] == expected
    assert page.column("genome-tags-table", "tag") == [t for _, _, t, _ in expected]

    # a movie without genome tags: the section says so, the command still writes the page
    (no_genome,) = built.sql(
        "SELECT MIN(MOVIE_ID) FROM MARTS.MART_MOVIE_RATINGS WHERE MOVIE_ID NOT IN "
        "(SELECT MOVIE_ID FROM MARTS.MART_MOVIE_TOP_GENOME_TAGS)"
    )[0]
    proc = cli(built.env, "report", "-o", str(out), "--movie", str(no_genome))
    assert proc.returncode == 0, proc.stderr
    assert f"Movie {no_genome} has no genome tags." in proc.stderr
    assert f"Movie {no_genome} has no genome tags." in out.read_text()
    assert "chart-genome-tags" not in built.page(out).charts

    help_text = cli(built.env, "--help").stdout
    assert "netflix-elt report" in help_text


# -- the numbers equal the marts ---------------------------------------------------------------------------------------


def test_top_movies_are_the_marts_best_by_bayesian_rating(built: Built) -> None:
    page = built.page()
    mart = built.sql(
        "SELECT MOVIE_ID, TITLE, RELEASE_YEAR, GENRES, RATING_COUNT, MEAN_RATING, BAYESIAN_RATING "
        "FROM MARTS.MART_MOVIE_RATINGS"
    )
    by_id = {r[0]: r for r in mart}
    rows = page.data["top_movies"]["rows"]
    assert len(rows) == 20 and [r["rank"] for r in rows] == list(range(1, 21))
    for r in rows:  # every value exactly as in the mart
        assert by_id[r["movie_id"]] == (
            r["movie_id"],
            r["title"],
            r["release_year"],
            r["genres"],
            r["rating_count"],
            r["mean_rating"],
            r["bayesian_rating"],
        )
    shown = [r["bayesian_rating"] for r in rows]
    assert shown == sorted(shown, reverse=True)
    others = [m[6] for m in mart if m[0] not in {r["movie_id"] for r in rows}]
    assert min(shown) >= max(others)  # nothing left out rates higher

    # the visible table says the same, with exact values in data-value and the titles unescaped back to the mart's
    table = page.tables["top-movies-table"]
    assert [int(r["_key"]) for r in table] == [r["movie_id"] for r in rows]
    assert page.column("top-movies-table", "title") == [r["title"] for r in rows]
    assert page.values("top-movies-table", "bayesian_rating") == shown
    assert page.values("top-movies-table", "rating_count") == [r["rating_count"] for r in rows]
    assert page.values("top-movies-table", "mean_rating") == [r["mean_rating"] for r in rows]
    assert page.column("top-movies-table", "mean_rating") == [f"{r['mean_rating']:.3f}" for r in rows]
    # and the chart draws the first 15 with their exact values
    bars = page.charts["chart-top-movies"]["bars"]
    assert [float(v) for _, _, v in bars] == shown[:15]


def test_ratings_genres_and_users_equal_the_marts(built: Built) -> None:
    page = built.page()
    data = page.data
    (total,) = built.sql("SELECT COUNT(*) FROM CORE.FCT_RATINGS")[0]
    (mart_total,) = built.sql("SELECT SUM(RATING_COUNT) FROM MARTS.MART_MOVIE_RATINGS")[0]
    assert total == mart_total == data["summary"]["ratings"] == 1002  # 1,000 generated + 2 good daily rows

    # rating distribution: every half star, zeros included
    expected = {float(r): n for r, n in built.sql("SELECT RATING, COUNT(*) FROM CORE.FCT_RATINGS GROUP BY RATING")}
    dist = data["rating_distribution"]["rows"]
    assert [d["rating"] for d in dist] == [x / 2 for x in range(1, 11)]
    assert {d["rating"]: d["ratings"] for d in dist if d["ratings"]} == expected
    bars = page.charts["chart-rating-distribution"]["bars"]
    assert [(label, int(v)) for _, label, v in bars] == [(f"{d['rating']:.1f}", d["ratings"]) for d in dist]

    # ratings per year, from the fact table; the daily file adds 2024
    per_year = dict(built.sql("SELECT EXTRACT(YEAR FROM RATED_DATE), COUNT(*) FROM CORE.FCT_RATINGS GROUP BY 1"))
    years = data["ratings_per_year"]["rows"]
    assert {y["rating_year"]: y["ratings"] for y in years} == per_year
    assert per_year[2024] == 2 and sum(per_year.values()) == total
    assert [int(v) for _, _, v in page.charts["chart-ratings-per-year"]["bars"]] == [y["ratings"] for y in years]
    assert page.values("ratings-per-year-table", "ratings") == [y["ratings"] for y in years]

    # genre trends: the whole mart, and per-genre totals
    mart = built.sql(
        "SELECT GENRE, RATING_YEAR, RATING_COUNT, USER_COUNT, MOVIE_COUNT, MEAN_RATING "
        "FROM MARTS.MART_GENRE_YEAR_POPULARITY ORDER BY GENRE, RATING_YEAR"
    )
    genre_rows = data["genre_trends"]["rows"]
    assert [tuple(r.values()) for r in genre_rows] == mart
    totals = dict(built.sql("SELECT GENRE, SUM(RATING_COUNT) FROM MARTS.MART_GENRE_YEAR_POPULARITY GROUP BY 1"))
    assert {g["genre"]: g["ratings"] for g in data["genre_trends"]["genres"]} == totals
    chart = page.charts["chart-genre-trends"]
    leaders = sorted(totals, key=lambda g: (-totals[g], g))[:6]
    assert sorted({s for s, _, _ in chart["points"]}) == sorted(leaders)
    drawn = {(s, int(x)): int(v) for s, x, v in chart["points"]}
    assert all(drawn[(g, y)] == n for g, y, n, *_ in mart if g in leaders)
    assert sum(drawn.values()) == sum(totals[g] for g in leaders)  # the missing years are drawn as 0

    # user activity: cohorts per year, users by number of ratings
    (users,) = built.sql("SELECT COUNT(*) FROM CORE.DIM_USERS")[0]
    cohort_years = {
        y: (n, r)
        for y, n, r in built.sql(
            "SELECT COHORT_YEAR, SUM(COHORT_SIZE), SUM(RATING_COUNT) FROM MARTS.MART_USER_COHORTS GROUP BY 1"
        )
    }
    shown = data["user_activity"]["cohort_years"]
    assert {y["cohort_year"]: (y["new_users"], y["ratings"]) for y in shown} == cohort_years
    assert sum(y["new_users"] for y in shown) == users == data["summary"]["users"]
    assert page.values("cohort-table", "new_users") == [y["new_users"] for y in shown]
    counts = [n for (n,) in built.sql("SELECT RATING_COUNT FROM CORE.DIM_USERS")]
    buckets = data["user_activity"]["users_by_ratings"]
    assert [b["min_ratings"] for b in buckets] == USER_BUCKETS
    for b in buckets:
        inside = [n for n in counts if n >= b["min_ratings"] and (b["max_ratings"] is None or n <= b["max_ratings"])]
        assert (b["users"], b["ratings"]) == (len(inside), sum(inside)), b
    assert sum(b["users"] for b in buckets) == users


def test_genome_tags_default_to_the_best_rated_movie_with_a_genome(built: Built) -> None:
    page = built.page()
    genome = page.data["genome_tags"]
    with_genome = {m for (m,) in built.sql("SELECT DISTINCT MOVIE_ID FROM MARTS.MART_MOVIE_TOP_GENOME_TAGS")}
    ranked = built.sql("SELECT MOVIE_ID, BAYESIAN_RATING, RATING_COUNT FROM MARTS.MART_MOVIE_RATINGS")
    best = max((r for r in ranked if r[0] in with_genome), key=lambda r: (r[1], r[2], -r[0]))[0]
    assert genome["movie"]["movie_id"] == best
    tags = built.sql(
        f"SELECT TAG_RANK, TAG, RELEVANCE FROM MARTS.MART_MOVIE_TOP_GENOME_TAGS WHERE MOVIE_ID = {best} ORDER BY 1"
    )
    assert len(tags) == 10
    assert [(t["tag_rank"], t["tag"], t["relevance"]) for t in genome["tags"]] == tags
    bars = page.charts["chart-genome-tags"]["bars"]
    assert [(label, float(v)) for _, label, v in bars] == [(t, r) for _, t, r in tags]


def test_pipeline_health_equals_load_tracking(built: Built) -> None:
    page = built.page()
    health = page.data["pipeline_health"]
    tracked = built.sql(
        "SELECT FILE_KEY, DATASET, STATUS, ROWS_PARSED, ROWS_LOADED, ROWS_REJECTED FROM RAW.LOAD_TRACKING"
    )
    assert len(tracked) == 7  # the six generated files and the daily ratings file
    assert sorted(
        (f["file_key"], f["dataset"], f["status"], f["rows_parsed"], f["rows_loaded"], f["rows_rejected"])
        for f in health["files"]
    ) == sorted(tracked)
    # the per-file table: one row per file, keyed by its stage key, exact counts in data-value
    table = {r["_key"]: r for r in page.tables["load-files-table"]}
    assert {k: (json.loads(r["rows_loaded"][1]), json.loads(r["rows_rejected"][1])) for k, r in table.items()} == {
        k: (loaded, rejected) for k, _, _, _, loaded, rejected in tracked
    }
    (daily,) = [t for t in tracked if t[0].endswith("ratings_20240801.csv")]
    assert daily[2:] == ("PARTIALLY_LOADED", 5, 2, 3)
    assert table[daily[0]]["status"][0] == "partially loaded"
    per_file_bars = {(s, label): int(v) for s, label, v in page.charts["chart-rows-per-file"]["bars"]}
    assert per_file_bars[("Rows rejected", "ratings_20240801.csv")] == 3
    assert per_file_bars[("Rows loaded", "ratings_20240801.csv")] == 2

    # per day (of the load's finish) and totals
    per_day = built.sql(
        "SELECT TO_VARCHAR(TO_DATE(COALESCE(FINISHED_AT, CLAIMED_AT))), COUNT(*), SUM(ROWS_LOADED), "
        "SUM(ROWS_REJECTED) FROM RAW.LOAD_TRACKING GROUP BY 1 ORDER BY 1"
    )
    assert [(d["day"], d["files"], d["rows_loaded"], d["rows_rejected"]) for d in health["days"]] == per_day
    assert page.values("load-days-table", "rows_loaded") == [d[2] for d in per_day]
    (rejects, last_finished) = built.sql(
        "SELECT (SELECT COUNT(*) FROM RAW.LOAD_REJECTS), MAX(FINISHED_AT) FROM RAW.LOAD_TRACKING"
    )[0]
    assert health["totals"]["rows_rejected"] == health["totals"]["reject_records"] == rejects == 3
    assert health["last_finished_at"] == last_finished.isoformat()
    errors = built.sql("SELECT ERROR, COUNT(*) FROM RAW.LOAD_REJECTS GROUP BY 1")
    assert sorted((e["error"], e["rejected_rows"]) for e in health["errors"]) == sorted(errors)


# -- safe, self-contained HTML -----------------------------------------------------------------------------------------


def test_every_text_is_escaped_and_the_page_is_self_contained(built: Built) -> None:
    text = built.report.read_text(encoding="utf-8")
    page = built.page()
    # the rejected line with markup, ampersand and quotes: shown as text, never as markup
    (record,) = built.sql("SELECT REJECTED_RECORD FROM RAW.LOAD_REJECTS WHERE REJECTED_RECORD LIKE '%<i>%'")[0]
    assert "<i>1</i> & 'one'" in record
    assert "<i>" not in text and record not in text
    assert html.escape(record, quote=True) in text
    assert record in page.column("reject-samples-table", "rejected_record")
    assert record in [r["rejected_record"] for r in page.data["pipeline_health"]["reject_samples"]]
    # only the report's own elements, whatever the data
    allowed = "html head meta title link style body header h1 h2 h3 span p nav a main section div b figure svg text "
    allowed += "line rect circle polyline desc table thead tbody tr th td details summary code footer script"
    assert set(page.tags) <= set(allowed.split())
    # titles with quotes, commas, ampersands or non-ASCII come back exactly from the page
    titles = [t for (t,) in built.sql("SELECT TITLE FROM MARTS.MART_MOVIE_RATINGS")]
    assert any(set(t) & set("\"'&,") or not t.isascii() for t in titles)
    assert set(page.column("top-movies-table", "title")) <= set(titles)
    # nothing is fetched: no external URL, no script source, a CSP that forbids loading anything
    assert all(url.startswith(("#", "data:")) for _, _, url in page.urls), page.urls
    assert "http://" not in text and "https://" not in text and "@import" not in text and "url(" not in text
    assert "default-src 'none'" in text
    assert text.count("<script") == 1  # the JSON data block, which is not executed


# -- headless Chromium ---------------------------------------------------------------------------------------------


def chromium_executable() -> str | None:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome", "chrome"):
        if name and (path := shutil.which(name)):
            return path
    return None


class Chromium:
    """Headless Chromium driven through the DevTools protocol over a pipe: messages are JSON separated by NUL, the
    browser reads commands on fd 3 and writes replies and events on fd 4."""

    def __init__(self, exe: str, profile: Path, width: int = 1280, height: int = 900) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()
        # copies above 10, so that moving them to 3 and 4 in the child cannot overwrite one another
        high_cmd, high_res = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10), fcntl.fcntl(res_w, fcntl.F_DUPFD, 10)

        def wire() -> None:
            os.dup2(high_cmd, 3)
            os.dup2(high_res, 4)

        self.log = profile / "chromium.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    exe,
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--hide-scrollbars",
                    "--remote-debugging-pipe",
                    f"--user-data-dir={profile}",
                    "about:blank",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                preexec_fn=wire,
                close_fds=False,
            )
        for fd in (cmd_r, res_w, high_cmd, high_res):
            os.close(fd)
        self._buffer = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        self.width = width
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=True)
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        self.send("Emulation.setDeviceMetricsOverride", metrics, session=True)

    def _message(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._res_r], [], [], left)[0]:
                raise TimeoutError(f"no answer from Chromium in {timeout} s")
            chunk = os.read(self._res_r, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium exited: " + self.log.read_text(errors="replace")[-2000:])
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(raw))

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: bool = False, timeout: float = 30
    ) -> Any:
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(message).encode() + b"\0")
        while True:
            m = self._message(timeout)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def open(self, url: str, timeout: float = 30) -> None:
        self.send("Page.navigate", {"url": url}, session=True)
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._message(timeout))

    def evaluate(self, expression: str) -> Any:
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=True)
        assert "exceptionDetails" not in r, r
        return r["result"].get("value")

    def console_errors(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, and browser log errors (failed loads, CSP, ...)."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e.get("method") == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert", "warning"):
                out.append(
                    f"console.{p['type']}: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"])
                )
            elif e.get("method") == "Runtime.exceptionThrown":
                details = p["exceptionDetails"]
                out.append("exception: " + details.get("exception", {}).get("description", details["text"]))
            elif e.get("method") == "Log.entryAdded" and p["entry"]["level"] in ("error", "warning"):
                out.append(
                    f"{p['entry']['source']} {p['entry']['level']}: {p['entry']['text']} {p['entry'].get('url', '')}"
                )
        return out

    def screenshot(self, path: Path) -> tuple[int, int]:
        """The whole page as a PNG; returns its width and height."""
        height = int(self.send("Page.getLayoutMetrics", session=True)["cssContentSize"]["height"])
        clip = {"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1}
        shot = self.send(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}, session=True
        )
        data = base64.b64decode(shot["data"])
        path.write_bytes(data)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, png_height = struct.unpack(">II", data[16:24])
        return width, png_height

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close", timeout=5)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        os.close(self._res_r)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    exe = chromium_executable()
    if exe is None:
        pytest.skip(
            "chromium is not installed (make install installs Debian's chromium when run as root with apt-get; "
            "or set CHROMIUM=/path/to/chromium)"
        )
    b = Chromium(exe, tmp_path_factory.mktemp("chromium"))
    try:
        yield b
    finally:
        b.close()


CHARTS_JS = """Array.from(document.querySelectorAll('svg.chart')).map(s => {
  const box = s.getBoundingClientRect();
  const marks = Array.from(s.querySelectorAll('rect.bar, circle.point'));
  return {id: s.id, width: box.width, height: box.height, marks: marks.length,
          drawn: marks.filter(m => { const b = m.getBoundingClientRect(); return b.width > 0 && b.height > 0; }).length,
          title: (s.querySelector(':scope > title') || {}).textContent || '',
          axisLabels: s.querySelectorAll('text.axis-label').length,
          visibleTitle: (s.querySelector('text.chart-title') || {}).textContent || ''};
})"""


def test_the_browser_check_sees_console_errors(browser: Chromium, tmp_path: Path) -> None:
    """The harness is able to fail: a page with a console error, an exception and a missing image is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><title>bad</title><img src='missing.png'>"
        "<script>console.error('broken chart'); undefinedFunction();</script>"
    )
    browser.events.clear()
    browser.open(bad.as_uri())
    errors = "\n".join(browser.console_errors())
    assert "broken chart" in errors and "undefinedFunction" in errors and "missing.png" in errors


def test_report_renders_in_chromium_with_every_chart_and_no_console_error(built: Built, browser: Chromium) -> None:
    browser.events.clear()
    browser.open(built.report.as_uri())
    time.sleep(0.3)  # late console messages, if any
    assert browser.console_errors() == []
    assert browser.evaluate("document.title").startswith("netflix-elt report")
    charts = browser.evaluate(CHARTS_JS)
    expected = set(built.page().charts)
    assert {c["id"] for c in charts} == expected and len(expected) == 10
    for c in charts:
        assert c["width"] > 300 and c["height"] > 150, c
        assert c["marks"] > 0, c
        assert c["title"].strip() and c["visibleTitle"].strip() and c["axisLabels"] == 2, c
    # every bar with a value above 0 and every point has a size on screen
    page = built.page()
    for c in charts:
        bars = page.charts[c["id"]]["bars"]
        if bars:
            assert c["drawn"] >= sum(float(v) > 0 for _, _, v in bars) > 0, c
        else:
            assert c["drawn"] == c["marks"], c
    # the JSON data block is readable from the rendered page too
    assert browser.evaluate("JSON.parse(document.getElementById('report-data').textContent).summary.ratings") == 1002

    ARTIFACTS.mkdir(exist_ok=True)
    width, height = browser.screenshot(ARTIFACTS / "report.png")
    shutil.copyfile(built.report, ARTIFACTS / "netflix_report.html")
    assert width == 1280 and height > 3000
    assert (ARTIFACTS / "report.png").stat().st_size > 100_000  # a full page, not a blank one
