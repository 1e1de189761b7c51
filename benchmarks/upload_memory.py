"""Benchmark the uploader on a ~1 GB ratings file: peak memory and throughput, whole and split into gzip parts,
against boto3's own ``upload_file``.

Generates a ratings.csv of about 1 GB with the synthetic generator (ML-32M proportions, 37.5M ratings by default),
starts a local stack (rclone S3 server + Snowflake emulator) on free ports in a temporary directory, and uploads the
file in a child process per run, each run to its own prefix so none is skipped:

- ``dry run``: ``python -m uploader --dry-run``: checks the header, hashes the file (sha256 + record count) and
  looks up the index, uploads nothing: the interpreter, boto3 and one streaming pass over the file;
- ``whole``: ``python -m uploader`` with the split threshold above the file size, so the file goes as one object by
  boto3 multipart upload (16 MiB parts, 4 threads);
- ``split``: ``python -m uploader`` with its defaults (split threshold 256 MiB, parts of 128 MiB): the file is cut at
  record ends into gzip parts, compressed while read, each part uploaded while the next is compressed;
- ``boto3 upload_file`` (the baseline): a Python child that creates a boto3 client and calls ``upload_file`` with
  boto3's defaults (8 MiB parts, 10 threads).

Every mode runs once unmeasured first (a warm-up: the file in the page cache), then the modes alternate over
``--repeat`` rounds (5 by default) in an order that rotates each round; times are medians of the rounds, peak RSS
the highest of all runs. Peak RSS is the kernel's maximum resident set size of each child (``os.wait4``). The
uploaded objects are checked, then deleted: the whole object's size equals the file's, and the split parts' row
counts add up to the generated row count. Ratios (throughput over the whole child process, interpreter start
included, against boto3 ``upload_file``) are judged on their unrounded values. The results record the commit
measured, the product files that differed from it, the machine and the load average (benchmarks/machine.py).
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
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from machine import Provenance, environment, provenance_markdown

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netflix_elt.config import Settings  # noqa: E402
from netflix_elt.stack import LocalStack  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TARGET_RSS_MB = 200
TARGET_VS_UPLOAD_FILE = 1.0  # the uploader's throughput at least boto3 upload_file's
MiB = 1 << 20
# The uploader's defaults (uploader.core), repeated here so that this process does not import boto3: a child process
# starts with its parent's resident memory counted in its own maximum RSS. main() checks they still agree.
DEFAULT_SPLIT_THRESHOLD = 256 * MiB
DEFAULT_PART_SIZE = 128 * MiB
MODES = ("boto3 upload_file", "split", "whole", "dry run")
BASELINE = "boto3 upload_file"
UPLOAD_FILE_SCRIPT = (
    "import json, os, sys, time, boto3\n"
    "t = time.perf_counter()\n"
    "s3 = boto3.client('s3', endpoint_url=os.environ['AWS_ENDPOINT_URL'], region_name='us-east-1')\n"
    "s3.upload_file(sys.argv[1], sys.argv[2], sys.argv[3])\n"
    "print(json.dumps({'upload_seconds': time.perf_counter() - t}))\n"
)


@dataclass
class Run:
    mode: str
    round: int  # 0: the warm-up, not counted in the medians
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
    upload_seconds: float  # the upload phase (the uploader's report; boto3: client creation and upload_file)
    check: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_child(
    mode: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path
) -> tuple[int, float, float, float, str]:
    """Run one upload in a child process.

    Returns exit code, wall seconds, peak RSS in MB by the kernel (``wait4``: the child's maximum resident set, which
    includes what the benchmark process had resident when it forked the child), peak RSS in MB sampled every 20 ms
    with psutil (the child alone), and stdout.
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
        f"{mode}: exit {code}, {seconds:.2f} s, peak RSS {peak:,.0f} MB (sampled {sampled / MiB:,.0f} MB)", flush=True
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


WHAT = {
    "dry run": "`python -m uploader --dry-run`: check + sha256 and row count + index lookup; uploads nothing",
    "whole": "`python -m uploader`, one object: boto3 multipart upload (16 MiB parts, 4 threads)",
    "boto3 upload_file": "boto3 `upload_file` with its defaults (8 MiB parts, 10 threads) in a Python child (baseline)",
}


