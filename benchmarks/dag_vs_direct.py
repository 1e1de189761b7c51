"""Benchmark the Airflow DAG against the same steps run directly: what orchestration costs.

Generates one landing directory (synthetic data, ``--scale``, default small), then runs ``netflix-elt run`` on it
in two modes, each time on a fresh local stack (its own temporary directory and free ports, so nothing is already
loaded):

- ``direct`` (baseline): upload, ``CALL RAW.LOAD_RAW_FILES`` and one ``dbt build``, one after the other in one
  process;
- ``dag``: one run of the DAG ``full_netflix_pipeline`` (``dag.test()``, what ``make run`` does): the upload task,
  the load task (SQLExecuteQueryOperator) and the Cosmos task group, one `dbt build` task per model, dbt
  in-process (dbtRunner).

Measured per mode: the wall time of those steps (for the DAG, from starting the child that parses and runs it to
its end); the one-off preparation of the DAG mode (Airflow metadata database, dbt manifest) separately. Each mode
runs once unmeasured first (a warm-up: files and modules in the page cache), then the modes alternate over
``--repeat`` rounds (direct, DAG; DAG, direct; ...) and the medians are compared; the target is judged on the
unrounded ratio. Both modes must load the same rows. The results record the commit measured, the product files that
differed from it, the machine and the load average during the run (benchmarks/machine.py).
Results go to benchmarks/results/dag_vs_direct.md and dag_vs_direct.json.

    python benchmarks/dag_vs_direct.py                  # scale small, 5 rounds
    python benchmarks/dag_vs_direct.py --scale tiny --repeat 1
"""

from __future__ import annotations

