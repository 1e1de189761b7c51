"""Authentication and least privilege on the local stack, as a user of the pipeline meets them: the emulator checks
passwords and key pairs, the migrations' roles (NETFLIX_LOADER, NETFLIX_TRANSFORMER, NETFLIX_REPORTER) can do what
they are for and nothing else, and no credential ever shows up in what the pipeline prints or the stack logs.

One stack for the module: deployed, generated data (scale tiny) loaded by a NETFLIX_LOADER user through the load
procedure, the dbt project built by a NETFLIX_TRANSFORMER user; then users of each role try what they may and may not
do.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import snowflake.connector
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from snowflake.connector.errors import DatabaseError, ProgrammingError

from netflix_elt import pipeline, transform
from netflix_elt.generate import generate
from netflix_elt.stack import EMULATOR_USER, LocalStack
from tests import snapshots
from tests.conftest import REPO, free_port, make_stack, point_at
from uploader import upload

pytestmark = pytest.mark.slow(minutes=1.5)

# credentials-related variables a developer's shell may hold: the tests set their own
AUTH_VARIABLES = (
    "SNOWFLAKE_ACCOUNT",
    "SNOWFLAKE_USER",
    "SNOWFLAKE_PASSWORD",
    "SNOWFLAKE_ROLE",
    "SNOWFLAKE_PRIVATE_KEY_PATH",
    "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE",
    "SNOWFLAKE_PRIVATE_KEY_FILE",
    "SNOWFLAKE_PRIVATE_KEY_FILE_PWD",
    "SNOWFLAKE_AUTHENTICATOR",
)


@dataclass
class Site:
    """A deployed local stack with users for each of the pipeline's roles."""

    stack: LocalStack
    work: Path
    passwords: dict[str, str] = field(default_factory=dict)
    load_summary: dict[str, Any] = field(default_factory=dict)
    build: transform.DbtResult | None = None

    @property
    def admin_password(self) -> str:
        return self.stack.credentials()["SNOWFLAKE_PASSWORD"]

    def login(self, user: str, **kwargs: Any) -> Any:
        params: dict[str, Any] = {
            "account": "emulator",
            "user": user,
            "host": "127.0.0.1",
            "port": self.stack.snowflake.port,
            "protocol": "http",
            "database": "NETFLIX",
            "schema": "PUBLIC",
            "network_timeout": 120,
            "login_timeout": 30,
        }
        if "private_key_file" not in kwargs and "password" not in kwargs:
            params["password"] = self.passwords[user]
        params.update(kwargs)
        return snowflake.connector.connect(**params)

    def sql(self, query: str, user: str | None = None, **kwargs: Any) -> list[tuple[Any, ...]]:
        conn = self.login(user, **kwargs) if user else self.stack.connect(schema="PUBLIC", network_timeout=120)
        try:
            cur = conn.cursor()
            cur.execute(query)
            return list(cur.fetchall())
        finally:
            conn.close()

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in (self.stack.root / "logs").rglob("*") if p.is_file())


LOADER, TRANSFORMER, REPORTER = "LOADER_USER", "TRANSFORMER_USER", "REPORTER_USER"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("access")
    stack = make_stack(root / "stack")
    mp = pytest.MonkeyPatch()
    for name in AUTH_VARIABLES:
        mp.delenv(name, raising=False)
    point_at(stack, mp)
    try:
        snapshots.deploy(stack)  # starts the stack
        site = Site(stack, root)
        for user, role in (
            (LOADER, "NETFLIX_LOADER"),
            (TRANSFORMER, "NETFLIX_TRANSFORMER"),
            (REPORTER, "NETFLIX_REPORTER"),
        ):
            site.passwords[user] = "Pw-" + secrets.token_urlsafe(12)
            site.sql(f"CREATE USER {user} PASSWORD = '{site.passwords[user]}' DEFAULT_ROLE = {role}")
            site.sql(f"GRANT ROLE {role} TO USER {user}")
        generate(root / "landing", scale="tiny")
        upload(
            root / "landing", bucket="netflix-landing", prefix="movielens/", s3_client=stack.s3_client(), progress=False
        )
        yield site
    finally:
        stack.down()
        mp.undo()


@pytest.fixture(scope="module")
def loaded(site: Site) -> Site:
    """RAW loaded by the loader: CALL RAW.LOAD_RAW_FILES() in a NETFLIX_LOADER session."""
    (value,) = site.sql("CALL RAW.LOAD_RAW_FILES()", LOADER)[0]
    site.load_summary = json.loads(value) if isinstance(value, str) else value
    return site


@pytest.fixture(scope="module")
def built(loaded: Site) -> Site:
    """The dbt project built by the transformer (user TRANSFORMER_USER, role NETFLIX_TRANSFORMER)."""
    env = pipeline.target_env(loaded.stack.settings)
    env.update(
        {
            "SNOWFLAKE_USER": TRANSFORMER,
            "SNOWFLAKE_PASSWORD": loaded.passwords[TRANSFORMER],
            "SNOWFLAKE_ROLE": "NETFLIX_TRANSFORMER",
            "DBT_TARGET_PATH": str(loaded.work / "target"),
            "DBT_LOG_PATH": str(loaded.work / "dbt-logs"),
        }
    )
    loaded.build = transform.run_dbt(["--quiet", "build", "--threads", "2"], env)
    return loaded