def to_markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        "# Uploader benchmark: memory and throughput",
        "",
        f"{report['date']} · total {report['seconds']:.0f} s · `python benchmarks/upload_memory.py --ratings "
        f"{report['ratings']}`: a generated ratings.csv of {report['file_bytes']:,} bytes ({report['rows']:,} rows) "
        "uploaded in a child process per run to a local rclone S3 server on the same machine, each run to its own "
        f"prefix. Each mode ran once unmeasured first (warm-up), then {report['repeat']} round(s) in rotating order; "
        "times are medians of the rounds, peak RSS the highest of all runs of the mode.",
        "",
        f"*Peak RSS* is the child's maximum resident set size as the kernel accounts it (`wait4`), target < "
        f"{TARGET_RSS_MB} MB; it includes the {report['benchmark_process_rss_mb']:.0f} MB the benchmark process had "
        "resident when it started the child. *Sampled* is the highest RSS seen reading the child's memory every "
        "20 ms. *MB/s* is the file's size (10^6 bytes) per second: *wall* over the whole child process (start-up, "
        "header check, sha256 pass, upload), *upload* over the upload phase (the uploader's report, splitting and "
        "gzip included; for boto3, creating the client and `upload_file`).",
        "",
        "| mode | what the child does | peak RSS | sampled | wall | MB/s wall | upload | MB/s upload "
        "| objects | bytes sent | check |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for mode, m in report["modes"].items():
        what = WHAT.get(mode) or (
            f"`python -m uploader` (defaults): gzip parts of {m['part_size'] / MiB:.4g} MiB uncompressed (level 1), "
            "cut at record ends"
        )
        up = "" if m["mb_per_s_upload"] is None else f"{m['mb_per_s_upload']:.0f} MB/s"
        lines.append(
            f"| {mode} | {what} | {m['peak_rss_mb']:,.0f} MB | {m['sampled_peak_rss_mb']:,.0f} MB "
            f"| {m['seconds']:.2f} s | {m['mb_per_s_wall']:.0f} MB/s | {m['upload_seconds']:.2f} s | {up} "
            f"| {m['objects']} | {m['uploaded_bytes']:,} | {m['check']} |"
        )
    verdict = "met" if report["max_peak_rss_mb"] < TARGET_RSS_MB else "NOT met"
    lines += [
        "",
        f"Highest peak RSS of the uploader: {report['max_peak_rss_mb']:,.0f} MB (target < {TARGET_RSS_MB} MB: "
        f"{verdict}). Checks, on every run: the dry run counted every row; the whole object's size equals the "
        "file's; the split parts' row counts add up to the file's rows and their sizes to the bytes sent.",
        "",
        "| throughput (wall) against boto3 `upload_file` | ratio | unrounded ratio | target | verdict |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for mode, ratio in report["ratios_vs_upload_file"].items():
        target = f">= {TARGET_VS_UPLOAD_FILE:g}" if mode == "split" else ""
        verdict = ("met" if ratio >= TARGET_VS_UPLOAD_FILE else "NOT met") if mode == "split" else ""
        lines.append(f"| uploader {mode} | {ratio:.2f} | {ratio!r} | {target} | {verdict} |")
    lines += [
        "",
        f"Generating the file took {report['generate_seconds']:.1f} s (not measured). The S3 server runs on the same "
        "machine and writes to the same disk, so throughput is bounded by local CPU and disk, not by a network. "
        f"boto3 {env['boto3']}.",
        "",
    ]
    lines += provenance_markdown(report["provenance"], env)
    lines += [
        "## Every run",
        "",
        "| round | mode | wall | upload | peak RSS |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    for r in report["runs"]:
        lines.append(
            f"| {r['round'] or 'warm-up'} | {r['mode']} | {r['seconds']:.2f} s | {r['upload_seconds']:.2f} s "
            f"| {r['peak_rss_mb']:,.0f} MB |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--ratings", type=int, default=37_500_000, help="ratings rows to generate (default: %(default)s, ~1 GB)"
    )
    parser.add_argument("--repeat", type=int, default=5, help="measured rounds of every mode (default: %(default)s)")
    parser.add_argument(
        "--generate-memory", default="6GB", help="DuckDB memory limit for generating the file (default: %(default)s)"
    )
    parser.add_argument("--tmp", type=Path, default=None, help="where to work (default: system temp)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="results directory (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    import psutil

    provenance = Provenance()
    started = time.perf_counter()
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
        env = {
            **os.environ,
            **stack.env(),
            "PYTHONPATH": str(ROOT),
            "NETFLIX_ELT_UPLOAD_STATE_DIR": str(work / "upload-state"),
        }
        base = [sys.executable, "-m", "uploader", str(landing), "--bucket", settings.bucket, "--json", "--no-progress"]
        split_threshold = min(DEFAULT_SPLIT_THRESHOLD, size // 2)  # the defaults, unless the file is small
        part_size = min(DEFAULT_PART_SIZE, max(size // 4, 1))
        split_options = (
            [] if split_threshold == DEFAULT_SPLIT_THRESHOLD else ["--split-threshold", str(split_threshold)]
        )
        split_options += [] if part_size == DEFAULT_PART_SIZE else ["--part-size", str(part_size)]
        parent_rss_mb = psutil.Process().memory_info().rss / MiB
        # objects are checked on the S3 server's disk, not through boto3: this process stays small (see above)
        bucket_dir = settings.stack_dir / "s3" / settings.bucket

        def argv_for(mode: str, prefix: str) -> list[str]:
            if mode == "boto3 upload_file":
                return [sys.executable, "-c", UPLOAD_FILE_SCRIPT, str(source), settings.bucket, prefix + "ratings.csv"]
            extra = {
                "dry run": ["--dry-run"],
                "whole": ["--split-threshold", str(size + 1)],
                "split": split_options,
            }[mode]
            return [*base, "--prefix", prefix, *extra]

        def measure(mode: str, round_: int) -> Run:
            prefix = f"bench-{mode.replace(' ', '-')}-{round_}/"
            argv_ = argv_for(mode, prefix)
            log = work / f"{mode.replace(' ', '-')}-{round_}.log"
            code, seconds, peak, sampled, stdout = run_child(mode, argv_, env, work, log)
            report: dict[str, Any] = {"files": [], "totals": {}, "prefix": prefix}
            if code == 0:
                report = json.loads(stdout.strip().splitlines()[-1] if mode == BASELINE else stdout)
            f = report["files"][0] if report.get("files") else {}
            totals = report.get("totals", {})
            if mode == BASELINE:
                upload_seconds = float(report.get("upload_seconds") or 0.0)
                keys = [prefix + "ratings.csv"]
                uploaded = size if code == 0 else 0
            else:
                upload_seconds = float(totals.get("upload_seconds") or 0.0)
                keys = [report["prefix"] + k for k in f.get("keys", [])] if mode != "dry run" else []
                uploaded = int(totals.get("uploaded_bytes") or 0)
            run = Run(
                mode=mode,
                round=round_,
                command=(
                    "python -c '<boto3 upload_file>' LANDING/ratings.csv BUCKET KEY"
                    if mode == BASELINE
                    else "python -m uploader LANDING " + " ".join(argv_[4:])
                ),
                exit_code=code,
                seconds=seconds,
                peak_rss_mb=peak,
                sampled_peak_rss_mb=sampled,
                file_bytes=size,
                objects=len(keys),
                uploaded_bytes=uploaded,
                parts=int(f.get("parts") or 0),
                part_size=part_size if mode == "split" else None,
                rows=f.get("rows"),
                upload_seconds=upload_seconds,
                check="" if code == 0 else f"FAILED (exit {code})",
            )
            if not run.check:
                sizes = [(bucket_dir / k).stat().st_size if (bucket_dir / k).is_file() else -1 for k in keys]
                if mode == "dry run":
                    ok = f.get("status") == "would upload" and f.get("rows") == rows
                elif mode == "split":
                    ok = f.get("parts", 0) > 1 and sum(f.get("part_rows", [])) == rows and sum(sizes) == uploaded
                else:
                    ok = sizes == [size] and (mode == BASELINE or f.get("parts") == 0)
                run.check = "ok" if ok else "FAILED"
            # the objects go at once: a run at a time on the disk
            shutil.rmtree(bucket_dir / prefix, ignore_errors=True)
            return run

        for mode in MODES:
            runs.append(measure(mode, 0))
        for r in range(args.repeat):
            k = r % len(MODES)
            for mode in [*MODES[k:], *MODES[:k]]:
                runs.append(measure(mode, r + 1))
    finally:
        if stack is not None:
            stack.down()
        shutil.rmtree(work, ignore_errors=True)

    import boto3

    from uploader import core

    assert (core.DEFAULT_SPLIT_THRESHOLD, core.DEFAULT_PART_SIZE) == (DEFAULT_SPLIT_THRESHOLD, DEFAULT_PART_SIZE)
    modes: dict[str, dict[str, Any]] = {}
    for mode in ("dry run", "whole", "split", BASELINE):
        all_runs = [r for r in runs if r.mode == mode]
        measured = [r for r in all_runs if r.round > 0]
        seconds = float(statistics.median(r.seconds for r in measured))
        upload_seconds = float(statistics.median(r.upload_seconds for r in measured))
        modes[mode] = {
            "seconds": seconds,
            "upload_seconds": upload_seconds,
            "mb_per_s_wall": size / 1e6 / seconds,
            "mb_per_s_upload": size / 1e6 / upload_seconds if upload_seconds > 0 else None,
            "peak_rss_mb": max(r.peak_rss_mb for r in all_runs),
            "sampled_peak_rss_mb": max(r.sampled_peak_rss_mb for r in all_runs),
            "objects": measured[-1].objects,
            "uploaded_bytes": measured[-1].uploaded_bytes,
            "part_size": measured[-1].part_size,
            "check": "ok" if all(r.check == "ok" for r in all_runs) else "FAILED",
        }
    result = {
        "benchmark": "upload_memory",
        "ratings": args.ratings,
        "repeat": args.repeat,
        "rows": rows,
        "file_bytes": size,
        "generate_seconds": generate_seconds,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "target_peak_rss_mb": TARGET_RSS_MB,
        "max_peak_rss_mb": max(modes[m]["peak_rss_mb"] for m in ("dry run", "whole", "split")),
        "benchmark_process_rss_mb": parent_rss_mb,
        "modes": modes,
        "ratios_vs_upload_file": {
            m: modes[m]["mb_per_s_wall"] / modes[BASELINE]["mb_per_s_wall"] for m in ("split", "whole")
        },
        "provenance": provenance.finish(),
        "environment": environment(boto3=boto3.__version__),
        "runs": [asdict(r) for r in runs],
    }
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "upload_memory.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.results / "upload_memory.md").write_text(to_markdown(result), encoding="utf-8")
    ok = all(m["check"] == "ok" for m in modes.values()) and result["max_peak_rss_mb"] < TARGET_RSS_MB
    print(to_markdown(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
