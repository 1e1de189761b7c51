"""`make bench`: the pipeline's performance side by side with the alternatives, at one scale, in one run.

Every figure is a ratio to a baseline measured in the same run on the same machine (absolute times vary from
machine to machine and from minute to minute; ratios much less). Sections:

a. upload of the ratings file: our uploader vs reading the whole file into memory and ``put_object`` vs boto3's
   ``upload_file`` with its defaults (the baseline) — time, throughput, peak RSS (each in its own process);
b. load of every staged file: ``CALL RAW.LOAD_RAW_FILES`` vs the bare ``COPY INTO`` statements the procedure runs
   (the baseline for the procedure's overhead) vs DuckDB ``read_csv`` of the local files into tables (the floor of
   this machine);
c. incremental cost: a no-op CALL (nothing new staged) and a CALL for one new file, with 10 and with 10,000 files
   already tracked (the 10-file figures are the baseline);
d. dbt: a full build vs an incremental build after a daily file of 100,000 ratings (the full build is the baseline);
e. the Airflow DAG run vs the same steps run directly (benchmarks/dag_vs_direct.py; direct is the baseline).

    python benchmarks/bench.py                       # scale medium (1M ratings), a few minutes
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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dag_vs_direct import free_port
from machine import environment

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
    "upload_peak_rss_mb_per_gb": ("uploader peak RSS for a 1 GB file (MB)", "<", 200.0),
    "call_vs_copy": ("CALL / bare COPY", "<=", 1.15),
    "call_vs_duckdb": ("CALL (whole load) / DuckDB read_csv", "<=", 2.0),
    "noop_10000_vs_10": ("no-op CALL, 10,000 vs 10 tracked", "<=", 1.5),
    "one_file_10000_vs_10": ("one-new-file CALL, 10,000 vs 10 tracked", "<=", 1.5),
    "dbt_incremental_vs_full": ("dbt incremental / full build", "<=", 0.15),
    "dag_vs_direct": ("DAG run / steps run directly", "<=", 1.3),
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


class Bench:
    def __init__(self, work: Path, scale: str) -> None:
        self.work = work
        self.scale = scale
        self.landing = work / "landing"
        settings = dataclasses.replace(
            Settings.from_env(), stack_dir=work / "stack", s3_port=free_port(), snowflake_port=free_port()
        )
        self.settings = settings
        self.stack = LocalStack(settings)
        self.env: dict[str, str] = {}

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
        }
        os.environ.update(self.env)
        proc = pipeline.deploy(self.settings, quiet=True)
        if proc.returncode != 0:
            raise SystemExit(proc.stdout + proc.stderr)

    def stop(self) -> None:
        self.stack.down()

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        # a bounded timeout: the emulator answers unsupported SQL with HTTP 500, which the connector retries
        with pipeline.connect(self.settings, network_timeout=900) as conn:
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
        import shutil

        shutil.rmtree(self.settings.stack_dir / "s3" / self.settings.bucket / self.settings.prefix, ignore_errors=True)

    # -- a. upload ------------------------------------------------------------------------------------------------

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
        rows = []
        for i, (name, script) in enumerate(scripts.items()):
            prefix = f"bench-upload/{i}-{time.time_ns()}/"
            proc = subprocess.Popen(
                [sys.executable, "-c", script, str(link), self.settings.bucket, prefix],
                env={**self.env, "PYTHONPATH": str(ROOT)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            out, err = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"upload benchmark {name} failed:\n{err[-3000:]}")
            measured = json.loads(out.strip().splitlines()[-1])
            seconds, peak_mb = measured["seconds"], measured["peak_mb"]
            rows.append(
                {
                    "case": name,
                    "seconds": round(seconds, 3),
                    "mb_per_s": round(size / MB / seconds, 1),
                    "peak_rss_mb": round(peak_mb, 1),
                }
            )
            log(f"a. {name}: {seconds:.2f} s, {size / MB / seconds:.0f} MB/s, peak RSS {peak_mb:.0f} MB")
        by = {r["case"]: r for r in rows}
        ours, base, whole = (
            by["uploader (ours)"],
            by["boto3 upload_file (defaults)"],
            by["whole file in memory + put_object"],
        )
        return {
            "file_mb": round(size / MB, 1),
            "rows": rows,
            "ratios": {
                "upload_vs_upload_file": round(ours["mb_per_s"] / base["mb_per_s"], 2),
                "upload_vs_whole_file": round(ours["mb_per_s"] / whole["mb_per_s"], 2),
            },
        }

    # -- b. load --------------------------------------------------------------------------------------------------

    def load(self, rounds: int = 2) -> dict[str, Any]:
        from snowflake.procedures import load_raw_files as proc

        self.reset_raw()
        self.clear_stage()
        keys = self.upload_landing()
        sources: dict[str, list[str]] = {}
        for key in keys:
            parsed = contracts.parse_stage_key(key)
            if parsed is not None:
                sources.setdefault(parsed.source_key, []).append(key)
        copies = [
            proc.copy_statement(contracts.CONTRACTS[contracts.parse_stage_key(objs[0]).dataset], sorted(objs), "bench")
            for objs in sources.values()
        ]
        copy_times, call_times = [], []
        rows_loaded = 0
        for _ in range(rounds):
            self.reset_raw()
            seconds, _ = timed(lambda: [self.sql(c) for c in copies])
            copy_times.append(seconds)
            copied = self._raw_rows()
            self.reset_raw()
            seconds, summary = timed(lambda: pipeline.load(keys, settings=self.settings))
            call_times.append(seconds)
            rows_loaded = summary["totals"]["rows_loaded"]
            if rows_loaded != copied:
                raise SystemExit(f"CALL loaded {rows_loaded:,} rows, bare COPY {copied:,}")
        duck = self._duckdb_floor()
        result = {
            "rows_loaded": rows_loaded,
            "copy_seconds": round(statistics.median(copy_times), 3),
            "call_seconds": round(statistics.median(call_times), 3),
            "duckdb_seconds": round(duck, 3),
        }
        result["ratios"] = {
            "call_vs_copy": round(result["call_seconds"] / result["copy_seconds"], 2),
            "call_vs_duckdb": round(result["call_seconds"] / result["duckdb_seconds"], 2),
        }
        log(f"b. {result}")
        return result

    def _raw_rows(self) -> int:
        return sum(
            int(self.sql(f"SELECT COUNT(*) FROM {c.qualified_raw_table}")[0][0]) for c in contracts.CONTRACTS.values()
        )

    def _duckdb_floor(self) -> float:
        """Each landing file into a typed DuckDB table with read_csv: the machine's floor for parsing and storing."""
        import duckdb

        con = duckdb.connect(str(self.work / "floor.duckdb"))
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

    def incremental(self, histories: tuple[int, ...] = (10, 10_000), repeat: int = 3) -> dict[str, Any]:
        out: dict[str, Any] = {"histories": {}}
        for n in histories:
            self.reset_raw()
            self.clear_stage()
            self._fake_history(n)
            noop = []
            for _ in range(repeat):
                seconds, summary = timed(lambda: pipeline.load(settings=self.settings))
                if summary["totals"]["files"]:
                    raise SystemExit(f"the no-op CALL loaded something: {summary['message']}")
                noop.append(seconds)
            one = []
            for i in range(repeat):
                key = self._put_new_ratings_file(f"inc{n}x{i}")
                seconds, summary = timed(lambda key=key: pipeline.load([key], settings=self.settings))
                if summary["totals"]["loaded"] != 1:
                    raise SystemExit(f"the one-file CALL did not load one file: {summary['message']}")
                one.append(seconds)
            out["histories"][n] = {
                "noop_seconds": round(statistics.median(noop), 3),
                "one_file_seconds": round(statistics.median(one), 3),
            }
            log(f"c. {n} tracked: {out['histories'][n]}")
        lo, hi = out["histories"][histories[0]], out["histories"][histories[-1]]
        out["ratios"] = {
            "noop_10000_vs_10": round(hi["noop_seconds"] / lo["noop_seconds"], 2),
            "one_file_10000_vs_10": round(hi["one_file_seconds"] / lo["one_file_seconds"], 2),
        }
        return out

    def _fake_history(self, n: int) -> None:
        """n small ratings files already staged and tracked as LOADED, one uploaded every hour until an hour ago (an
        hourly feed: 10,000 files are 14 months of it). Written straight into the S3 server's data folder, which is
        what the server serves, and one multi-row INSERT per 1,000 tracking rows."""
        import hashlib

        bucket_dir = self.settings.stack_dir / "s3" / self.settings.bucket
        now = dt.datetime.now(dt.UTC)
        rows = []
        for i in range(n):
            body = f"userId,movieId,rating,timestamp\n{i + 1},1,4.0,1700000000\n".encode()
            sha = hashlib.sha256(body + str(n).encode()).hexdigest()
            uploaded = now - dt.timedelta(hours=n - i)
            name = f"ratings_{uploaded:%Y%m%d}.csv"
            key = contracts.stage_key("ratings", uploaded.strftime(contracts.UPLOADED_AT_FORMAT), sha, name)
            path = bucket_dir / self.settings.prefix / key
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
                + ", ".join(rows[start : start + 1000])
            )

    def _put_new_ratings_file(self, tag: str) -> str:
        import hashlib

        body = f"userId,movieId,rating,timestamp\n7,{abs(hash(tag)) % 1000 + 1},3.5,1700000000\n".encode()
        sha = hashlib.sha256(body + tag.encode()).hexdigest()
        uploaded = dt.datetime.now(dt.UTC).strftime(contracts.UPLOADED_AT_FORMAT)
        key = contracts.stage_key("ratings", uploaded, sha, "ratings_20240101.csv")
        self.stack.s3_client().put_object(Bucket=self.settings.bucket, Key=self.settings.prefix + key, Body=body)
        return key

    # -- d. dbt ---------------------------------------------------------------------------------------------------

    def dbt(self, daily_ratings: int = 100_000) -> dict[str, Any]:
        from netflix_elt.generate import generate_daily
        from netflix_elt.transform import transform

        self.reset_raw()
        self.clear_stage()
        pipeline.load(self.upload_landing(), settings=self.settings)
        full_seconds, full = timed(lambda: transform(full_refresh=True, quiet=True))
        if not full["success"]:
            raise SystemExit(f"dbt full build failed: {full['failures'] or full['error']}")
        daily = self.work / "daily"
        generate_daily(daily, dt.date(2023, 10, 13), scale=self.scale, seed=42, daily_ratings=daily_ratings)
        from uploader import upload

        report = upload(
            daily,
            bucket=self.settings.bucket,
            prefix=self.settings.prefix,
            s3_client=self.stack.s3_client(),
            progress=False,
        )
        pipeline.load(list(report.uploaded_keys), settings=self.settings)
        inc_seconds, inc = timed(lambda: transform(quiet=True))
        if not inc["success"]:
            raise SystemExit(f"dbt incremental build failed: {inc['failures'] or inc['error']}")
        result = {
            "daily_ratings": daily_ratings,
            "full_seconds": round(full_seconds, 2),
            "incremental_seconds": round(inc_seconds, 2),
            "ratios": {"dbt_incremental_vs_full": round(inc_seconds / full_seconds, 3)},
        }
        log(f"d. {result}")
        return result

    # -- e. DAG ---------------------------------------------------------------------------------------------------

    def dag(self) -> dict[str, Any]:
        import dag_vs_direct

        runs = {}
        for mode in ("direct", "dag"):
            runs[mode] = dag_vs_direct.run_once(mode, self.landing, self.work)
            log(f"e. {mode}: {runs[mode]['seconds']} s {runs[mode]['parts']}")
        return {
            "direct_seconds": runs["direct"]["seconds"],
            "dag_seconds": runs["dag"]["seconds"],
            "parts": {m: r["parts"] for m, r in runs.items()},
            "ratios": {"dag_vs_direct": round(runs["dag"]["seconds"] / runs["direct"]["seconds"], 2)},
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


def verdict(key: str, value: float) -> str:
    _, op, target = TARGETS[key]
    ok = {"<=": value <= target, "<": value < target, ">=": value >= target}[op]
    return "met" if ok else "NOT met"


def render(result: dict[str, Any]) -> str:
    env = result["environment"]
    s = result["sections"]
    lines = [
        f"# Benchmarks at scale `{result['scale']}`",
        "",
        f"{result['date']} · {env['cpu_count']} CPU ({env['cpu_model']}), {env['memory_gib']} GiB · "
        f"total {result['seconds']:.0f} s · `python benchmarks/bench.py --scale {result['scale']}`",
        "",
    ]
    if "a" in s:
        a = s["a"]
        lines += [
            f"**a. Upload** of `ratings.csv` ({a['file_mb']:,} MB), each in its own process:",
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
        lines += ["**c. Incremental CALLs**:", "", "| files tracked | no-op CALL | one-new-file CALL |"]
        lines += ["| ---: | ---: | ---: |"]
        lines += [
            f"| {int(n):,} | {h['noop_seconds']:.2f} s | {h['one_file_seconds']:.2f} s |"
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
    lines += ["| target | ratio | target | verdict |", "| --- | ---: | ---: | --- |"]
    for section in s.values():
        for key, value in section.get("ratios", {}).items():
            label, op, target = TARGETS[key]
            lines.append(f"| {label} | {value:g} | {op} {target:g} | {verdict(key, value)} |")
    if "a" in s:
        peak = next(r for r in s["a"]["rows"] if r["case"] == "uploader (ours)")["peak_rss_mb"]
        lines.append(
            f"| uploader peak RSS ({s['a']['file_mb']:,} MB file) | {peak:.0f} MB | < 200 MB for 1 GB | "
            f"{'met' if peak < 200 else 'NOT met'} |"
        )
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="medium", help="generator scale (default: %(default)s)")
    parser.add_argument("--sections", default="abcde", help="which sections to run (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default: benchmarks/results)")
    args = parser.parse_args()
    started = time.perf_counter()
    sections: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="netflix-bench-") as tmp:
        bench = Bench(Path(tmp), args.scale)
        bench.start()
        try:
            for name, fn in (("a", bench.upload), ("b", bench.load), ("c", bench.incremental), ("d", bench.dbt)):
                if name in args.sections:
                    log(f"section {name}")
                    sections[name] = fn()
        finally:
            bench.stop()
        if "e" in args.sections:
            log("section e")
            sections["e"] = bench.dag()
    from importlib.metadata import version

    result = {
        "benchmark": "bench",
        "scale": args.scale,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "sections": sections,
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
