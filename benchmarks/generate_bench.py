"""Benchmark the synthetic data generator: wall time, peak memory and byte-for-byte reproducibility.

Runs `python -m netflix_elt.generate` twice with the same scale and seed, each in its own process and output
directory, measures each run's wall time and peak resident memory (from the kernel's accounting of that child
process), checks that the two runs wrote identical files (sha256), and records the results in
benchmarks/results/generate.md and benchmarks/results/generate.json, with the commit measured, the product files
that differed from it, the machine and the load average during the run (benchmarks/machine.py).

    python benchmarks/generate_bench.py                  # ml-32m, seed 42
    python benchmarks/generate_bench.py --scale small
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from machine import Provenance, environment, provenance_markdown

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SCALES = ("tiny", "small", "medium", "ml-25m", "ml-32m")
PROGRESS_LINE = re.compile(r"^wrote (?P<path>\S+)\s+(?P<rows>[\d,]+) rows\s+.*\s(?P<seconds>[\d.]+) s$")


@dataclass
class FileStats:
    name: str
    rows: int
    bytes: int
    sha256: str
    seconds: float | None  # time the generator reported for writing this file


@dataclass
class Run:
    run: int
    seconds: float
    peak_rss_mb: float
    exit_code: int
    files: list[FileStats]


def file_stats(path: Path, seconds: float | None) -> FileStats:
    digest = hashlib.sha256()
    lines = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
            lines += chunk.count(b"\n")
    return FileStats(path.name, lines - 1, path.stat().st_size, digest.hexdigest(), seconds)


def run_once(index: int, scale: str, seed: int, threads: int, out: Path) -> Run:
    log = out.parent / f"{out.name}.log"
    cmd = [sys.executable, "-m", "netflix_elt.generate", "--scale", scale, "--seed", str(seed), "--out", str(out)]
    cmd += ["--threads", str(threads)]
    print(f"run {index}: {' '.join(cmd)}", flush=True)
    with open(log, "w") as sink:
        began = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - began
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(encoding="utf-8")
    if proc.returncode != 0:
        print(text, file=sys.stderr)
    reported = {}
    for line in text.splitlines():
        m = PROGRESS_LINE.match(line)
        if m:
            reported[Path(m["path"]).name] = float(m["seconds"])
    files = [file_stats(p, reported.get(p.name)) for p in sorted(out.iterdir()) if p.is_file()]
    peak = usage.ru_maxrss / 1024  # Linux reports KiB
    print(f"run {index}: exit {proc.returncode}, {seconds:.1f} s, peak RSS {peak:,.0f} MB", flush=True)
    return Run(index, round(seconds, 2), round(peak, 1), proc.returncode, files)


def to_markdown(report: dict) -> str:
    env = report["environment"]
    runs = report["runs"]
    first = runs[0]["files"]
    rows_per_file = "<br>".join(f"{f['name']}: {f['rows']:,}" for f in first)
    lines = [
        "# Generator benchmark",
        "",
        f"`python benchmarks/generate_bench.py --scale {report['scale']} --seed {report['seed']}`: the generator ran "
        f"{len(runs)} times as `python -m netflix_elt.generate` in separate processes, with the same scale and seed, "
        "into separate directories. Peak RSS is the maximum resident set size of each generating process. "
        "Identical means every file of every run has the same sha256.",
        "",
        "| run | scale | files | rows per file | bytes | seconds | peak RSS MB | identical | date | machine cores |",
        "|---:|---|---:|---|---:|---:|---:|---|---|---:|",
    ]
    for r in runs:
        total = sum(f["bytes"] for f in r["files"])
        lines.append(
            f"| {r['run']} | {report['scale']} | {len(r['files'])} | {rows_per_file} | {total:,} | {r['seconds']:.1f} "
            f"| {r['peak_rss_mb']:,.0f} | {'yes' if report['identical'] else 'no'} | {report['date']} "
            f"| {env['cpu_count']} |"
        )
    lines += [
        "",
        "Files of run 1 (seconds as reported by the generator for writing each file):",
        "",
        "| file | rows | bytes | seconds | sha256 |",
        "|---|---:|---:|---:|---|",
    ]
    for f in first:
        seconds = "" if f["seconds"] is None else f"{f['seconds']:.1f}"
        lines.append(f"| {f['name']} | {f['rows']:,} | {f['bytes']:,} | {seconds} | `{f['sha256'][:16]}…` |")
    lines += [
        "",
        f"DuckDB {env['duckdb']}, NumPy {env['numpy']}; generator threads {report['threads']}.",
        "",
    ]
    lines += provenance_markdown(report["provenance"], env)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", choices=SCALES, default="ml-32m", help="generator scale (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=42, help="generator seed (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="generator DuckDB threads (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=2, help="number of runs to compare (default: %(default)s)")
    parser.add_argument("--tmp", type=Path, default=None, help="where to write the runs' files (default: system temp)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="results directory (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.runs < 2:
        parser.error("--runs must be at least 2 to check reproducibility")

    import duckdb
    import numpy

    provenance = Provenance()
    work = Path(tempfile.mkdtemp(prefix="generate-bench-", dir=args.tmp))
    try:
        runs = [run_once(i, args.scale, args.seed, args.threads, work / f"run{i}") for i in range(1, args.runs + 1)]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    signatures = [[(f.name, f.sha256) for f in r.files] for r in runs]
    identical = all(r.exit_code == 0 for r in runs) and all(s == signatures[0] for s in signatures[1:])
    report = {
        "scale": args.scale,
        "seed": args.seed,
        "threads": args.threads,
        "date": dt.datetime.now(dt.UTC).date().isoformat(),
        "identical": identical,
        "provenance": provenance.finish(),
        "environment": environment(duckdb=duckdb.__version__, numpy=numpy.__version__),
        "runs": [asdict(r) for r in runs],
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "generate.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.results / "generate.md").write_text(to_markdown(report), encoding="utf-8")
    print(f"identical: {'yes' if identical else 'no'}; wrote {args.results / 'generate.md'} and generate.json")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
