"""Settings, from the environment and an optional ``.env`` file in the working directory.

Every setting has a default that targets the local stack, so nothing needs configuring on a laptop. To point the
same code at a real Snowflake account and S3 bucket, set the variables below (in the shell or in ``.env``).

| variable | default (local stack) | meaning |
| --- | --- | --- |
| ``NETFLIX_ELT_STACK_DIR`` | ``.stack`` | where the local stack keeps its state, logs and credentials |
| ``NETFLIX_ELT_S3_PORT`` | ``9410`` | port of the local S3 server |
| ``NETFLIX_ELT_SNOWFLAKE_PORT`` | ``8410`` | port of the local Snowflake emulator |
| ``NETFLIX_ELT_AIRFLOW_PORT`` | ``8480`` | port of the local Airflow UI and API (``netflix-elt airflow``) |
| ``NETFLIX_ELT_DOCS_PORT`` | ``8580`` | port of the dbt docs server (``netflix-elt docs --serve``) |
| ``NETFLIX_ELT_LANDING_DIR`` | ``data/landing`` | landing directory the DAG uploads from |
| ``SNOWFLAKE_ACCOUNT`` | ``emulator`` | account identifier; anything but ``emulator`` means a real account |
| ``SNOWFLAKE_USER`` / ``SNOWFLAKE_PASSWORD`` | ``netflix_elt`` / generated | user and password (local: the emulator's administrator, password in ``.stack/credentials.env``) |
| ``SNOWFLAKE_PRIVATE_KEY_PATH`` | none | PEM private key: key-pair login instead of a password (local stack and real accounts; the user's ``RSA_PUBLIC_KEY``) |
| ``SNOWFLAKE_PRIVATE_KEY_PASSPHRASE`` | none | passphrase of an encrypted private key |
| ``SNOWFLAKE_HOST`` / ``SNOWFLAKE_PORT`` / ``SNOWFLAKE_PROTOCOL`` | the emulator | only set for the emulator |
| ``SNOWFLAKE_DATABASE`` / ``SNOWFLAKE_WAREHOUSE`` / ``SNOWFLAKE_ROLE`` | ``NETFLIX`` / ``COMPUTE_WH`` / none | where to work (none: the user's default role) |
| ``NETFLIX_ELT_BUCKET`` / ``NETFLIX_ELT_PREFIX`` | ``netflix-landing`` / ``movielens/`` | S3 location the stage reads |
| ``AWS_ENDPOINT_URL`` | the local S3 server | unset for real AWS (default credential chain) |
| ``NETFLIX_ELT_STORAGE_INTEGRATION`` | none | storage integration of the stage on a real account (``netflix-elt certify`` needs it) |
| ``NETFLIX_ELT_SNOWFLAKE_TIMEOUT`` | ``3600`` | seconds a client waits for Snowflake's answer to a statement, retrying a lost connection, before it gives up (a CALL then reports the lost connection) |
| ``NETFLIX_ELT_CERTIFY_PREFIX`` | ``<NETFLIX_ELT_PREFIX>_certify/`` | where ``netflix-elt certify`` stages its files, one folder per run (deleted at the end) |
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

LOCAL_ACCOUNT = "emulator"


def load_dotenv_file(path: Path | None = None) -> None:
    """Load ``.env`` (without overriding variables already set)."""
    try:
        from dotenv import load_dotenv
    except ImportError:  # pragma: no cover - python-dotenv is a dependency
        return
    load_dotenv(path or Path.cwd() / ".env", override=False)


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return value if value else default


@dataclass(frozen=True)
class Settings:
    stack_dir: Path
    s3_port: int
    snowflake_port: int
    airflow_port: int
    bucket: str
    prefix: str
    database: str
    warehouse: str
    storage_integration: str = ""
    certify_prefix: str = "movielens/_certify/"
    snowflake_timeout: float = 3600.0

    @classmethod
    def from_env(cls) -> Settings:
        load_dotenv_file()
        prefix = _env("NETFLIX_ELT_PREFIX", "movielens/")
        return cls(
            stack_dir=Path(_env("NETFLIX_ELT_STACK_DIR", ".stack")).resolve(),
            s3_port=int(_env("NETFLIX_ELT_S3_PORT", "9410")),
            snowflake_port=int(_env("NETFLIX_ELT_SNOWFLAKE_PORT", "8410")),
            airflow_port=int(_env("NETFLIX_ELT_AIRFLOW_PORT", "8480")),
            bucket=_env("NETFLIX_ELT_BUCKET", "netflix-landing"),
            prefix=prefix,
            database=_env("SNOWFLAKE_DATABASE", "NETFLIX"),
            warehouse=_env("SNOWFLAKE_WAREHOUSE", "COMPUTE_WH"),
            storage_integration=_env("NETFLIX_ELT_STORAGE_INTEGRATION", ""),
            # under the stage's prefix, so a storage integration allowed to read that prefix reads it too
            certify_prefix=_env("NETFLIX_ELT_CERTIFY_PREFIX", f"{prefix.strip('/')}/_certify/".lstrip("/")),
            snowflake_timeout=float(_env("NETFLIX_ELT_SNOWFLAKE_TIMEOUT", "3600")),
        )

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def stage_url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"
