"""Build and run the emulator's HTTP server (the Snowflake connector's protocol, via fakesnow's server routes)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import duckdb
import fakesnow.server as fs_server
from fakesnow import info_schema, macros
from fakesnow.instance import GLOBAL_DATABASE_NAME, FakeSnow
from fakesnow.transforms import show
from fakesnow.transforms import stage as fs_stage

from . import access, cursor, procedures
from .stages import S3Settings, StageStorage

log = logging.getLogger("snowflake.emulator")


class PersistentFakeSnow(FakeSnow):
    """fakesnow whose global catalogue (stages, file formats, procedures, load history) lives in a file too, and
    which re-attaches every database found in its state directory, so a restart loses nothing."""

    def __init__(self, state_dir: Path | None):
        databases = state_dir / "databases" if state_dir else None
        if databases:
            databases.mkdir(parents=True, exist_ok=True)
        self.create_database_on_connect = True
        self.create_schema_on_connect = True
        self.db_path = databases
        self.nop_regexes = None
        self.results_cache: dict[str, tuple] = {}
        self.duck_conn = duckdb.connect(database=":memory:", config={"lambda_syntax": "ENABLE_SINGLE_ARROW"})
        global_db = f"'{state_dir / 'global.duckdb'}'" if state_dir else "':memory:'"
        self.duck_conn.execute(f"ATTACH IF NOT EXISTS {global_db} AS {GLOBAL_DATABASE_NAME}")
        self.duck_conn.execute(info_schema.fs_global_creation_sql())
        self.duck_conn.execute(show.fs_global_creation_sql())
        self.duck_conn.execute("SET GLOBAL TimeZone = 'UTC'")
        self.duck_conn.execute(procedures.SETUP_SQL)
        self.duck_conn.execute(access.SETUP_SQL)
        if databases:
            for db_file in sorted(databases.glob("*.db")):
                name = db_file.stem
                self.duck_conn.execute(f"ATTACH IF NOT EXISTS '{db_file}' AS {name}")
                self.duck_conn.execute(info_schema.per_db_creation_sql(name))
                self.duck_conn.execute(macros.creation_sql(name))


def build(
    *,
    host: str,
    port: int,
    state_dir: Path | None = None,
    s3: S3Settings | None = None,
) -> Any:
    """Configure this process as the emulator and return the ASGI app."""
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
        internal = state_dir / "internal_stages"
        internal.mkdir(exist_ok=True)
        fs_stage.LOCAL_BUCKET_PATH = str(internal.resolve())
    instance = PersistentFakeSnow(state_dir.resolve() if state_dir else None)
    fs_server.shared_fs = instance
    storage = StageStorage(s3 or S3Settings())
    storage.register_filesystem(instance.duck_conn)
    cursor.CONTEXT = cursor.EmulatorContext(storage=storage, host=host, port=port)
    cursor.install()
    return _app()


async def _login(request: Any) -> Any:
    """fakesnow's login, plus the master token real Snowflake returns: without one the connector's close() fails
    before it marks the connection closed, and Snowpark then retries closing it at interpreter exit."""
    import json

    from starlette.responses import JSONResponse

    response = await fs_server.login_request(request)
    body = json.loads(response.body)
    if body.get("success"):
        body["data"]["masterToken"] = "master-" + body["data"]["token"]
        body["data"]["validityInSeconds"] = 3600
        body["data"]["masterValidityInSeconds"] = 14400
    return JSONResponse(body)


def _app() -> Any:
    from starlette.applications import Starlette
    from starlette.routing import Route

    routes = [
        Route(r.path, _login, methods=["POST"]) if r.path == "/session/v1/login-request" else r
        for r in fs_server.routes
    ]
    return Starlette(routes=routes)


def serve(host: str, port: int, state_dir: Path | None, s3: S3Settings, log_level: str = "warning") -> None:
    import uvicorn

    app = build(host=host, port=port, state_dir=state_dir, s3=s3)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_keep_alive=600)
    server = uvicorn.Server(config)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        server.should_exit = True
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m snowflake.emulator",
        description=(
            "Local Snowflake emulator (local only): fakesnow's server extended with Python stored procedures, "
            "external S3 stages, COPY with ON_ERROR/PATTERN/VALIDATE and persistent state. Clients connect with "
            "account=emulator, any user/password, host/port of this server and protocol=http."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SNOWFLAKE_PORT", "8410")))
    parser.add_argument("--state-dir", type=Path, help="keep databases and catalogue here (default: in memory)")
    parser.add_argument("--s3-endpoint", help="S3 endpoint URL external stages read from (default: AWS)")
    parser.add_argument("--s3-access-key", default=os.environ.get("AWS_ACCESS_KEY_ID"))
    parser.add_argument("--s3-secret-key", default=os.environ.get("AWS_SECRET_ACCESS_KEY"))
    parser.add_argument("--s3-region", default=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
    parser.add_argument(
        "--s3-local-root",
        type=Path,
        help="data directory of a local 'rclone serve s3' serving the same buckets: read staged files from disk",
    )
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    s3 = S3Settings(
        endpoint_url=args.s3_endpoint,
        access_key=args.s3_access_key,
        secret_key=args.s3_secret_key,
        region=args.s3_region,
        local_root=args.s3_local_root.resolve() if args.s3_local_root else None,
    )
    serve(args.host, args.port, args.state_dir, s3, args.log_level)
    return 0