import argparse
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from machine import Provenance, environment, provenance_markdown

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TARGET_RATIO = 1.3  # a DAG run within 1.3x the steps run directly
DIRECT_STEPS = ("upload to S3", "load into RAW", "transform (dbt build)")
MODES = ("direct", "dag")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_once(mode: str, landing: Path, work: Path) -> dict[str, Any]:
    stack_dir = work / f"stack-{mode}-{time.monotonic_ns()}"
    env = {
        **os.environ,
        "NETFLIX_ELT_STACK_DIR": str(stack_dir),
        "NETFLIX_ELT_S3_PORT": str(free_port()),
        "NETFLIX_ELT_SNOWFLAKE_PORT": str(free_port()),
        "NETFLIX_ELT_DBT_MANIFEST": str(work / "dbt-target" / "manifest.json"),
        # the uploader's state and dbt's files in the work folder, not in the user's or the repository's
        "NETFLIX_ELT_UPLOAD_STATE_DIR": str(stack_dir.with_suffix(".upload-state")),
        "DBT_TARGET_PATH": str(work / "dbt-target"),
        "DBT_LOG_PATH": str(work / "dbt-logs"),
    }
    env.pop("AIRFLOW_HOME", None)
    report = stack_dir.with_suffix(".json")
    argv = [sys.executable, "-m", "netflix_elt", "run", "--landing", str(landing), "--no-progress"]
    argv += ["--json-report", str(report)] + (["--direct"] if mode == "direct" else [])
    t0 = time.monotonic()
    try:
        proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=7200)
    finally:
        subprocess.run([sys.executable, "-m", "netflix_elt", "down"], env=env, cwd=ROOT, capture_output=True)
    wall = time.monotonic() - t0
    if proc.returncode != 0 or not report.exists():
        raise SystemExit(f"{mode} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    data = json.loads(report.read_text())
    steps = {s["step"]: s["seconds"] for s in data["steps"]}
    if mode == "direct":
        seconds = sum(steps[s] for s in DIRECT_STEPS)
        parts = {"upload": steps["upload to S3"], "load": steps["load into RAW"], "dbt": steps["transform (dbt build)"]}
        prepare = 0.0
    else:
        seconds = steps["DAG full_netflix_pipeline"]
        parts = {
            "upload": steps["upload_landed_files"],
            "load": steps["run_db_raw_ingestion"],
            "dbt": steps["netflix_dbt_run"],
        }
        prepare = steps["prepare Airflow"]
    shutil.rmtree(stack_dir, ignore_errors=True)
    totals = data["load_summary"]["totals"]
    return {
        "mode": mode,
        "seconds": seconds,
        "parts": parts,
        "prepare_seconds": prepare,
        "command_wall_seconds": wall,
        "rows_loaded": totals["rows_loaded"],
        "files_loaded": totals["loaded"] + totals["partially_loaded"],
    }


def compare(landing: Path, work: Path, rounds: int, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Each mode once unmeasured (warm-up), then ``rounds`` rounds alternating the order of the modes; medians,
    and the unrounded ratio of the medians."""
    for mode in MODES:
        run = run_once(mode, landing, work)
        log(f"warm-up {mode:<6} {run['seconds']:8.1f} s (not counted)")
    runs: list[dict[str, Any]] = []
    for round_ in range(rounds):
        order = MODES if round_ % 2 == 0 else MODES[::-1]
        for mode in order:
            run = run_once(mode, landing, work)
            run["round"] = round_ + 1
            runs.append(run)
            log(f"round {round_ + 1} {mode:<6} {run['seconds']:8.1f} s  {run['parts']}")
    by_mode = {m: [r for r in runs if r["mode"] == m] for m in MODES}
    if len({r["rows_loaded"] for r in runs}) != 1:
        raise SystemExit(f"the modes loaded different row counts: {[(r['mode'], r['rows_loaded']) for r in runs]}")
    med = {m: float(statistics.median(r["seconds"] for r in rs)) for m, rs in by_mode.items()}
    parts = {
        m: {k: float(statistics.median(r["parts"][k] for r in rs)) for k in ("upload", "load", "dbt")}
        for m, rs in by_mode.items()
    }
    return {
        "rows_loaded": runs[0]["rows_loaded"],
        "files_loaded": runs[0]["files_loaded"],
        "median_seconds": med,
        "median_parts": parts,
        "ratio_dag_to_direct": med["dag"] / med["direct"],
        "prepare_seconds_median": float(statistics.median(r["prepare_seconds"] for r in by_mode["dag"])),
        "runs": runs,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", default="small", help="generator scale (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of both modes (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default: benchmarks/results)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    provenance = Provenance()
    started = time.perf_counter()

    sys.path.insert(0, str(ROOT))
    from netflix_elt.generate import generate

    with tempfile.TemporaryDirectory(prefix="bench-dag-") as tmp:
        work = Path(tmp)
        landing = work / "landing"
        generate(landing, scale=args.scale, seed=42)
        compared = compare(landing, work, args.repeat)
    from importlib.metadata import version

    result = {
        "benchmark": "dag_vs_direct",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - started, 1),
        "scale": args.scale,
        "repeat": args.repeat,
        **compared,
        "target_ratio": TARGET_RATIO,
        "target_met": compared["ratio_dag_to_direct"] <= TARGET_RATIO,
        "provenance": provenance.finish(),
        "environment": environment(
            airflow=version("apache-airflow"), cosmos=version("astronomer-cosmos"), dbt=version("dbt-core")
        ),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dag_vs_direct.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "dag_vs_direct.md").write_text(render(result))
    print(render(result))
    return 0


def render(r: dict[str, Any]) -> str:
    env = r["environment"]
    d, a = r["median_parts"]["direct"], r["median_parts"]["dag"]
    lines = [
        "# DAG run vs the same steps run directly",
        "",
        f"{r['date']} · total {r['seconds']:.0f} s · scale `{r['scale']}` ({r['files_loaded']} files, "
        f"{r['rows_loaded']:,} rows loaded) · each mode run once unmeasured first (warm-up), then {r['repeat']} "
        "alternating round(s) (direct, DAG; DAG, direct; ...), medians · "
        f"Airflow {env['airflow']}, Cosmos {env['cosmos']}, dbt {env['dbt']}",
        "",
        "| step | direct (baseline) | DAG `full_netflix_pipeline` | ratio |",
        "| --- | ---: | ---: | ---: |",
    ]
    for key, label in (("upload", "upload"), ("load", "load (CALL RAW.LOAD_RAW_FILES)"), ("dbt", "dbt")):
        ratio = a[key] / d[key] if d[key] else float("nan")
        lines.append(f"| {label} | {d[key]:.1f} s | {a[key]:.1f} s | {ratio:.2f}x |")
    lines.append(
        f"| **whole run** | **{r['median_seconds']['direct']:.1f} s** | **{r['median_seconds']['dag']:.1f} s** | "
        f"**{r['ratio_dag_to_direct']:.2f}x** |"
    )
    verdict = "met" if r["target_met"] else "NOT met"
    lines += [
        "",
        f"Target: a DAG run within {r['target_ratio']}x the direct steps. Unrounded ratio of the medians: "
        f"{r['ratio_dag_to_direct']!r}: **{verdict}**. The DAG's dbt figure is the "
        "sum of its task durations (a `dbt build` task per model, a freshness task per source, a task per "
        "relationship test, in order); the whole-run "
        "figure also counts parsing the DAG and Airflow's own work between tasks. One-off preparation of the DAG "
        f"mode (metadata database, dbt manifest): {r['prepare_seconds_median']:.1f} s (median), not counted.",
        "",
    ]
    lines += provenance_markdown(r["provenance"], env)
    lines += [
        "## Every run",
        "",
        "| round | mode | whole run | upload | load | dbt |",
        "| ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for run in r["runs"]:
        p = run["parts"]
        lines.append(
            f"| {run['round']} | {run['mode']} | {run['seconds']:.1f} s | {p['upload']:.1f} s | {p['load']:.1f} s "
            f"| {p['dbt']:.1f} s |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
