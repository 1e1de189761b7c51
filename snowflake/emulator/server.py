"""Build and run the emulator's HTTP server (the Snowflake connector's protocol, via fakesnow's server routes)."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import duckdb
import fakesnow.server as fs_server
import snowflake.connector.errors
from fakesnow import info_schema, macros
from fakesnow.instance import GLOBAL_DATABASE_NAME, FakeSnow
from fakesnow.transforms import show
from fakesnow.transforms import stage as fs_stage

from . import access, async_queries, auth, clock, cursor, procedures
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
    authenticator: auth.Authenticator | None = None,
) -> Any:
    """Configure this process as the emulator and return the ASGI app. ``authenticator``: the bootstrap
    administrator; without a password, every login is accepted."""
    clock.install_epoch_conversion()
    if state_dir is not None:
        state_dir.mkdir(parents=True, exist_ok=True)
        internal = state_dir / "internal_stages"
        internal.mkdir(exist_ok=True)
        fs_stage.LOCAL_BUCKET_PATH = str(internal.resolve())
    instance = PersistentFakeSnow(state_dir.resolve() if state_dir else None)
    fs_server.shared_fs = instance
    storage = StageStorage(s3 or S3Settings())
    storage.register_filesystem(instance.duck_conn)
    authenticator = authenticator or auth.Authenticator()
    auth.install_redaction(authenticator.secrets())
    if authenticator.bootstrap_password:
        access.bootstrap_admin(
            instance.duck_conn, authenticator.bootstrap_user or "ADMIN", authenticator.bootstrap_password
        )
    else:
        log.warning(
            "no bootstrap administrator (SNOWFLAKE_EMULATOR_PASSWORD is not set): every login is accepted, whatever "
            "the user and password; grants are still enforced for sessions using a role that is not an administrator's"
        )
    cursor.CONTEXT = cursor.EmulatorContext(storage=storage, host=host, port=port, authenticator=authenticator)
    cursor.install()
    fs_server.to_sf = _to_sf
    fs_server.describe_as_rowtype = _describe_as_rowtype
    return _app()


_fakesnow_to_sf = fs_server.to_sf
_fakesnow_describe_as_rowtype = fs_server.describe_as_rowtype


def _to_sf(table: Any, rowtype: list[Any]) -> Any:
    """fakesnow's Arrow result for the connector, with DuckDB's TIMESTAMPTZ (a session in any time zone) sent as
    Snowflake sends a TIMESTAMP_LTZ: the UTC instant, which the connector shows in the session's TIMEZONE."""
    import pyarrow as pa

    columns = [
        c.cast(pa.timestamp(c.type.unit)) if pa.types.is_timestamp(c.type) and c.type.tz else c for c in table.columns
    ]
    return _fakesnow_to_sf(pa.Table.from_arrays(columns, names=table.column_names), rowtype)


def _describe_as_rowtype(describe_results: list[Any]) -> list[Any]:
    """fakesnow's column types, with DuckDB's TIMESTAMPTZ reported as TIMESTAMP_LTZ (what CURRENT_TIMESTAMP() and
    ``::TIMESTAMP_LTZ`` give in Snowflake); a type it cannot report is a SQL error, not an HTTP 500."""
    try:
        rowtype = _fakesnow_describe_as_rowtype(describe_results)
    except NotImplementedError as e:
        raise procedures.sql_error(
            f"SQL execution error: the emulator cannot return a column {e}", 2040, "0A000"
        ) from e
    for column in rowtype:
        if column["type"] == "timestamp_tz":
            column["type"] = "timestamp_ltz"
    return rowtype


def authenticate(duck: Any, authenticator: auth.Authenticator, data: dict[str, Any], role_name: str | None) -> Any:
    """Who logs in, or :class:`auth.LoginError` with Snowflake's answer (see :mod:`.auth`)."""
    login = str(data.get("LOGIN_NAME") or "").strip()
    method = str(data.get("AUTHENTICATOR") or "SNOWFLAKE").upper()
    requested = auth.normalise_name(role_name) if role_name else None
    if login.upper() == auth.INTERNAL_USER:
        # a procedure call's session: its token is valid for that call's role only, while the call runs
        role = authenticator.call_role(str(data.get("PASSWORD") or "")) if method == "SNOWFLAKE" else None
        if role is None or (requested is not None and requested != role):
            raise auth.LoginError(*auth.BAD_CREDENTIALS)
        return auth.Principal(auth.INTERNAL_USER, role)
    with access.fresh(duck) as conn:
        user = access.find_user(conn, login) if login else None
        if authenticator.open and user is None:
            return auth.Principal(auth.normalise_name(login) if login else "", requested or "ACCOUNTADMIN", True)
        if not authenticator.open:
            if method == "SNOWFLAKE_JWT":
                account = str(data.get("ACCOUNT_NAME") or "").partition(".")[0].upper()
                if user is None or not auth.verify_jwt(str(data.get("TOKEN") or ""), account, login, user.keys):
                    raise auth.LoginError(*auth.BAD_JWT)
            elif method == "SNOWFLAKE":
                password = str(data.get("PASSWORD") or "")
                stored = user.password_hash if user else _DUMMY_HASH  # same work for an unknown user
                if not auth.verify_password(password, stored) or user is None:
                    raise auth.LoginError(*auth.BAD_CREDENTIALS)
            else:
                raise auth.LoginError(*auth.BAD_CREDENTIALS)
        assert user is not None
        if user.disabled:
            raise auth.LoginError(*auth.USER_DISABLED)
        available = access.user_roles(conn, user.name)
        if requested:
            if not access.role_exists(conn, requested):
                raise auth.role_not_granted(requested)
            if requested not in available:
                raise auth.role_not_granted(requested)
            role = requested
        else:
            role = user.default_role if user.default_role in available else "PUBLIC"
    return auth.Principal(user.name, role)