def _expect(error: type[Exception], errno: int, message: str, call: Any) -> Exception:
    with pytest.raises(error) as caught:
        call()
    assert caught.value.errno == errno, caught.value  # type: ignore[attr-defined]
    assert message in str(caught.value), caught.value
    return caught.value


# -- passwords ---------------------------------------------------------------------------------------------------------


def test_wrong_password_and_unknown_user_are_refused_and_never_revealed(site: Site) -> None:
    wrong = "Wrong-" + uuid.uuid4().hex  # pragma: allowlist secret (made up, refused)
    for user in (LOADER, "NOBODY_" + uuid.uuid4().hex[:8], EMULATOR_USER):
        error = _expect(
            DatabaseError,
            390100,
            "Incorrect username or password was specified.",
            lambda user=user: site.login(user, password=wrong),
        )
        assert wrong not in str(error)
        assert site.passwords[LOADER] not in str(error) and site.admin_password not in str(error)
    # stored procedures call back into the emulator as an internal user, with a token of their own: the
    # administrator's password does not open it
    _expect(
        DatabaseError,
        390100,
        "Incorrect username or password was specified.",
        lambda: site.login("EMULATOR$PROCEDURE", password=site.admin_password),
    )
    # the right password opens a session in the user's default role
    assert site.sql("SELECT CURRENT_USER(), CURRENT_ROLE()", LOADER) == [(LOADER, "NETFLIX_LOADER")]
    log = site.logs()
    assert "login refused for user 'LOADER_USER'" in log
    for secret in (wrong, site.admin_password, *site.passwords.values()):
        assert secret not in log


def test_a_changed_password_replaces_the_old_one_at_once(site: Site) -> None:
    """The emulator remembers logins that succeeded (scrypt once per session, not per login): a new password must
    still end the old one's logins at once, and a wrong one is still refused after a right one."""
    user = "ROTATED_" + uuid.uuid4().hex[:8].upper()
    old, new = "Pw-" + secrets.token_urlsafe(12), "Pw-" + secrets.token_urlsafe(12)
    site.sql(f"CREATE USER {user} PASSWORD = '{old}'")
    for _ in range(2):  # the second login is the remembered one
        assert site.sql("SELECT CURRENT_USER()", user, password=old) == [(user,)]
    _expect(DatabaseError, 390100, "Incorrect username", lambda: site.login(user, password=old + "x"))
    site.sql(f"ALTER USER {user} SET PASSWORD = '{new}'")
    _expect(DatabaseError, 390100, "Incorrect username", lambda: site.login(user, password=old))
    assert site.sql("SELECT CURRENT_USER()", user, password=new) == [(user,)]


def test_passwords_are_stored_hashed_and_kept_out_of_the_emulators_command_line(site: Site) -> None:
    state = b"".join(p.read_bytes() for p in (site.stack.root / "snowflake").rglob("*") if p.is_file())
    assert b"scrypt$" in state, "the emulator keeps salted scrypt hashes in its catalogue"
    for password in (site.admin_password, site.passwords[LOADER]):
        assert password.encode() not in state
    pid = int(site.stack.snowflake.pidfile.read_text())
    assert site.admin_password.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert [r[0] for r in site.sql("SHOW USERS", LOADER)] == [LOADER]  # a user sees only itself


def test_the_login_role_must_be_granted_to_the_user(site: Site) -> None:
    _expect(
        DatabaseError,
        390189,
        "Role 'NETFLIX_REPORTER' specified in the connect string is not granted to this user.",
        lambda: site.login(LOADER, role="NETFLIX_REPORTER"),
    )
    assert site.sql("SELECT CURRENT_ROLE()", LOADER, role="PUBLIC") == [("PUBLIC",)]


# -- the loader ----------------------------------------------------------------------------------------------------------


def test_loader_loads_raw_and_reads_its_tracking(loaded: Site) -> None:
    summary = loaded.load_summary
    assert summary["status"] == "SUCCESS", summary["message"]
    assert summary["totals"]["loaded"] == 6
    tracking = loaded.sql("SELECT COUNT(*), COUNT_IF(STATUS = 'LOADED') FROM RAW.LOAD_TRACKING", LOADER)
    assert tracking == [(6, 6)]
    assert loaded.sql("SELECT COUNT(*) FROM RAW.LOAD_REJECTS", LOADER) == [(0,)]
    (ratings,) = loaded.sql("SELECT COUNT(*) FROM RAW.RATINGS")[0]  # the loader itself does not read RAW's tables
    assert ratings == summary["totals"]["rows_loaded"] - sum(
        f["rows_loaded"] for f in summary["files"] if f["dataset"] != "ratings"
    )


