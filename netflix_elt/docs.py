"""Documentation of the dbt project netflix_dbt: ``dbt docs generate`` against the pipeline's target, and a local
web server for the result.

    netflix-elt docs                  # write index.html, manifest.json and catalog.json to netflix_dbt/target
    netflix-elt docs --serve          # the same, then serve them on http://127.0.0.1:8580 until Ctrl-C

dbt's ``index.html`` is a single-page app that fetches ``manifest.json`` (models, descriptions, lineage) and
``catalog.json`` (the columns and types of the relations that exist in the warehouse) from beside it, so it needs
a web server: a browser does not let a page opened from disk read those files. ``--serve`` is Python's
``http.server`` bound to 127.0.0.1 only. (``dbt docs serve`` would do the same, but it changes the working
directory of the whole process and binds without SO_REUSEADDR, so serving again right after Ctrl-C can fail
with "address already in use".)

The catalog describes what is built: run ``netflix-elt transform`` (or ``netflix-elt run``) first. The files go
to ``DBT_TARGET_PATH`` when it is set.
"""

from __future__ import annotations

import argparse
import errno
import functools
import http.server
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import contracts
from .config import Settings
from .pipeline import target_env
from .stack import LocalStack, StackError
from .transform import PROJECT_DIR, run_dbt

DEFAULT_PORT = 8580
HOST = "127.0.0.1"  # never another interface: the docs show the warehouse's schema


@dataclass
class DocsResult:
    """What ``dbt docs generate`` wrote, and how much of the project the catalog covers."""

    success: bool
    seconds: float
    target: Path
    deployed: bool = False
    models: int = 0
    models_in_catalog: int = 0
    sources: int = 0
    sources_in_catalog: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def files(self) -> dict[str, Path]:
        return {name: self.target / name for name in ("index.html", "manifest.json", "catalog.json")}


def docs_env(settings: Settings | None = None) -> dict[str, str]:
    """The environment dbt runs with (as ``netflix-elt transform``), with DBT_TARGET_PATH made absolute."""
    env = target_env(settings)
    target = Path(env.get("DBT_TARGET_PATH") or PROJECT_DIR / "target")
    env["DBT_TARGET_PATH"] = str(target if target.is_absolute() else PROJECT_DIR / target)
    return env


def missing_raw_tables(settings: Settings | None = None) -> list[str]:
    """The RAW tables of the file contracts that the target does not have (all of them if it cannot be queried)."""
    from . import pipeline

    wanted = [c.raw_table for c in contracts.CONTRACTS.values()]
    try:
        with pipeline.connect(settings) as conn:
            cur = conn.cursor()
            cur.execute("SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = 'RAW'")
            present = {str(r[0]).upper() for r in cur.fetchall()}
    except Exception:
        return wanted
    return [t for t in wanted if t.upper() not in present]


def generate_docs(
    settings: Settings | None = None, env: Mapping[str, str] | None = None, quiet: bool = False
) -> DocsResult:
    """Deploy if the RAW tables are missing, then ``dbt docs generate`` (compile every model, read the catalog)."""
    from . import pipeline

    settings = settings or Settings.from_env()
    environment = dict(docs_env(settings) if env is None else env)
    target = Path(environment.get("DBT_TARGET_PATH") or PROJECT_DIR / "target")
    deployed = False
    if missing_raw_tables(settings):
        proc = pipeline.deploy(settings, quiet=True)
        if proc.returncode != 0:
            print(proc.stdout + proc.stderr, file=sys.stderr)
            raise StackError("schemachange deploy failed (output above)")
        deployed = True
    result = run_dbt(["--quiet", "docs", "generate"] if quiet else ["docs", "generate"], environment)
    out = DocsResult(success=result.success, seconds=result.seconds, target=target, deployed=deployed)
    if result.exception is not None:
        out.errors.append(str(result.exception))
    out.errors += [str(e) for e in (getattr(result.raw.result, "errors", None) or [])]
    try:
        manifest = json.loads((target / "manifest.json").read_text())
        catalog = json.loads((target / "catalog.json").read_text())
    except (OSError, ValueError) as e:
        out.success = False
        out.errors.append(f"dbt docs generate wrote no readable manifest.json and catalog.json in {target}: {e}")
        return out
    models = {uid for uid, n in manifest.get("nodes", {}).items() if n.get("resource_type") == "model"}
    out.models = len(models)
    out.models_in_catalog = len(models & catalog.get("nodes", {}).keys())
    out.sources = len(manifest.get("sources", {}))
    out.sources_in_catalog = len(manifest.get("sources", {}).keys() & catalog.get("sources", {}).keys())
    return out


