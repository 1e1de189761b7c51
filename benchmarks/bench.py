"""`make bench`: the pipeline's performance side by side with the alternatives, at one scale, in one run.

Every figure is a ratio to a baseline measured in the same run on the same machine (absolute times vary from
machine to machine and from minute to minute; ratios much less). How it measures:

- every case is run once unmeasured first (a warm-up: the file in the page cache, the servers' and Python's caches
  filled), the baseline included, so that no baseline is measured cold;
- the cases of a comparison then alternate over ``--repeat`` rounds (5 by default; ``--long-repeat``, 3, for the
  minute-scale sections d and e), the order rotating from round to round (A, B, then B, A, ...), and each figure is
  the median of its rounds;
- a target is judged on the unrounded ratio of those medians, which the results print next to the rounded one;
- the results record the commit measured, the product files that differed from it, the machine and the load
  average during the run (benchmarks/machine.py).

Sections:

a. upload of the ratings file: our uploader vs reading the whole file into memory and ``put_object`` vs boto3's
   ``upload_file`` with its defaults (the baseline) — time, throughput, peak RSS (each run in its own process);
b. load of every staged file: ``CALL RAW.LOAD_RAW_FILES`` vs the bare ``COPY INTO`` statements the procedure runs
   (the baseline for the procedure's overhead) vs DuckDB ``read_csv`` of the local files into tables (the floor of
   this machine);
c. incremental cost: a no-op CALL (nothing new staged) and a CALL for one new file, with 10 and with 10,000 files
   already tracked (the 10-file figures are the baseline), each history on its own fresh stack;
d. dbt: a full build vs an incremental build after a daily file of 100,000 ratings (the full build is the baseline;
   each round loads a new daily file);
e. the Airflow DAG run vs the same steps run directly (benchmarks/dag_vs_direct.py; direct is the baseline).

    python benchmarks/bench.py                       # scale medium (1M ratings)
    python benchmarks/bench.py --scale ml-32m        # the full size (32M ratings)
    python benchmarks/bench.py --sections abc        # some sections only

Results: benchmarks/results/bench_<scale>.json and bench_<scale>.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dag_vs_direct import compare, free_port
from machine import Provenance, environment, provenance_markdown

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from netflix_elt import contracts, pipeline  # noqa: E402
from netflix_elt.config import Settings  # noqa: E402
from netflix_elt.stack import LocalStack  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MB = 1_000_000

TARGETS = {
    "upload_vs_upload_file": ("uploader throughput / boto3 upload_file", ">=", 1.0),
    "upload_vs_whole_file": ("uploader throughput / whole-file put_object", ">=", 5.0),
    "call_vs_copy": ("CALL / bare COPY", "<=", 1.15),
    "call_vs_duckdb": ("CALL (whole load) / DuckDB read_csv", "<=", 2.0),
    "noop_10000_vs_10": ("no-op CALL, 10,000 vs 10 tracked", "<=", 1.5),
    "one_file_10000_vs_10": ("one-new-file CALL, 10,000 vs 10 tracked", "<=", 1.5),
    "dbt_incremental_vs_full": ("dbt incremental / full build", "<=", 0.15),
    "dag_vs_direct": ("DAG run / steps run directly", "<=", 1.3),
}
TARGET_PEAK_RSS_MB = 200.0  # the uploader's peak RSS for a 1 GB file


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def rotation(cases: Sequence[str], round_: int) -> list[str]:
    """The order of the cases in a round: rotated by one each round (A, B, C; B, C, A; C, A, B; ...)."""
    k = round_ % len(cases)
    return [*cases[k:], *cases[:k]]


def interleaved(
    cases: Sequence[str], rounds: int, run: Callable[[str], float], label: str, warm_up: bool = True
) -> dict[str, list[float]]:
    """Run each case once unmeasured (if ``warm_up``), then ``rounds`` rounds of all cases in rotating order;
    returns each case's measured seconds in round order."""
    if warm_up:
        for case in cases:
            seconds = run(case)
            log(f"{label} warm-up {case}: {seconds:.3f} s (not counted)")
    times: dict[str, list[float]] = {c: [] for c in cases}
    for r in range(rounds):
        for case in rotation(cases, r):
            seconds = run(case)
            times[case].append(seconds)
            log(f"{label} round {r + 1} {case}: {seconds:.3f} s")
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