def _snapshot(site: Site) -> list[Any]:
    """What a hostile loader would like to change: RAW's row counts, the tracking and the rejects."""
    counts = site.sql(
        "SELECT (SELECT COUNT(*) FROM RAW.RATINGS), (SELECT COUNT(*) FROM RAW.MOVIES), "
        "(SELECT COUNT(*) FROM RAW.LOAD_REJECTS)"
    )
    tracking = site.sql("SELECT FILE_KEY, STATUS, ROWS_LOADED FROM RAW.LOAD_TRACKING ORDER BY FILE_KEY")
    return [counts, tracking]


# what a NETFLIX_LOADER session might try, to hide files or rows, plant rows the contracts refuse or read the stage
LOADER_WRITES = (
    "UPDATE RAW.LOAD_TRACKING SET STATUS = 'LOADED', ROWS_LOADED = 0",
    "INSERT INTO RAW.LOAD_TRACKING (FILE_KEY, DATASET, FILE_NAME, STATUS) "
    "VALUES ('ratings/99991231T235959Z_0123456789abcdef/ratings.csv', 'ratings', 'ratings.csv', 'LOADED')",
    "DELETE FROM RAW.LOAD_TRACKING",
    "MERGE INTO RAW.LOAD_TRACKING t USING (SELECT 'x' AS K) s ON t.FILE_KEY = s.K WHEN NOT MATCHED THEN "
    "INSERT (FILE_KEY, DATASET, STATUS) VALUES (s.K, 'ratings', 'LOADED')",
    "DELETE FROM RAW.LOAD_REJECTS",
    "TRUNCATE TABLE RAW.LOAD_REJECTS",
    "INSERT INTO RAW.RATINGS (USER_ID, MOVIE_ID, RATING, EPOCH_SECONDS, SOURCE_FILE, SOURCE_ROW_NUMBER) "
    "VALUES (1, 1, 9.5, 0, 'planted', 1)",
    "DELETE FROM RAW.MOVIES",
    "SELECT COUNT(*) FROM RAW.RATINGS",
    "LIST @RAW.LANDING",
    "COPY INTO RAW.MOVIES (MOVIE_ID, TITLE, GENRES) FROM (SELECT $1, $2, $3 FROM @RAW.LANDING/movies/)",
)


def test_loader_only_calls_the_procedure_and_reads_its_tracking_and_rejects(loaded: Site) -> None:
    before = _snapshot(loaded)
    conn = loaded.login(LOADER, schema="RAW")
    try:
        cur = conn.cursor()
        for statement in LOADER_WRITES:
            with pytest.raises(ProgrammingError) as caught:
                cur.execute(statement)
            assert caught.value.errno in (2003, 3001), (statement, caught.value)
            assert "not authorized" in str(caught.value) or "Insufficient privileges" in str(caught.value), statement
    finally:
        conn.close()
    assert _snapshot(loaded) == before


def test_a_tracking_key_that_is_not_a_stage_key_never_reaches_a_stage_listing(loaded: Site) -> None:
    """A FAILED tracking row is retried: its folder is listed. A key that is not a stage key the uploader writes (here
    keys climbing out of the stage towards the stack's credentials, as a writer of LOAD_TRACKING could plant) is
    never put into a LIST."""
    planted = ["ratings/" + "../" * depth + "credentials.env" for depth in range(1, 7)]
    planted.append("ratings/x' PATTERN = '.*' ; LIST @RAW.LANDING; --/ratings.csv")  # out of the LIST's path
    values = ", ".join(
        f"('{key.replace(chr(39), chr(39) * 2)}', 'ratings', 'ratings.csv', '0123456789abcdef', 'FAILED', 'planted', "
        "SYSDATE(), 1)"
        for key in planted
    )
    loaded.sql(
        "INSERT INTO RAW.LOAD_TRACKING (FILE_KEY, DATASET, FILE_NAME, CONTENT_CHECKSUM, STATUS, LOAD_ID, CLAIMED_AT, "
        f"ATTEMPTS) VALUES {values}"
    )
    try:
        (value,) = loaded.sql("CALL RAW.LOAD_RAW_FILES()", LOADER)[0]
    finally:
        loaded.sql("DELETE FROM RAW.LOAD_TRACKING WHERE LOAD_ID = 'planted'")
    summary = json.loads(value) if isinstance(value, str) else value
    assert summary["status"] == "NOTHING_TO_LOAD", summary["message"]
    assert summary["ignored_keys"] == []  # nothing from outside the stage was listed