def format_result(result: DocsResult) -> str:
    lines = [f"dbt docs generate: {'SUCCESS' if result.success else 'FAILED'} in {result.seconds:.1f} s"]
    if result.deployed:
        lines.append("  (the RAW tables were missing: deployed the Snowflake objects first)")
    details = {
        "index.html": "the docs site; serve it with `netflix-elt docs --serve`",
        "manifest.json": f"{result.models} models, {result.sources} sources, with descriptions and lineage",
        "catalog.json": f"columns and types of {result.models_in_catalog} models and {result.sources_in_catalog} "
        "sources, as built in the warehouse",
    }
    for name, path in result.files.items():
        lines.append(f"  {name:<14} {path}{'' if path.exists() else ' (missing)'}")
        lines.append(f"  {'':<14} {details[name]}")
    if result.success and result.models_in_catalog == 0:
        lines.append("  no model is built yet, so the catalog has no columns: run `netflix-elt transform` first")
    for error in result.errors:
        lines.append(f"  error: {error.strip()[:500]}")
    return "\n".join(lines)


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files, never cached by the browser (docs generated again show up on reload)."""

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


def bind(target: Path, port: int) -> http.server.ThreadingHTTPServer:
    """A web server for ``target`` on 127.0.0.1:port (bound now, serving once ``serve_forever`` runs)."""
    handler = functools.partial(_Handler, directory=str(target))
    try:
        return http.server.ThreadingHTTPServer((HOST, port), handler)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise StackError(
                f"port {port} on {HOST} is already in use by another program, so the docs cannot be served there. "
                "Choose another port with --port or NETFLIX_ELT_DOCS_PORT=<port>."
            ) from e
        raise


def serve(server: http.server.ThreadingHTTPServer, target: Path) -> None:
    """Serve until Ctrl-C (SIGINT), then close the port."""
    host, port = server.server_address[:2]
    print(f"dbt docs: http://{host!s}:{port}/  (serving {target}; Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("docs server stopped", flush=True)


def register_cli(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``docs`` subcommand (its handler is ``args.func(args)`` and returns the exit code)."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "docs",
        help="dbt docs generate (index.html, manifest.json, catalog.json); --serve serves them on 127.0.0.1",
        description="Run `dbt docs generate` on netflix_dbt against the target (the local stack, started if needed, "
        "or a real account with SNOWFLAKE_ACCOUNT and NETFLIX_DBT_TARGET=snowflake; the Snowflake objects are deployed "
        "first if the RAW tables are missing) and print where the files are (netflix_dbt/target, or DBT_TARGET_PATH). The catalog has the "
        "columns of what is built: run `netflix-elt transform` first. --serve then serves the docs on 127.0.0.1 "
        "until Ctrl-C.",
    )
    p.add_argument("--serve", action="store_true", help="then serve the docs on 127.0.0.1 until Ctrl-C")
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port for --serve (default: NETFLIX_ELT_DOCS_PORT or {DEFAULT_PORT})",
    )
    p.set_defaults(func=cmd_docs)
    return p


def cmd_docs(args: argparse.Namespace) -> int:
    from . import pipeline

    settings = Settings.from_env()  # also reads .env
    env = docs_env(settings)
    target = Path(env["DBT_TARGET_PATH"])
    server = None
    if args.serve:  # take the port first: a port in use fails before the stack starts and dbt runs
        port = args.port or int(os.environ.get("NETFLIX_ELT_DOCS_PORT") or DEFAULT_PORT)
        server = bind(target, port)
    try:
        if pipeline.is_local():
            LocalStack(settings).up()
        result = generate_docs(settings, env)
        print(format_result(result))
        if not result.success or server is None:
            return 0 if result.success else 1
        serve(server, target)
        server = None
        return 0
    finally:
        if server is not None:
            server.server_close()


__all__ = ["DEFAULT_PORT", "DocsResult", "bind", "docs_env", "format_result", "generate_docs", "register_cli", "serve"]