class Bench:
    def __init__(self, work: Path, scale: str, repeat: int, long_repeat: int) -> None:
        self.work = work
        self.scale = scale
        self.repeat = repeat
        self.long_repeat = long_repeat
        self.landing = work / "landing"
        self.settings = self._settings("stack")
        self.stack = LocalStack(self.settings)
        self.env: dict[str, str] = {}
        self.extra_stacks: list[LocalStack] = []

    def _settings(self, name: str) -> Settings:
        return dataclasses.replace(
            Settings.from_env(), stack_dir=self.work / name, s3_port=free_port(), snowflake_port=free_port()
        )

    # -- set-up ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        from netflix_elt.generate import generate

        log(f"generating scale {self.scale} into {self.landing}")
        generate(self.landing, scale=self.scale, seed=42)
        self.stack.up()
        self.env = {
            **os.environ,
            **self.stack.env(),
            "NETFLIX_ELT_STACK_DIR": str(self.settings.stack_dir),
            "NETFLIX_ELT_S3_PORT": str(self.settings.s3_port),
            "NETFLIX_ELT_SNOWFLAKE_PORT": str(self.settings.snowflake_port),
            # the uploader's state and dbt's files in the work folder, not in the user's or the repository's
            "NETFLIX_ELT_UPLOAD_STATE_DIR": str(self.work / "upload-state"),
            "DBT_TARGET_PATH": str(self.work / "dbt-target"),
            "DBT_LOG_PATH": str(self.work / "dbt-logs"),
        }
        os.environ.update(self.env)
        self.deploy(self.settings)

    @staticmethod
    def deploy(settings: Settings) -> None:
        proc = pipeline.deploy(settings, quiet=True)
        if proc.returncode != 0:
            raise SystemExit(proc.stdout + proc.stderr)

    def stop(self) -> None:
        for stack in [*self.extra_stacks, self.stack]:
            stack.down()

    def sql(self, query: str, settings: Settings | None = None) -> list[tuple[Any, ...]]:
        with pipeline.connect(settings or self.settings, network_timeout=900) as conn:
            cur = conn.cursor()
            cur.execute(query)
            return list(cur.fetchall())

    def reset_raw(self) -> None:
        """Empty RAW and the tracking tables (TRUNCATE also resets COPY's load metadata)."""
        for c in contracts.CONTRACTS.values():
            self.sql(f"TRUNCATE TABLE {c.qualified_raw_table}")
        self.sql("TRUNCATE TABLE RAW.LOAD_TRACKING")
        self.sql("TRUNCATE TABLE RAW.LOAD_REJECTS")

    def upload_landing(self) -> list[str]:
        """Upload every landing file again (force: new keys), so that the stage holds them whatever ran before."""
        from uploader import upload

        report = upload(
            self.landing,
            bucket=self.settings.bucket,
            prefix=self.settings.prefix,
            s3_client=self.stack.s3_client(),
            progress=False,
            force=True,
        )
        return list(report.uploaded_keys)

    def clear_stage(self) -> None:
        """Delete every staged object (straight from the S3 server's data folder)."""
        shutil.rmtree(self.settings.stack_dir / "s3" / self.settings.bucket / self.settings.prefix, ignore_errors=True)

    # -- a. upload ------------------------------------------------------------------------------------------------

    UPLOAD_CASES = ("boto3 upload_file (defaults)", "uploader (ours)", "whole file in memory + put_object")

    def upload(self) -> dict[str, Any]:
        path = self.landing / "ratings.csv"
        size = path.stat().st_size
        single = self.work / "upload-one"
        single.mkdir(exist_ok=True)
        link = single / "ratings.csv"
        if not link.exists():
            os.link(path, link)
        peak = "def peak():\n    return int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) / 1024\n"
        common = peak + (
            "import json, os, sys, time, boto3\n"
            "s3 = boto3.client('s3', endpoint_url=os.environ['AWS_ENDPOINT_URL'], region_name='us-east-1')\n"
            "path, bucket, key = sys.argv[1], sys.argv[2], sys.argv[3]\n"
        )
        scripts = {
            "uploader (ours)": common + "from uploader import upload\n"
            "t = time.perf_counter()\n"
            "r = upload(os.path.dirname(path), bucket=bucket, prefix=key, s3_client=s3, progress=False)\n"
            "assert r.uploaded_keys, r.summary()\n"
            "print(json.dumps({'seconds': time.perf_counter() - t, 'peak_mb': peak()}))\n",
            "whole file in memory + put_object": common + "t = time.perf_counter()\n"
            "data = open(path, 'rb').read()\n"
            "s3.put_object(Bucket=bucket, Key=key + 'ratings.csv', Body=data)\n"
            "print(json.dumps({'seconds': time.perf_counter() - t, 'peak_mb': peak()}))\n",
            "boto3 upload_file (defaults)": common + "t = time.perf_counter()\n"
            "s3.upload_file(path, bucket, key + 'ratings.csv')\n"
            "print(json.dumps({'seconds': time.perf_counter() - t, 'peak_mb': peak()}))\n",
        }
        peaks: dict[str, list[float]] = {c: [] for c in scripts}

        def run(case: str) -> float:
            prefix = f"bench-upload/{time.time_ns()}/"
            proc = subprocess.run(
                [sys.executable, "-c", scripts[case], str(link), self.settings.bucket, prefix],
                env={**self.env, "PYTHONPATH": str(ROOT)},
                capture_output=True,
                text=True,
            )
            # the uploaded objects go at once: a run at a time on the disk
            shutil.rmtree(self.settings.stack_dir / "s3" / self.settings.bucket / prefix, ignore_errors=True)
            if proc.returncode != 0:
                raise SystemExit(f"upload benchmark {case} failed:\n{proc.stderr[-3000:]}")
            measured = json.loads(proc.stdout.strip().splitlines()[-1])
            peaks[case].append(measured["peak_mb"])
            return float(measured["seconds"])

        times = interleaved(self.UPLOAD_CASES, self.repeat, run, "a.")
        rows = []
        for case in self.UPLOAD_CASES:
            seconds = median(times[case])
            rows.append(
                {
                    "case": case,
                    "seconds": seconds,
                    "mb_per_s": size / MB / seconds,
                    "peak_rss_mb": max(peaks[case]),  # the highest of all its runs, warm-up included
                    "runs_seconds": times[case],
                    "runs_peak_rss_mb": peaks[case],
                }
            )
        by = {r["case"]: r for r in rows}
        ours, base, whole = (
            by["uploader (ours)"],
            by["boto3 upload_file (defaults)"],
            by["whole file in memory + put_object"],
        )
        return {
            "file_mb": size / MB,
            "rows": rows,
            "ratios": {
                "upload_vs_upload_file": ours["mb_per_s"] / base["mb_per_s"],
                "upload_vs_whole_file": ours["mb_per_s"] / whole["mb_per_s"],
            },
        }

    # -- b. load --------------------------------------------------------------------------------------------------

    LOAD_CASES = ("bare COPY", "CALL", "DuckDB read_csv")

    def load(self) -> dict[str, Any]:
        from snowflake.procedures import load_raw_files as proc

        self.reset_raw()
        self.clear_stage()
        keys = self.upload_landing()
        sources: dict[str, list[str]] = {}
        for key in keys:
            parsed = contracts.parse_stage_key(key)
            if parsed is not None:
                sources.setdefault(parsed.source_key, []).append(key)
        copies = []
        for objs in sources.values():
            parsed = contracts.parse_stage_key(objs[0])
            assert parsed is not None
            copies.append(proc.copy_statement(contracts.CONTRACTS[parsed.dataset], sorted(objs), "bench"))
        loaded: dict[str, int] = {}

        def run(case: str) -> float:
            if case == "DuckDB read_csv":
                return self._duckdb_floor()
            self.reset_raw()
            if case == "bare COPY":
                seconds, _ = timed(lambda: [self.sql(c) for c in copies])
                loaded[case] = self._raw_rows()
            else:
                seconds, summary = timed(lambda: pipeline.load(keys, settings=self.settings))
                loaded[case] = summary["totals"]["rows_loaded"]
            if len(set(loaded.values())) > 1:
                raise SystemExit(f"CALL and bare COPY loaded different row counts: {loaded}")
            return seconds

        times = interleaved(self.LOAD_CASES, self.repeat, run, "b.")
        result: dict[str, Any] = {
            "rows_loaded": loaded["CALL"],
            "copy_seconds": median(times["bare COPY"]),
            "call_seconds": median(times["CALL"]),
            "duckdb_seconds": median(times["DuckDB read_csv"]),
            "runs_seconds": times,
        }
        result["ratios"] = {
            "call_vs_copy": result["call_seconds"] / result["copy_seconds"],
            "call_vs_duckdb": result["call_seconds"] / result["duckdb_seconds"],
        }
        return result

    def _raw_rows(self) -> int:
        return sum(
            int(self.sql(f"SELECT COUNT(*) FROM {c.qualified_raw_table}")[0][0]) for c in contracts.CONTRACTS.values()
        )

    def _duckdb_floor(self) -> float:
        """Each landing file into a typed DuckDB table with read_csv: the machine's floor for parsing and storing."""
        import duckdb

        db = self.work / "floor.duckdb"
        db.unlink(missing_ok=True)
        con = duckdb.connect(str(db))
        t0 = time.perf_counter()
        for path in sorted(self.landing.iterdir()):
            matched = contracts.match_file_name(path.name)
            if matched is None:
                continue
            contract = matched.contract
            types = {c.header: _duck_type(c.sql_type) for c in contract.columns}
            con.execute(
                f"CREATE OR REPLACE TABLE {contract.dataset.replace('-', '_')} AS SELECT * FROM "
                f"read_csv(?, header = true, columns = {types!r}, quote = '\"', escape = '\"')",
                [str(path)],
            )
        seconds = time.perf_counter() - t0
        con.close()
        return seconds

    # -- c. incremental ------------------------------------------------------------------------------------------

    def incremental(self, histories: tuple[int, ...] = (10, 10_000)) -> dict[str, Any]:
        """Each history on its own fresh stack (deployed, history written), so that the CALLs can alternate between
        them: no-op CALLs first, then one-new-file CALLs (each adds one file to its stack's history)."""
        stacks: dict[str, Settings] = {}
        for n in histories:
            settings = self._settings(f"stack-history-{n}")
            stack = LocalStack(settings)
            self.extra_stacks.append(stack)
            stack.up()
            self.deploy(settings)
            self._fake_history(n, settings, stack)
            stacks[f"{n} tracked"] = settings
        cases = list(stacks)
        counter = iter(range(1_000_000))

        def noop(case: str) -> float:
            seconds, summary = timed(lambda: pipeline.load(settings=stacks[case]))
            if summary["totals"]["files"]:
                raise SystemExit(f"the no-op CALL loaded something: {summary['message']}")
            return seconds

        def one_file(case: str) -> float:
            key = self._put_new_ratings_file(f"inc{next(counter)}", stacks[case])
            seconds, summary = timed(lambda: pipeline.load([key], settings=stacks[case]))
            if summary["totals"]["loaded"] != 1:
                raise SystemExit(f"the one-file CALL did not load one file: {summary['message']}")
            return seconds

        noop_times = interleaved(cases, self.repeat, noop, "c. no-op")
        one_times = interleaved(cases, self.repeat, one_file, "c. one new file")
        out: dict[str, Any] = {"histories": {}}
        for n, case in zip(histories, cases, strict=True):
            out["histories"][str(n)] = {
                "noop_seconds": median(noop_times[case]),
                "one_file_seconds": median(one_times[case]),
                "runs_noop_seconds": noop_times[case],
                "runs_one_file_seconds": one_times[case],
            }
        lo, hi = out["histories"][str(histories[0])], out["histories"][str(histories[-1])]
        out["ratios"] = {
            "noop_10000_vs_10": hi["noop_seconds"] / lo["noop_seconds"],
            "one_file_10000_vs_10": hi["one_file_seconds"] / lo["one_file_seconds"],
        }
        return out

    def _fake_history(self, n: int, settings: Settings, stack: LocalStack) -> None:
        """n small ratings files already staged and tracked as LOADED, one uploaded every hour until an hour ago (an
        hourly feed: 10,000 files are 14 months of it). Written straight into the S3 server's data folder, which is
        what the server serves, and one multi-row INSERT per 1,000 tracking rows."""
        import hashlib

        bucket_dir = settings.stack_dir / "s3" / settings.bucket
        now = dt.datetime.now(dt.UTC)
        rows = []
        for i in range(n):
            body = f"userId,movieId,rating,timestamp\n{i + 1},1,4.0,1700000000\n".encode()
            sha = hashlib.sha256(body + str(n).encode()).hexdigest()
            uploaded = now - dt.timedelta(hours=n - i)
            name = f"ratings_{uploaded:%Y%m%d}.csv"
            key = contracts.stage_key("ratings", uploaded.strftime(contracts.UPLOADED_AT_FORMAT), sha, name)
            path = bucket_dir / settings.prefix / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
            rows.append(
                f"('{key}', 'ratings', '{name}', '{sha[:16]}', {len(body)}, 1, 'LOADED', 1, 1, 0, 'history', "
                "'2024-01-01 00:00:00', '2024-01-01 00:00:01', 1)"
            )
        for start in range(0, len(rows), 1000):
            self.sql(
                "INSERT INTO RAW.LOAD_TRACKING (FILE_KEY, DATASET, FILE_NAME, CONTENT_CHECKSUM, SIZE_BYTES, PARTS, "
                "STATUS, ROWS_PARSED, ROWS_LOADED, ROWS_REJECTED, LOAD_ID, CLAIMED_AT, FINISHED_AT, ATTEMPTS) VALUES "
                + ", ".join(rows[start : start + 1000]),
                settings,
            )

    @staticmethod
    def _put_new_ratings_file(tag: str, settings: Settings) -> str:
        import hashlib

        body = f"userId,movieId,rating,timestamp\n7,{int(hashlib.sha256(tag.encode()).hexdigest(), 16) % 1000 + 1}"
        body += ",3.5,1700000000\n"
        data = body.encode()
        sha = hashlib.sha256(data + tag.encode()).hexdigest()
        uploaded = dt.datetime.now(dt.UTC).strftime(contracts.UPLOADED_AT_FORMAT)
        key = contracts.stage_key("ratings", uploaded, sha, "ratings_20240101.csv")
        LocalStack(settings).s3_client().put_object(Bucket=settings.bucket, Key=settings.prefix + key, Body=data)
        return key

    # -- d. dbt ---------------------------------------------------------------------------------------------------

    def dbt(self, daily_ratings: int = 100_000) -> dict[str, Any]:
        """A warm-up full build, then rounds of: full build (the baseline), the next day's daily file uploaded and
        loaded, incremental build. Each round's full build also rebuilds the daily files of the rounds before."""
        from netflix_elt.generate import generate_daily
        from netflix_elt.transform import transform
        from uploader import upload

        self.reset_raw()
        self.clear_stage()
        pipeline.load(self.upload_landing(), settings=self.settings)

        def build(full: bool) -> float:
            seconds, summary = timed(lambda: transform(full_refresh=full, quiet=True))
            if not summary["success"]:
                raise SystemExit(f"dbt {'full' if full else 'incremental'} build failed: {summary}")
            return seconds

        seconds = build(True)
        log(f"d. warm-up full build: {seconds:.1f} s (not counted)")
        full, inc = [], []
        for r in range(self.long_repeat):
            full.append(build(True))
            log(f"d. round {r + 1} full build: {full[-1]:.1f} s")
            daily = self.work / f"daily-{r}"
            day = dt.date(2023, 10, 13) + dt.timedelta(days=r)
            # consecutive days of the snapshot's seed: each continues the one before
            generate_daily(daily, day, scale=self.scale, seed=42, daily_ratings=daily_ratings)
            report = upload(
                daily,
                bucket=self.settings.bucket,
                prefix=self.settings.prefix,
                s3_client=self.stack.s3_client(),
                progress=False,
            )
            pipeline.load(list(report.uploaded_keys), settings=self.settings)
            inc.append(build(False))
            log(f"d. round {r + 1} incremental build: {inc[-1]:.1f} s")
        result = {
            "daily_ratings": daily_ratings,
            "full_seconds": median(full),
            "incremental_seconds": median(inc),
            "runs_full_seconds": full,
            "runs_incremental_seconds": inc,
        }
        result["ratios"] = {"dbt_incremental_vs_full": result["incremental_seconds"] / result["full_seconds"]}
        return result

    # -- e. DAG ---------------------------------------------------------------------------------------------------

    def dag(self) -> dict[str, Any]:
        r = compare(self.landing, self.work, self.long_repeat, log=log)
        return {
            "direct_seconds": r["median_seconds"]["direct"],
            "dag_seconds": r["median_seconds"]["dag"],
            "parts": r["median_parts"],
            "runs": r["runs"],
            "ratios": {"dag_vs_direct": r["ratio_dag_to_direct"]},
        }