def test_loader_may_not_run_a_full_refresh(loaded: Site) -> None:
    before = _snapshot(loaded)
    conn = loaded.login(LOADER, schema="RAW")
    try:
        cur = conn.cursor()
        _expect(
            ProgrammingError,
            2003,
            "Procedure 'NETFLIX.RAW.FULL_REFRESH_RAW_FILES' does not exist or not authorized.",
            lambda: cur.execute("CALL RAW.FULL_REFRESH_RAW_FILES()"),
        )
        with pytest.raises(ProgrammingError) as caught:
            cur.execute("CALL RAW.LOAD_RAW_FILES(FULL_REFRESH => TRUE)")
        assert "not authorised: LOAD_RAW_FILES does not empty RAW" in str(caught.value)
        assert "CALL RAW.FULL_REFRESH_RAW_FILES(" in str(caught.value)
    finally:
        conn.close()
    refused = _cli(loaded, "load", "--full-refresh", SNOWFLAKE_USER=LOADER, SNOWFLAKE_PASSWORD=loaded.passwords[LOADER])
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "Traceback" not in refused.stdout + refused.stderr
    assert (
        "error: the load failed: Procedure 'NETFLIX.RAW.FULL_REFRESH_RAW_FILES' does not exist or not authorized."
        in (refused.stderr)
    )
    assert "administrative roles only" in refused.stderr
    assert _snapshot(loaded) == before

    # an administrator may (SYSADMIN inherits the procedures' owner role)
    admin = "SYSADMIN_USER"
    loaded.passwords[admin] = "Pw-" + secrets.token_urlsafe(12)
    loaded.sql(f"CREATE USER {admin} PASSWORD = '{loaded.passwords[admin]}' DEFAULT_ROLE = SYSADMIN")
    loaded.sql(f"GRANT ROLE SYSADMIN TO USER {admin}")
    (value,) = loaded.sql("CALL RAW.FULL_REFRESH_RAW_FILES(DATASETS => ['movies'], DRY_RUN => TRUE)", admin)[0]
    dry = json.loads(value) if isinstance(value, str) else value
    assert (dry["status"], dry["full_refresh"]) == ("DRY_RUN", True)
    assert [f["status"] for f in dry["files"]] == ["WOULD_LOAD"]  # the loaded movies file, loaded again


def test_transformer_reads_raw_and_cannot_change_it(loaded: Site) -> None:
    """dbt's sources are the RAW tables: NETFLIX_TRANSFORMER reads them and can change none of their rows."""
    (rows,) = loaded.sql("SELECT COUNT(*) FROM RAW.RATINGS", TRANSFORMER)[0]
    assert rows == loaded.sql("SELECT COUNT(*) FROM RAW.RATINGS")[0][0] > 0
    conn = loaded.login(TRANSFORMER)
    cur = conn.cursor()
    try:
        for statement in (
            "INSERT INTO RAW.RATINGS SELECT * FROM RAW.RATINGS LIMIT 1",
            "UPDATE RAW.RATINGS SET RATING = 5",
            "DELETE FROM RAW.RATINGS",
            "TRUNCATE TABLE RAW.RATINGS",
        ):
            _expect(
                ProgrammingError,
                3001,
                "Insufficient privileges to operate on table 'RATINGS'",
                lambda statement=statement: cur.execute(statement),
            )
    finally:
        conn.close()
    assert loaded.sql("SELECT COUNT(*) FROM RAW.RATINGS") == [(rows,)]


def test_loader_cannot_read_marts_drop_raw_tables_or_build_models(built: Site) -> None:
    conn = built.login(LOADER, schema="RAW")
    cur = conn.cursor()
    try:
        _expect(
            ProgrammingError,
            2003,
            "Object 'NETFLIX.MARTS.MART_MOVIE_RATINGS' does not exist or not authorized.",
            lambda: cur.execute("SELECT COUNT(*) FROM MARTS.MART_MOVIE_RATINGS"),
        )
        for table in ("RATINGS", "MOVIES"):  # tables the loader cannot even see
            _expect(
                ProgrammingError,
                2003,
                f"Table 'NETFLIX.RAW.{table}' does not exist or not authorized.",
                lambda table=table: cur.execute(f"DROP TABLE RAW.{table}"),
            )
        _expect(  # one it may read
            ProgrammingError,
            3001,
            "Insufficient privileges to operate on table 'LOAD_TRACKING'",
            lambda: cur.execute("DROP TABLE RAW.LOAD_TRACKING"),
        )
        with pytest.raises(ProgrammingError, match="MARTS"):
            cur.execute("CREATE TABLE NETFLIX.MARTS.LOADER_WAS_HERE (ID NUMBER)")
        _expect(
            ProgrammingError,
            3001,
            "on schema 'RAW'",
            lambda: cur.execute("CREATE TABLE RAW.LOADER_WAS_HERE (ID NUMBER)"),
        )
        _expect(
            ProgrammingError,
            2003,
            "Role 'NETFLIX_TRANSFORMER' does not exist or not authorized.",
            lambda: cur.execute("USE ROLE NETFLIX_TRANSFORMER"),
        )
    finally:
        conn.close()
    (ratings,) = built.sql("SELECT COUNT(*) FROM RAW.RATINGS")[0]
    assert ratings > 0  # still there
    assert built.sql("SHOW TABLES LIKE 'LOADER_WAS_HERE' IN SCHEMA NETFLIX.MARTS") == []


# -- the transformer -----------------------------------------------------------------------------------------------------


def test_transformer_builds_the_dbt_project_and_owns_what_it_builds(built: Site) -> None:
    assert built.build is not None
    failures = [(f["name"], f["message"]) for f in built.build.failures()]
    assert built.build.success, (built.build.exception, failures)
    counts = built.build.counts()
    models = len(list((REPO / "netflix_dbt" / "models").rglob("*.sql")))
    assert counts["model"] == {"success": models}
    assert counts["snapshot"] == {"success": 1}
    # the models belong to the transformer: the reporter is no owner, the loader cannot even see them
    (marts,) = built.sql("SELECT COUNT(*) FROM MARTS.MART_MOVIE_RATINGS", TRANSFORMER)[0]
    assert marts > 0