_DUMMY_HASH = auth.hash_password(secrets.token_urlsafe(16))


async def _login(request: Any) -> Any:
    """Check the credentials (:func:`authenticate`), then fakesnow's login, plus the master token real Snowflake
    returns: without one the connector's close() fails before it marks the connection closed, and Snowpark then
    retries closing it at interpreter exit."""
    import gzip
    import json

    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse

    raw = await request.body()  # starlette keeps it: fakesnow's login reads it again
    if request.headers.get("Content-Encoding") == "gzip":
        raw = gzip.decompress(raw)
    data = json.loads(raw).get("data") or {}
    role_name = request.query_params.get("roleName")
    try:
        principal = await run_in_threadpool(
            authenticate, fs_server.shared_fs.duck_conn, cursor.context().authenticator, data, role_name
        )
    except auth.LoginError as e:
        log.warning("login refused for user '%s': %s", str(data.get("LOGIN_NAME") or "")[:128], e.message)
        return JSONResponse(
            {
                "data": {"nextAction": "RETRY_LOGIN", "authnMethod": str(data.get("AUTHENTICATOR") or "SNOWFLAKE")},
                "code": str(e.code),
                "message": e.message,
                "success": False,
                "headers": None,
            }
        )
    parameters = {str(k).upper(): v for k, v in (data.get("SESSION_PARAMETERS") or {}).items()}
    try:
        timezone = clock.check_timezone(str(parameters["TIMEZONE"])) if parameters.get("TIMEZONE") else None
    except snowflake.connector.errors.ProgrammingError as e:
        return JSONResponse({"data": None, "code": f"{e.errno:06d}", "message": e.msg, "success": False})
    response = await fs_server.login_request(request)
    body = json.loads(response.body)
    if body.get("success"):
        session = fs_server.sessions[body["data"]["token"]]
        session.principal = principal  # type: ignore[attr-defined]
        session.in_procedure = principal.user == auth.INTERNAL_USER  # type: ignore[attr-defined]
        session.session_parameters = parameters  # type: ignore[attr-defined]  # e.g. LOCK_TIMEOUT (locks.py)
        zone = await run_in_threadpool(clock.set_session_timezone, session, timezone)
        body["data"]["parameters"].append({"name": "TIMEZONE", "value": zone})
        body["data"]["sessionInfo"]["roleName"] = principal.role
        body["data"]["sessionInfo"]["warehouseName"] = request.query_params.get("warehouse")
        body["data"]["masterToken"] = "master-" + body["data"]["token"]
        body["data"]["validityInSeconds"] = 3600
        body["data"]["masterValidityInSeconds"] = 14400
    return JSONResponse(body)


def _app() -> Any:
    from starlette.applications import Starlette
    from starlette.routing import Route

    replaced = {"/session/v1/login-request", "/queries/v1/query-request", "/monitoring/queries/{sfqid}"}
    routes = [
        Route("/session/v1/login-request", _login, methods=["POST"]),
        *async_queries.routes(),
        *(r for r in fs_server.routes if r.path not in replaced),
    ]
    return Starlette(routes=routes)


def serve(
    host: str,
    port: int,
    state_dir: Path | None,
    s3: S3Settings,
    log_level: str = "warning",
    authenticator: auth.Authenticator | None = None,
) -> None:
    import uvicorn

    app = build(host=host, port=port, state_dir=state_dir, s3=s3, authenticator=authenticator)
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
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Local Snowflake emulator (local only): fakesnow's server extended with Python stored procedures,\n"
            "external S3 stages, COPY with ON_ERROR/PATTERN/VALIDATE, users, roles and enforced grants, and\n"
            "persistent state. Clients connect with account=emulator, host/port of this server, protocol=http."
        ),
        epilog=(
            "authentication (from the environment, never the command line):\n"
            "  SNOWFLAKE_EMULATOR_USER      the bootstrap administrator's user name (default: ADMIN); it has\n"
            "                               ACCOUNTADMIN and creates other users (CREATE USER, GRANT ROLE ... TO USER)\n"
            "  SNOWFLAKE_EMULATOR_PASSWORD  its password. When set, every login is checked: passwords against salted\n"
            "                               scrypt hashes, key-pair (JWT) logins against the user's RSA_PUBLIC_KEY(_2),\n"
            "                               the login's role against the user's grants.\n"
            "                               When NOT set, any user and password are accepted (ad-hoc use only).\n"
            "\n"
            "access control: a session whose role is not ACCOUNTADMIN, SECURITYADMIN, SYSADMIN or USERADMIN may\n"
            "only do what its role's grants (direct, inherited, future, ownership) allow; see snowflake/emulator/access.py."
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
    authenticator = auth.Authenticator(
        bootstrap_user=os.environ.get("SNOWFLAKE_EMULATOR_USER") or "ADMIN",
        # read once, then gone from the environment (nothing running in this process later finds it there)
        bootstrap_password=os.environ.pop("SNOWFLAKE_EMULATOR_PASSWORD", None) or None,
    )
    serve(args.host, args.port, args.state_dir, s3, args.log_level, authenticator)
    return 0
