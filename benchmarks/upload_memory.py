"""Benchmark the uploader on a ~1 GB ratings file: peak memory and throughput, whole and split into gzip parts.

Generates a ratings.csv of about 1 GB with the synthetic generator (ML-32M proportions, 37.5M ratings by default),
starts a local stack (rclone S3 server + Snowflake emulator) on free ports in a temporary directory, and runs
``python -m uploader`` on it in a child process three times, each to its own prefix so none is skipped:

- ``dry run`` (baseline): checks the header, hashes the file (sha256 + record count) and looks up the index, uploads
  nothing: the interpreter, boto3 and one streaming pass over the file;
- ``whole``: split threshold above the file size, so the file goes as one object by boto3 multipart upload
  (16 MiB parts, 4 threads);
- ``split``: the default split threshold and part size (256 MiB / 128 MiB): the file is cut at record ends into
  gzip parts, compressed while read, each part uploaded while the next is compressed.

Peak RSS is the kernel's maximum resident set size of each child (``os.wait4``). The uploaded objects are checked:
the whole object's size equals the file's, and the split parts' row counts add up to the generated row count.
Results go to benchmarks/results/upload_memory.md and upload_memory.json.

    python benchmarks/upload_memory.py                    # 37.5M ratings, about 1 GB
    python benchmarks/upload_memory.py --ratings 2000000  # a quick run
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from machine import environment

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netflix_elt.config import Settings  # noqa: E402
from netflix_elt.stack import LocalStack  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TARGET_RSS_MB = 200
MiB = 1 << 20
# The uploader's defaults (uploader.core), repeated here so that this process does not import boto3: a child process
# starts with its parent's resident memory counted in its own maximum RSS. main() checks they still agree.
DEFAULT_SPLIT_THRESHOLD = 256 * MiB
DEFAULT_PART_SIZE = 128 * MiB


@dataclass
class Run:
    mode: str
    command: str
    exit_code: int
    seconds: float  # wall time of the child process, interpreter start included
    peak_rss_mb: float  # kernel's maximum resident set size of the child
    sampled_peak_rss_mb: float  # highest RSS seen by sampling the child every 20 ms
    file_bytes: int
    objects: int
    uploaded_bytes: int  # bytes sent (compressed size for split parts)
    parts: int
    part_size: int | None
    rows: int | None
    upload_seconds: float  # time the uploader reports for the upload phase (split and compress included)
    mb_per_s_wall: float  # file MB (10^6 bytes) per wall second
    mb_per_s_upload: float | None  # file MB per upload-phase second
    check: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_child(
    mode: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path
) -> tuple[int, float, float, float, str]:
    """Run the uploader in a child process.

    Returns exit code, wall seconds, peak RSS in MB by the kernel (``wait4``: the child's maximum resident set, which
    includes what the benchmark process had resident when it forked the child), peak RSS in MB sampled every 20 ms
    with psutil (the uploader alone), and stdout.
    """
    import psutil

    with open(log, "w") as err, tempfile.TemporaryFile("w+") as out:
        began = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err)
        sampled = 0
        with contextlib.suppress(psutil.Error):
            watched = psutil.Process(proc.pid)
            # WNOWAIT: look without reaping, so that wait4 below still gets the child's resource usage
            while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                with contextlib.suppress(psutil.Error):
                    sampled = max(sampled, watched.memory_info().rss)
                time.sleep(0.02)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - began
        out.seek(0)
        stdout = out.read()
    code = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss / 1024  # Linux reports KiB
    print(
        f"{mode}: exit {code}, {seconds:.1f} s, peak RSS {peak:,.0f} MB (sampled {sampled / MiB:,.0f} MB)", flush=True
    )
    if code != 0:
        print(log.read_text(), file=sys.stderr)
    return code, seconds, peak, sampled / MiB, stdout


def count_lines(path: Path) -> int:
    lines = 0
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            lines += chunk.count(b"\n")
    return lines


def to_markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        "# Uploader benchmark: memory and throughput",
        "",
        f"`python benchmarks/upload_memory.py --ratings {report['ratings']}`: a generated ratings.csv of "
        f"{report['file_bytes']:,} bytes ({report['rows']:,} rows) uploaded by `python -m uploader` in a child "
        "process to a local rclone S3 server on the same machine, once per mode, each to its own prefix.",
        "",
        f"*Peak RSS* is the child's maximum resident set size as the kernel accounts it (`wait4`), target < "
        f"{TARGET_RSS_MB} MB; it includes the {report['benchmark_process_rss_mb']:.0f} MB the benchmark process had "
        "resident when it started the child. *Sampled* is the highest RSS seen reading the child's memory every "
        "20 ms. *MB/s* is the file's size (10^6 bytes) per second: *wall* over the whole child process (start-up, "
        "header check, sha256 pass, upload), *upload* over the upload phase the uploader reports (splitting and gzip "
        "included).",
        "",
        "| mode | what the child does | peak RSS MB | sampled MB | wall s | MB/s wall | upload s | MB/s upload "
        "| objects | bytes sent | check |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["runs"]:
        if r["mode"] == "dry run":
            what = "check + sha256 and row count + index lookup; uploads nothing (baseline)"
        elif r["mode"] == "whole":
            what = "one object, boto3 multipart upload (16 MiB parts, 4 threads)"
        else:
            what = f"gzip parts of {r['part_size'] / MiB:.4g} MiB uncompressed (level 1), cut at record ends"
        up = "" if r["mb_per_s_upload"] is None else f"{r['mb_per_s_upload']:.0f}"
        lines.append(
            f"| {r['mode']} | {what} | {r['peak_rss_mb']:,.0f} | {r['sampled_peak_rss_mb']:,.0f} "
            f"| {r['seconds']:.1f} | {r['mb_per_s_wall']:.0f} | {r['upload_seconds']:.1f} | {up} | {r['objects']} "
            f"| {r['uploaded_bytes']:,} | {r['check']} |"
        )
    verdict = "met" if report["max_peak_rss_mb"] < TARGET_RSS_MB else "NOT met"
    lines += [
        "",
        f"Highest peak RSS: {report['max_peak_rss_mb']:,.0f} MB (target < {TARGET_RSS_MB} MB: {verdict}). Checks: "
        "the dry run counted every row; the whole object's size equals the file's; the split parts' row counts add "
        "up to the file's rows and their sizes to the bytes sent.",
        "",
        f"Generating the file took {report['generate_seconds']:.1f} s (not measured). "
        f"Machine: {env['cpu_model']}, {env['cpu_count']} cores, {env['memory_gib']} GiB RAM; {env['platform']}; "
        f"Python {env['python']}, boto3 {env['boto3']}; {report['date']}. The S3 server runs on the same two cores "
        "and writes to the same disk, so throughput is bounded by local CPU and disk, not by a network.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--ratings", type=int, default=37_500_000, help="ratings rows to generate (default: %(default)s, ~1 GB)"
    )
    parser.add_argument(
        "--generate-memory", default="6GB", help="DuckDB memory limit for generating the file (default: %(default)s)"
    )
    parser.add_argument("--tmp", type=Path, default=None, help="where to work (default: system temp)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="results directory (default: %(default)s)")
    args = parser.parse_args(argv)

    import psutil

    work = Path(tempfile.mkdtemp(prefix="upload-bench-", dir=args.tmp))
    stack: LocalStack | None = None
    runs: list[Run] = []
    try:
        # the generator runs in its own process, so this one stays small: a forked child starts with its parent's
        # resident pages counted in its own maximum RSS
        began = time.perf_counter()
        gen = [sys.executable, "-m", "netflix_elt.generate", "--scale", "ml-32m", "--ratings", str(args.ratings)]
        gen += ["--memory-limit", args.generate_memory]  # the ratings sort needs more than the 2GB default
        subprocess.run([*gen, "--out", str(work / "generated")], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        generate_seconds = time.perf_counter() - began
        landing = work / "landing"
        landing.mkdir()
        source = landing / "ratings.csv"
        shutil.move(str(work / "generated" / "ratings.csv"), source)
        shutil.rmtree(work / "generated")
        rows = count_lines(source) - 1  # generated ratings have no quoted fields: one line per row
        size = source.stat().st_size
        print(f"generated {source}: {rows:,} rows, {size:,} bytes in {generate_seconds:.1f} s", flush=True)

        settings = dataclasses.replace(
            Settings.from_env(), stack_dir=work / "stack", s3_port=free_port(), snowflake_port=free_port()
        )
        stack = LocalStack(settings)
        stack.up()
        env = {**os.environ, **stack.env(), "PYTHONPATH": str(ROOT)}
        base = [sys.executable, "-m", "uploader", str(landing), "--bucket", settings.bucket, "--json", "--no-progress"]
        split_threshold = min(DEFAULT_SPLIT_THRESHOLD, size // 2)  # the defaults, unless the file is small
        part_size = min(DEFAULT_PART_SIZE, max(size // 4, 1))
        split_options = (
            [] if split_threshold == DEFAULT_SPLIT_THRESHOLD else ["--split-threshold", str(split_threshold)]
        )
        split_options += [] if part_size == DEFAULT_PART_SIZE else ["--part-size", str(part_size)]
        modes = {
            "dry run": ["--prefix", "bench-dry/", "--dry-run"],
            "whole": ["--prefix", "bench-whole/", "--split-threshold", str(size + 1)],
            "split": ["--prefix", "bench-split/", *split_options],
        }
        parent_rss_mb = psutil.Process().memory_info().rss / MiB
        reports: dict[str, dict[str, Any]] = {}
        for mode, extra in modes.items():
            argv_ = base + extra
            log = work / f"{mode.replace(' ', '-')}.log"
            code, seconds, peak, sampled, stdout = run_child(mode, argv_, env, work, log)
            report = json.loads(stdout) if code == 0 else {"files": [], "totals": {}, "prefix": ""}
            reports[mode] = report
            f = report["files"][0] if report["files"] else {}
            totals = report["totals"]
            upload_seconds = float(totals.get("upload_seconds") or 0.0)
            runs.append(
                Run(
                    mode=mode,
                    command="python -m uploader LANDING " + " ".join(argv_[4:]),
                    exit_code=code,
                    seconds=round(seconds, 2),
                    peak_rss_mb=round(peak, 1),
                    sampled_peak_rss_mb=round(sampled, 1),
                    file_bytes=size,
                    objects=0 if mode == "dry run" else len(f.get("keys", [])),
                    uploaded_bytes=int(totals.get("uploaded_bytes") or 0),
                    parts=int(f.get("parts") or 0),
                    part_size=part_size if mode == "split" else None,
                    rows=f.get("rows"),
                    upload_seconds=round(upload_seconds, 2),
                    mb_per_s_wall=round(size / 1e6 / seconds, 1),
                    mb_per_s_upload=round(size / 1e6 / upload_seconds, 1) if upload_seconds > 0 else None,
                    check="" if code == 0 else f"FAILED (exit {code})",
                )
            )

        s3 = stack.s3_client()
        for run in runs:
            if run.check:
                continue
            report = reports[run.mode]
            f = report["files"][0] if report["files"] else {}
            keys = [report["prefix"] + k for k in f.get("keys", [])]
            if run.mode == "dry run":
                ok = f.get("status") == "would upload" and f.get("rows") == rows
            elif run.mode == "whole":
                ok = (
                    f.get("parts") == 0 and s3.head_object(Bucket=settings.bucket, Key=keys[0])["ContentLength"] == size
                )
            else:
                sizes = [s3.head_object(Bucket=settings.bucket, Key=k)["ContentLength"] for k in keys]
                ok = f.get("parts", 0) > 1 and sum(f.get("part_rows", [])) == rows
                ok = ok and sum(sizes) == run.uploaded_bytes
            run.check = "ok" if ok else "FAILED"
    finally:
        if stack is not None:
            stack.down()
        shutil.rmtree(work, ignore_errors=True)

    import boto3

    from uploader import core

    assert (core.DEFAULT_SPLIT_THRESHOLD, core.DEFAULT_PART_SIZE) == (DEFAULT_SPLIT_THRESHOLD, DEFAULT_PART_SIZE)
    result = {
        "ratings": args.ratings,
        "rows": rows,
        "file_bytes": size,
        "generate_seconds": round(generate_seconds, 1),
        "date": dt.datetime.now(dt.UTC).date().isoformat(),
        "target_peak_rss_mb": TARGET_RSS_MB,
        "max_peak_rss_mb": max(r.peak_rss_mb for r in runs),
        "benchmark_process_rss_mb": round(parent_rss_mb, 1),
        "environment": environment(boto3=boto3.__version__),
        "runs": [asdict(r) for r in runs],
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "upload_memory.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.results / "upload_memory.md").write_text(to_markdown(result), encoding="utf-8")
    ok = all(r.check == "ok" for r in runs) and result["max_peak_rss_mb"] < TARGET_RSS_MB
    print(f"peak RSS {result['max_peak_rss_mb']:,.0f} MB; wrote {args.results / 'upload_memory.md'} and .json")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