# -- the reporter ------------------------------------------------------------------------------------------------------


def test_reporter_reads_marts_and_core_and_writes_nothing(built: Site) -> None:
    (expected,) = built.sql("SELECT COUNT(*) FROM MARTS.MART_MOVIE_RATINGS")[0]
    assert built.sql("SELECT COUNT(*) FROM MARTS.MART_MOVIE_RATINGS", REPORTER) == [(expected,)]
    (movies,) = built.sql(
        "SELECT COUNT(*) FROM CORE.DIM_MOVIES m JOIN MARTS.MART_MOVIE_RATINGS r USING (MOVIE_ID)", REPORTER
    )[0]
    assert movies == expected
    conn = built.login(REPORTER, schema="MARTS")
    cur = conn.cursor()
    try:
        denied = {
            "INSERT INTO MARTS.MART_MOVIE_RATINGS SELECT * FROM MARTS.MART_MOVIE_RATINGS": "table 'MART_MOVIE_RATINGS'",
            "DELETE FROM MARTS.MART_MOVIE_RATINGS": "table 'MART_MOVIE_RATINGS'",
            "UPDATE CORE.DIM_MOVIES SET TITLE = 'x'": "table 'DIM_MOVIES'",
            "TRUNCATE TABLE MARTS.MART_MOVIE_RATINGS": "table 'MART_MOVIE_RATINGS'",
            "DROP TABLE MARTS.MART_MOVIE_RATINGS": "table 'MART_MOVIE_RATINGS'",
            "CREATE TABLE MARTS.REPORTER_WAS_HERE (ID NUMBER)": "schema 'MARTS'",
            "CREATE OR REPLACE VIEW CORE.DIM_MOVIES AS SELECT 1 AS X": "schema 'CORE'",
        }
        for statement, target in denied.items():
            _expect(
                ProgrammingError,
                3001,
                f"Insufficient privileges to operate on {target}",
                lambda statement=statement: cur.execute(statement),
            )
        _expect(
            ProgrammingError,
            2003,
            "Object 'NETFLIX.RAW.RATINGS' does not exist or not authorized.",
            lambda: cur.execute("SELECT COUNT(*) FROM (SELECT * FROM RAW.RATINGS) r"),
        )
        _expect(
            ProgrammingError,
            2003,
            "Procedure 'NETFLIX.RAW.LOAD_RAW_FILES' does not exist or not authorized.",
            lambda: cur.execute("CALL RAW.LOAD_RAW_FILES()"),
        )
    finally:
        conn.close()
    assert built.sql("SELECT COUNT(*) FROM MARTS.MART_MOVIE_RATINGS") == [(expected,)]


def test_roles_granted_to_roles_pass_their_privileges_on(loaded: Site) -> None:
    """A role granted to a role: its user has the granted role's privileges (here the loader's read of its tracking
    table), until the grant is revoked; a procedure runs with its owner's role, whoever calls it."""
    password = "Pw-" + secrets.token_urlsafe(12)  # pragma: allowlist secret (generated)
    loaded.sql("CREATE ROLE IF NOT EXISTS OPERATOR")
    loaded.sql("GRANT ROLE NETFLIX_LOADER TO ROLE OPERATOR")
    loaded.sql(f"CREATE USER OPERATOR_USER PASSWORD = '{password}' DEFAULT_ROLE = OPERATOR")
    loaded.sql("GRANT ROLE OPERATOR TO USER OPERATOR_USER")
    loaded.sql(
        "CREATE OR REPLACE PROCEDURE RAW.WHO_RUNS() RETURNS VARCHAR LANGUAGE PYTHON RUNTIME_VERSION = '3.11' "
        "PACKAGES = ('snowflake-snowpark-python') HANDLER = 'main' EXECUTE AS OWNER "
        "AS $$\ndef main(session):\n    return session.sql('SELECT CURRENT_ROLE()').collect()[0][0]\n$$"
    )
    loaded.sql("GRANT USAGE ON PROCEDURE RAW.WHO_RUNS() TO ROLE NETFLIX_LOADER")
    (tracked,) = loaded.sql("SELECT COUNT(*) FROM RAW.LOAD_TRACKING")[0]
    conn = loaded.login("OPERATOR_USER", password=password)
    try:
        cur = conn.cursor()
        assert cur.execute("SELECT COUNT(*) FROM RAW.LOAD_TRACKING").fetchone() == (tracked,)
        assert tracked > 0
        assert cur.execute("CALL RAW.WHO_RUNS()").fetchone() == ("ACCOUNTADMIN",)
        cur.execute("USE ROLE NETFLIX_LOADER")
        assert cur.execute("SELECT CURRENT_ROLE()").fetchone() == ("NETFLIX_LOADER",)
        loaded.sql("REVOKE ROLE NETFLIX_LOADER FROM ROLE OPERATOR")
        cur.execute("USE ROLE OPERATOR")
        with pytest.raises(ProgrammingError, match="does not exist or not authorized"):
            cur.execute("SELECT COUNT(*) FROM RAW.LOAD_TRACKING")
    finally:
        conn.close()
        loaded.sql("DROP PROCEDURE IF EXISTS RAW.WHO_RUNS()")


