"""What a benchmark measured and on what: the machine, the commit, uncommitted product code, the load average.

Every results file records :func:`environment` and a :class:`Provenance`: the commit checked out (``git rev-parse
HEAD``), the product files that differed from it at the start and at the end of the run (a measurement of
uncommitted code is not a measurement of the commit), and the load average at the start, at the end and sampled
during the run (the machine may be shared: other work running at the same time slows absolute times).
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# the folders whose code the benchmarks measure
PRODUCT_PATHS = ("uploader", "snowflake", "netflix_elt", "netflix_dbt", "dags", "migrations")
# a 1-minute load average above this during a run is reported as a shared machine
BUSY_LOAD = 1.5
LOAD_SAMPLE_SECONDS = 5.0


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def environment(**versions: str) -> dict[str, object]:
    """Machine facts plus the versions of the tools a benchmark measured."""
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_gib": memory_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **versions,
    }


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def commit() -> str:
    """The commit checked out: ``git rev-parse HEAD``."""
    return _git("rev-parse", "HEAD").strip()


def product_changes() -> list[str]:
    """Product files that differ from the commit checked out (modified, staged, deleted or new, not ignored)."""
    out = _git("status", "--porcelain", "--untracked-files=all", "--", *PRODUCT_PATHS)
    return sorted({line[3:].split(" -> ")[-1] for line in out.splitlines() if line.strip()})


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Provenance:
    """Started when a benchmark starts, finished when it ends; samples the load average in a thread meanwhile."""

    def __init__(self) -> None:
        self.command = shlex.join(["python", os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
        self.commit = commit()
        self.changes_at_start = product_changes()
        self.load_start = load_average()
        self.samples: list[float] = [self.load_start[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(LOAD_SAMPLE_SECONDS):
            self.samples.append(load_average()[0])

    def finish(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        end = load_average()
        self.samples.append(end[0])
        changes_at_end = product_changes()
        commit_at_end = commit()
        # commits made during the run that changed product code (commits of tests or docs change nothing measured)
        committed = _git("diff", "--name-only", self.commit, commit_at_end, "--", *PRODUCT_PATHS).split()
        return {
            "command": self.command,
            "commit": self.commit,
            "commit_at_end": commit_at_end,
            "product_changes_at_start": self.changes_at_start,
            "product_changes_at_end": changes_at_end,
            "product_changes_committed_during_run": committed,
            "product_code_clean": not (self.changes_at_start or changes_at_end or committed),
            "load_average": {
                "start_1_5_15min": self.load_start,
                "end_1_5_15min": end,
                "max_1min_sampled": max(self.samples),
                "samples": len(self.samples),
                "sample_seconds": LOAD_SAMPLE_SECONDS,
                "busy_threshold": BUSY_LOAD,
            },
        }


def provenance_markdown(p: dict[str, Any], env: dict[str, Any]) -> list[str]:
    """The lines every results file ends with: the command, the commit, product code, the machine, the load."""
    moved = p["commit_at_end"] != p["commit"]
    lines = [
        "## What was measured, and on what",
        "",
        f"- Command: `{p['command']}`.",
        f"- Commit measured: `{p['commit']}`"
        + (f" (HEAD moved to `{p['commit_at_end']}` during the run)." if moved else "."),
    ]
    folders = ", ".join(f"`{d}/`" for d in PRODUCT_PATHS)
    if p["product_code_clean"]:
        lines.append(
            f"- Product code ({folders}) was that commit's, unchanged"
            + (" (the commits made during the run changed none of it)." if moved else ".")
        )
    else:
        uncommitted = sorted(set(p["product_changes_at_start"]) | set(p["product_changes_at_end"]))
        committed = p.get("product_changes_committed_during_run", [])
        lines.append(
            "- **PRODUCT CODE DIFFERED FROM THAT COMMIT**: these figures measure "
            + "; ".join(
                part
                for part in (
                    "uncommitted changes to " + ", ".join(f"`{f}`" for f in uncommitted) if uncommitted else "",
                    "changes committed during the run to " + ", ".join(f"`{f}`" for f in committed)
                    if committed
                    else "",
                )
                if part
            )
            + ", not the commit alone."
        )
    lines.append(
        f"- Machine: {env['cpu_model']}, {env['cpu_count']} CPU, {env['memory_gib']} GiB RAM; {env['platform']}; "
        f"Python {env['python']}."
    )
    load = p["load_average"]
    busy = load["max_1min_sampled"] > load["busy_threshold"]
    lines.append(
        f"- Load average (1, 5, 15 min): {', '.join(map(str, load['start_1_5_15min']))} at the start, "
        f"{', '.join(map(str, load['end_1_5_15min']))} at the end; the 1-minute figure sampled every "
        f"{load['sample_seconds']:g} s peaked at {load['max_1min_sampled']}. "
        + (
            f"**It was above {load['busy_threshold']} during the run**: the CPU was shared (the benchmark's own "
            "processes count too, and other work ran on the same cores), so absolute times are slower than on an "
            "idle machine; each ratio compares runs interleaved under the same conditions."
            if busy
            else f"It stayed at or below {load['busy_threshold']} during the run."
        )
    )
    lines.append("")
    return lines
