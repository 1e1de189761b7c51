"""Transform: the dbt project netflix_dbt (staging -> core -> marts, snapshots), run with dbt's programmatic runner
against the pipeline's target (the local stack's emulator, or a real account when SNOWFLAKE_ACCOUNT is set).

    netflix-elt transform                       # dbt build: models, snapshots, tests and unit tests
    netflix-elt transform --full-refresh        # rebuild the incremental models from every batched load in RAW
    netflix-elt transform --select marts        # any dbt selection
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .pipeline import REPO, target_env

PROJECT_DIR = REPO / "netflix_dbt"


@dataclass
class DbtResult:
    """What a dbt invocation did: success, one entry per node run, the exception if dbt could not run at all."""

    args: list[str]
    success: bool
    seconds: float
    nodes: list[dict[str, Any]] = field(default_factory=list)
    exception: BaseException | None = None
    raw: Any = None  # dbt's own dbtRunnerResult

    def counts(self) -> dict[str, dict[str, int]]:
        """Per resource type (model, snapshot, test, unit_test, ...): how many nodes ended in each status."""
        out: dict[str, dict[str, int]] = {}
        for n in self.nodes:
            by_status = out.setdefault(n["resource_type"], {})
            by_status[n["status"]] = by_status.get(n["status"], 0) + 1
        return out

    def failures(self) -> list[dict[str, Any]]:
        return [n for n in self.nodes if n["status"] in {"error", "fail", "runtime error"}]


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    """Set os.environ for the duration of a dbt invocation (profiles.yml reads env_var()), then restore it."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_dbt(args: Sequence[str], env: Mapping[str, str] | None = None) -> DbtResult:
    """Run one dbt command (e.g. ``["build", "--threads", "2"]``) on netflix_dbt against the target, in-process."""
    from dbt.cli.main import dbtRunner

    from .dbt_runtime import speed_up_dbt

    speed_up_dbt()
    argv = [*args]
    for flag, value in (("--project-dir", PROJECT_DIR), ("--profiles-dir", PROJECT_DIR)):
        if flag not in argv:
            argv += [flag, str(value)]
    environment = dict(target_env() if env is None else env)
    environment.setdefault("DBT_LOG_PATH", str(PROJECT_DIR / "logs"))
    environment.setdefault("DBT_TARGET_PATH", str(PROJECT_DIR / "target"))
    environment.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    started = time.perf_counter()
    with _environment(environment):
        res = dbtRunner().invoke(argv)
    seconds = time.perf_counter() - started
    nodes = []
    results = getattr(res.result, "results", None) or []
    for r in results:
        node = getattr(r, "node", None)
        nodes.append(
            {
                "name": getattr(node, "name", "?"),
                "unique_id": getattr(node, "unique_id", "?"),
                "resource_type": str(getattr(node, "resource_type", "?")),
                "status": str(getattr(r, "status", "?")),
                "seconds": float(getattr(r, "execution_time", 0.0) or 0.0),
                "message": getattr(r, "message", None),
                "failures": getattr(r, "failures", None),
            }
        )
    return DbtResult(list(argv), bool(res.success), seconds, nodes, res.exception, res)


def transform(
    full_refresh: bool = False,
    select: Sequence[str] | str | None = None,
    threads: int | None = None,
    env: Mapping[str, str] | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """``dbt build`` (models, snapshots, data tests, unit tests) and a summary of what passed, failed and was
    skipped; prints it unless ``quiet``."""
    args = ["build"]
    if full_refresh:
        args.append("--full-refresh")
    if select:
        args += ["--select", *([select] if isinstance(select, str) else select)]
    if threads:
        args += ["--threads", str(threads)]
    if quiet:
        args = ["--quiet", *args]
    result = run_dbt(args, env)
    summary = {
        "success": result.success,
        "seconds": round(result.seconds, 1),
        "counts": result.counts(),
        "failures": [{"name": f["name"], "status": f["status"], "message": f["message"]} for f in result.failures()],
        "error": str(result.exception) if result.exception else None,
    }
    if not quiet:
        print(format_summary(summary))
    return summary


def format_summary(summary: Mapping[str, Any]) -> str:
    lines = [f"dbt build: {'SUCCESS' if summary['success'] else 'FAILED'} in {summary['seconds']:.1f} s"]
    for kind, by_status in sorted(summary["counts"].items()):
        parts = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
        lines.append(f"  {kind:<10} {parts}")
    for f in summary["failures"]:
        lines.append(f"  {f['status'].upper()}: {f['name']}: {(f['message'] or '').strip()[:300]}")
    if summary.get("error"):
        lines.append(f"  error: {summary['error']}")
    return "\n".join(lines)


def register_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``transform`` subcommand (its handler is ``args.func(args)`` and returns the exit code)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "transform", help="run the dbt project (dbt build: models, snapshots, tests) against the target"
    )
    p.add_argument(
        "--full-refresh",
        action="store_true",
        help="rebuild the incremental models from every batched load in RAW (after an upgrade that changes their columns)",
    )
    p.add_argument("--select", "-s", nargs="+", help="dbt selection, e.g. marts or +mart_movie_ratings")
    p.add_argument("--threads", type=int, default=None, help="dbt threads (default: the profile's)")

    def run(args: argparse.Namespace) -> int:
        summary = transform(full_refresh=args.full_refresh, select=args.select, threads=args.threads)
        return 0 if summary["success"] else 1

    p.set_defaults(func=run)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netflix-elt")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["PROJECT_DIR", "DbtResult", "format_summary", "register_cli", "run_dbt", "transform"]