# -- key pairs -----------------------------------------------------------------------------------------------------------


def _key_pair(directory: Path, passphrase: str | None = None) -> tuple[Path, str]:
    """A new RSA key: the PEM private key file (encrypted with ``passphrase``) and the public key as
    ``ALTER USER ... SET RSA_PUBLIC_KEY`` takes it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
    )
    path = directory / f"key-{uuid.uuid4().hex[:8]}.p8"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    path.chmod(0o600)
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return path, base64.b64encode(public).decode()


def test_key_pair_login_checks_the_registered_public_key(site: Site, tmp_path: Path) -> None:
    first, first_public = _key_pair(tmp_path)
    second, second_public = _key_pair(tmp_path)
    site.sql("CREATE USER KEY_USER DEFAULT_ROLE = NETFLIX_REPORTER")
    site.sql("GRANT ROLE NETFLIX_REPORTER TO USER KEY_USER")
    site.sql(f"ALTER USER KEY_USER SET RSA_PUBLIC_KEY = '{first_public}'")
    described = dict((r[0], r[1]) for r in site.sql("DESC USER KEY_USER"))
    der = base64.b64decode(first_public)
    assert described["RSA_PUBLIC_KEY_FP"] == "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode()

    assert site.sql("SELECT CURRENT_USER(), CURRENT_ROLE()", "KEY_USER", private_key_file=str(first)) == [
        ("KEY_USER", "NETFLIX_REPORTER")
    ]
    _expect(
        DatabaseError, 390144, "JWT token is invalid.", lambda: site.login("KEY_USER", private_key_file=str(second))
    )
    # rotation: the second key is added, then the first removed
    site.sql(f"ALTER USER KEY_USER SET RSA_PUBLIC_KEY_2 = '{second_public}'")
    assert site.sql("SELECT CURRENT_USER()", "KEY_USER", private_key_file=str(second)) == [("KEY_USER",)]
    site.sql("ALTER USER KEY_USER UNSET RSA_PUBLIC_KEY")
    _expect(DatabaseError, 390144, "JWT token is invalid.", lambda: site.login("KEY_USER", private_key_file=str(first)))
    # a user without a password cannot log in with one
    _expect(
        DatabaseError, 390100, "Incorrect username or password", lambda: site.login("KEY_USER", password="anything")
    )


def test_an_encrypted_key_logs_the_pipeline_in(loaded: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    passphrase = "Phrase-" + secrets.token_urlsafe(12)
    key, public = _key_pair(tmp_path, passphrase)
    loaded.sql("CREATE USER LOADER_KEY_USER DEFAULT_ROLE = NETFLIX_LOADER")
    loaded.sql("GRANT ROLE NETFLIX_LOADER TO USER LOADER_KEY_USER")
    loaded.sql(f"ALTER USER LOADER_KEY_USER SET RSA_PUBLIC_KEY = '{public}'")
    monkeypatch.setenv("SNOWFLAKE_USER", "loader_key_user")
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY_PATH", str(key))
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE", passphrase)
    with pipeline.connect() as conn:
        cur = conn.cursor()
        assert cur.execute("SELECT CURRENT_USER(), CURRENT_ROLE()").fetchone() == ("LOADER_KEY_USER", "NETFLIX_LOADER")
    status = pipeline.status()
    assert sum(d["loaded"] for d in status["datasets"]) == 6
    assert status["staged_objects"] is None  # a loader may not LIST the stage: status says so instead of failing
    monkeypatch.setenv("SNOWFLAKE_PRIVATE_KEY_PASSPHRASE", "not-" + passphrase)
    with pytest.raises(Exception, match=r"(?i)decrypt|password") as caught, pipeline.connect():
        pass
    assert passphrase not in str(caught.value)


def test_airflow_and_cosmos_log_in_with_the_key_pair(
    built: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The DAG's connection, as `netflix-elt run/airflow` builds it from SNOWFLAKE_PRIVATE_KEY_PATH: the Snowflake
    provider logs in with it, and so does dbt with the profile Cosmos derives from it."""
    import yaml
    from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook
    from cosmos.profiles import SnowflakeEncryptedPrivateKeyFilePemProfileMapping

    from netflix_elt import orchestrate

    passphrase = "Phrase-" + secrets.token_urlsafe(12)
    key, public = _key_pair(tmp_path, passphrase)
    built.sql("CREATE USER AIRFLOW_USER DEFAULT_ROLE = NETFLIX_TRANSFORMER")
    built.sql("GRANT ROLE NETFLIX_TRANSFORMER TO USER AIRFLOW_USER")
    built.sql(f"ALTER USER AIRFLOW_USER SET RSA_PUBLIC_KEY = '{public}'")
    for name, value in {
        "SNOWFLAKE_USER": "AIRFLOW_USER",
        "SNOWFLAKE_ROLE": "NETFLIX_TRANSFORMER",
        "SNOWFLAKE_PRIVATE_KEY_PATH": str(key),
        "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": passphrase,
    }.items():
        monkeypatch.setenv(name, value)
    env = orchestrate.airflow_env(built.stack.settings)
    monkeypatch.setenv("AIRFLOW_CONN_SNOWFLAKE_DEFAULT", env["AIRFLOW_CONN_SNOWFLAKE_DEFAULT"])

    params = SnowflakeHook(snowflake_conn_id="snowflake_default")._get_conn_params()
    assert params["private_key"] and not params.get("password")
    conn = snowflake.connector.connect(**params, protocol="http", network_timeout=60)
    try:
        row = conn.cursor().execute("SELECT CURRENT_USER(), CURRENT_ROLE()").fetchone()
        assert row == ("AIRFLOW_USER", "NETFLIX_TRANSFORMER")
    finally:
        conn.close()

    mapping = SnowflakeEncryptedPrivateKeyFilePemProfileMapping(
        conn_id="snowflake_default",
        profile_args={"database": "NETFLIX", "schema": "ANALYTICS", "protocol": "http"},
    )
    assert passphrase not in yaml.safe_dump(mapping.profile)  # dbt reads it from the environment
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    outputs = {"airflow": mapping.profile}
    (profiles / "profiles.yml").write_text(yaml.safe_dump({"netflix_dbt": {"target": "airflow", "outputs": outputs}}))
    debug = transform.run_dbt(
        ["--quiet", "debug", "--connection", "--profiles-dir", str(profiles)],
        {**env, **mapping.env_vars, "DBT_LOG_PATH": str(tmp_path / "logs"), "DBT_TARGET_PATH": str(tmp_path / "t")},
    )
    assert debug.success, debug.exception