def _duck_type(sql_type: str) -> str:
    t = sql_type.upper()
    if t.startswith("NUMBER(") and ",0)" not in t.replace(" ", ""):
        return "DOUBLE"
    if t.startswith(("NUMBER", "INT", "BIGINT")):
        return "BIGINT"
    if t.startswith(("FLOAT", "DOUBLE")):
        return "DOUBLE"
    return "VARCHAR"


def met(op: str, value: float, target: float) -> bool:
    """Whether the unrounded value meets the target."""
    return {"<=": value <= target, "<": value < target, ">=": value >= target}[op]


def render(result: dict[str, Any]) -> str:
    env = result["environment"]
    s = result["sections"]
    lines = [
        f"# Benchmarks at scale `{result['scale']}`",
        "",
        f"{result['date']} · total {result['seconds']:.0f} s · each case run once unmeasured first (warm-up), then "
        f"{result['repeat']} alternating round(s) (sections a, b, c) or {result['long_repeat']} (d, e) in rotating "
        "order; every time below is a median of rounds (each run's time is in the .json), every verdict judged on "
        "the unrounded ratio of medians.",
        "",
    ]
    if "a" in s:
        a = s["a"]
        lines += [
            f"**a. Upload** of `ratings.csv` ({a['file_mb']:,.1f} MB), each run in its own process "
            "(peak RSS: the highest of its runs):",
            "",
            "| case | time | throughput | peak RSS |",
            "| --- | ---: | ---: | ---: |",
        ]
        lines += [
            f"| {r['case']} | {r['seconds']:.2f} s | {r['mb_per_s']:.0f} MB/s | {r['peak_rss_mb']:.0f} MB |"
            for r in a["rows"]
        ]
        lines.append("")
    if "b" in s:
        b = s["b"]
        lines += [
            f"**b. Load** of every staged file ({b['rows_loaded']:,} rows): CALL {b['call_seconds']:.2f} s, bare COPY "
            f"statements {b['copy_seconds']:.2f} s, DuckDB read_csv of the local files {b['duckdb_seconds']:.2f} s.",
            "",
        ]
    if "c" in s:
        c = s["c"]
        lines += [
            "**c. Incremental CALLs**, each history on its own fresh stack:",
            "",
            "| files tracked | no-op CALL | one-new-file CALL |",
        ]
        lines += ["| ---: | ---: | ---: |"]
        lines += [
            f"| {int(n):,} | {h['noop_seconds']:.3f} s | {h['one_file_seconds']:.3f} s |"
            for n, h in c["histories"].items()
        ]
        lines.append("")
    if "d" in s:
        d = s["d"]
        lines += [
            f"**d. dbt**: full build {d['full_seconds']:.1f} s; incremental build after a daily file of "
            f"{d['daily_ratings']:,} ratings {d['incremental_seconds']:.1f} s.",
            "",
        ]
    if "e" in s:
        e = s["e"]
        lines += [
            f"**e. Airflow DAG**: one DAG run {e['dag_seconds']:.1f} s; the same steps run directly "
            f"{e['direct_seconds']:.1f} s.",
            "",
        ]
    lines += [
        "| target | ratio | unrounded ratio | target | verdict |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for section in s.values():
        for key, value in section.get("ratios", {}).items():
            label, op, target = TARGETS[key]
            shown = f"{value:.3f}" if key == "dbt_incremental_vs_full" else f"{value:.2f}"
            verdict = "met" if met(op, value, target) else "NOT met"
            lines.append(f"| {label} | {shown} | {value!r} | {op} {target:g} | {verdict} |")
    if "a" in s:
        peak = next(r for r in s["a"]["rows"] if r["case"] == "uploader (ours)")["peak_rss_mb"]
        verdict = "met" if met("<", peak, TARGET_PEAK_RSS_MB) else "NOT met"
        lines.append(
            f"| uploader peak RSS ({s['a']['file_mb']:,.1f} MB file) | {peak:.0f} MB | {peak!r} MB | "
            f"< {TARGET_PEAK_RSS_MB:g} MB for 1 GB | {verdict} |"
        )
    lines.append("")
    versions = ", ".join(f"{k} {env[k]}" for k in ("duckdb", "dbt", "airflow", "boto3"))
    lines += provenance_markdown(result["provenance"], env)
    lines[-1:-1] = [f"- Versions: {versions}."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="medium", help="generator scale (default: %(default)s)")
    parser.add_argument("--sections", default="abcde", help="which sections to run (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of sections a, b, c (default: %(default)s)")
    parser.add_argument("--long-repeat", type=int, default=3, help="rounds of sections d, e (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default: benchmarks/results)")
    args = parser.parse_args()
    if args.repeat < 1 or args.long_repeat < 1:
        parser.error("--repeat and --long-repeat must be at least 1")
    provenance = Provenance()
    started = time.perf_counter()
    sections: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="netflix-bench-") as tmp:
        bench = Bench(Path(tmp), args.scale, args.repeat, args.long_repeat)
        try:
            bench.start()
            for name, fn in (("a", bench.upload), ("b", bench.load), ("c", bench.incremental), ("d", bench.dbt)):
                if name in args.sections:
                    log(f"section {name}")
                    t0 = time.perf_counter()
                    sections[name] = fn()
                    sections[name]["section_seconds"] = time.perf_counter() - t0
                    log(f"section {name}: {json.dumps(sections[name]['ratios'])}")
        finally:
            bench.stop()
        if "e" in args.sections:
            log("section e")
            t0 = time.perf_counter()
            sections["e"] = bench.dag()
            sections["e"]["section_seconds"] = time.perf_counter() - t0
            log(f"section e: {json.dumps(sections['e']['ratios'])}")
    from importlib.metadata import version

    result = {
        "benchmark": "bench",
        "scale": args.scale,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "repeat": args.repeat,
        "long_repeat": args.long_repeat,
        "sections": sections,
        "verdicts": {
            key: met(TARGETS[key][1], value, TARGETS[key][2])
            for section in sections.values()
            for key, value in section["ratios"].items()
        },
        "provenance": provenance.finish(),
        "environment": environment(
            duckdb=version("duckdb"), dbt=version("dbt-core"), airflow=version("apache-airflow"), boto3=version("boto3")
        ),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"bench_{args.scale}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"bench_{args.scale}.md").write_text(render(result))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