# -- what the pipeline prints --------------------------------------------------------------------------------------------


def _cli(site: Site, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k not in AUTH_VARIABLES}
    environment.update(
        {
            "NETFLIX_ELT_STACK_DIR": str(site.stack.root),
            "NETFLIX_ELT_S3_PORT": str(site.stack.s3.port),
            "NETFLIX_ELT_SNOWFLAKE_PORT": str(site.stack.snowflake.port),
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "netflix_elt", *args],
        env=environment,
        cwd=site.work,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_deploy_and_load_use_key_pairs_and_passwords_without_printing_them(loaded: Site, tmp_path: Path) -> None:
    passphrase = "Phrase-" + secrets.token_urlsafe(12)
    key, public = _key_pair(tmp_path, passphrase)
    unregistered, _ = _key_pair(tmp_path, passphrase)
    loaded.sql(f"ALTER USER {EMULATOR_USER} SET RSA_PUBLIC_KEY_2 = '{public}'")
    wrong = "Wrong-" + uuid.uuid4().hex  # pragma: allowlist secret (made up, refused)
    secrets_given = (passphrase, wrong, loaded.passwords[LOADER], loaded.admin_password)

    runs = {
        "deploy, key pair": (
            _cli(loaded, "deploy", SNOWFLAKE_PRIVATE_KEY_PATH=str(key), SNOWFLAKE_PRIVATE_KEY_PASSPHRASE=passphrase),
            0,
        ),
        "deploy, key not registered": (
            _cli(
                loaded,
                "deploy",
                SNOWFLAKE_PRIVATE_KEY_PATH=str(unregistered),
                SNOWFLAKE_PRIVATE_KEY_PASSPHRASE=passphrase,
            ),
            1,
        ),
        "load, loader's password": (
            _cli(loaded, "load", SNOWFLAKE_USER=LOADER, SNOWFLAKE_PASSWORD=loaded.passwords[LOADER]),
            0,
        ),
        "load, wrong password": (_cli(loaded, "load", SNOWFLAKE_USER=LOADER, SNOWFLAKE_PASSWORD=wrong), 1),
    }
    for name, (proc, expected) in runs.items():
        output = proc.stdout + proc.stderr
        assert (proc.returncode != 0) == bool(expected), f"{name}: {output[-3000:]}"
        for secret in secrets_given:
            assert secret not in output, name
    assert "NOTHING_TO_LOAD" in runs["load, loader's password"][0].stdout
    assert "JWT token is invalid." in runs["deploy, key not registered"][0].stderr
    assert "Incorrect username or password was specified." in runs["load, wrong password"][0].stderr
    logs = loaded.logs()
    for secret in secrets_given:
        assert secret not in logs


# -- the emulator on its own ---------------------------------------------------------------------------------------------


def test_an_emulator_without_an_administrator_password_says_it_accepts_anyone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from snowflake.emulator import server

    with pytest.raises(SystemExit):
        server.main(["--help"])
    helped = capsys.readouterr().out
    assert "SNOWFLAKE_EMULATOR_PASSWORD" in helped
    assert "any user and password are accepted" in helped
    env = {k: v for k, v in os.environ.items() if not k.startswith("SNOWFLAKE_")}
    port = free_port()
    log = tmp_path / "emulator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "snowflake.emulator", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        import time

        from netflix_elt.stack import port_open

        deadline = time.monotonic() + 30
        while not port_open(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        conn = snowflake.connector.connect(
            account="emulator",
            user="anyone",
            password="anything",  # pragma: allowlist secret (any password is accepted here)
            host="127.0.0.1",
            port=port,
            protocol="http",
            database="NETFLIX",
            schema="PUBLIC",
            network_timeout=60,
        )
        assert conn.cursor().execute("SELECT CURRENT_ROLE()").fetchone() == ("ACCOUNTADMIN",)
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert "every login is accepted" in log.read_text()


# -- the README's worksheet ----------------------------------------------------------------------------------------

README_KEY = "ratings/20261130T101555Z_f5f22011c16d0b20/ratings_20240721.csv"  # the README's example stage key


def _worksheet_blocks() -> list[str]:
    """The ```sql blocks of README.md's section "From a worksheet", in order."""
    text = (REPO / "README.md").read_text()
    section = text.split("## From a worksheet", 1)[1].split("\n## ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```sql\n")[1:]]


def _statements(block: str) -> list[str]:
    """A block's statements, without their comments (one statement may span lines; each ends with ';')."""
    lines = [line.split("--", 1)[0].rstrip() for line in block.splitlines()]
    return [s.strip() for s in "\n".join(line for line in lines if line).split(";") if s.strip()]


def test_the_readme_worksheet_runs_as_written_for_a_loader(loaded: Site, tmp_path: Path) -> None:
    """Every statement of README's worksheet section, as written, in a NETFLIX_LOADER session (the README's example
    stage key replaced by the key of a file staged here, with `four` for a rating on line 4 as in the example), and
    what each one shows. The full refresh block is for administrators: the loader is refused."""
    landing = tmp_path / "worksheet"
    landing.mkdir()
    (landing / "ratings_20240721.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,1721531786\n2,1,3.5,1721531787\n60,101167,four,1721531786\n"
        "61,1,5.0,1721531788\n"
    )
    (landing / "tags_20240721.csv").write_text("userId,movieId,tag,timestamp\n1,1,worksheet,1721531786\n")
    report = upload(landing, bucket="netflix-landing", prefix="movielens/", s3_client=loaded.stack.s3_client())
    (key,) = [k for k in report.uploaded_keys if k.startswith("ratings/")]
    blocks = [block.replace(README_KEY, key) for block in _worksheet_blocks()]
    calls, refresh, as_rows, reading, retry = blocks  # the README's five SQL blocks

    conn = loaded.login(LOADER)
    try:
        cur = conn.cursor()
        first, *other_calls = _statements(calls)[3:]
        for statement in _statements(calls)[:3]:  # USE ROLE, USE WAREHOUSE, USE SCHEMA
            cur.execute(statement)
        summary = json.loads(cur.execute(first).fetchone()[0])
        assert summary["status"] == "PARTIAL", summary
        files = {f["file"]: f for f in summary["files"]}
        assert (files[key]["status"], files[key]["rows_loaded"], files[key]["rows_rejected"]) == (
            "PARTIALLY_LOADED",
            3,
            1,
        )
        assert files[key]["first_error"] == "Numeric value 'four' is not recognized"
        # the same result as rows (RESULT_SCAN of the CALL, FLATTEN of its files): the emulator reads RESULT_SCAN
        # only as SELECT * FROM TABLE(RESULT_SCAN('<query id>')), so this statement is checked for its shape only
        (scan,) = _statements(as_rows)
        assert "FROM TABLE(RESULT_SCAN(LAST_QUERY_ID())) r, LATERAL FLATTEN(input => r.$1:files) f" in scan
        results = [json.loads(cur.execute(s).fetchone()[0]) for s in other_calls]
        assert [r["status"] for r in results] == ["DRY_RUN", "NOTHING_TO_LOAD", "NOTHING_TO_LOAD"], results

        # what was loaded: the last loads, files with rejects, the rejected rows of the file, its rows in RAW
        last_loads, with_rejects, set_key, its_rejects, its_rows = _statements(reading)
        assert summary["load_id"] in {r[0] for r in cur.execute(last_loads).fetchall()}
        assert (key, "PARTIALLY_LOADED", 4, 3, 1) in {r[:5] for r in cur.execute(with_rejects).fetchall()}
        cur.execute(set_key)
        assert cur.execute(its_rejects).fetchall() == [
            (
                4,
                '"LOAD_SHAPE_RATINGS"["RATING":3]',
                "Numeric value 'four' is not recognized",
                "60,101167,four,1721531786",
            )
        ]
        with pytest.raises(ProgrammingError, match="does not exist or not authorized"):
            cur.execute(its_rows)  # a loader may not read RAW's tables, as the README says
        reader = loaded.login(TRANSFORMER)
        try:
            rows = reader.cursor().execute(set_key).execute(its_rows).fetchall()
        finally:
            reader.close()
        assert sorted((r[0], r[1], float(r[2])) for r in rows) == [(1, 1, 4.0), (2, 1, 3.5), (61, 1, 5.0)]

        (again,) = _statements(retry)
        assert json.loads(cur.execute(again).fetchone()[0])["status"] == "NOTHING_TO_LOAD"

        # the full refresh block: a loader may not call it
        for statement in _statements(refresh):
            with pytest.raises(ProgrammingError, match="does not exist or not authorized"):
                cur.execute(statement)
    finally:
        conn.close()
