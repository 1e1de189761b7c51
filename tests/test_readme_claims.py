"""Promises of README.md that no other test pins, checked without servers: the Makefile's targets, the contract table,
the tests the threat model and FIDELITY.md name, the settings' defaults and `.env`, the first migration, the
uploader's and the S3 client's defaults, the DAG's load gate, the marts' contracts, `netflix-elt reset`, and the
pinned dependencies. Each promise is a row of docs/claims.md."""

from __future__ import annotations

import argparse
import importlib.metadata
import inspect
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from netflix_elt import contracts
from tests.conftest import REPO
from tests.test_claims import missing_test

MiB = 1 << 20


def readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"\n## {title}\n" in text, f"README.md has no section {title!r}"
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def table_rows(text: str, header: list[str]) -> list[list[str]]:
    """The rows of the markdown table in ``text`` whose header is ``header``."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and [c.strip() for c in line.strip().strip("|").split(" | ")] == header:
            rows = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append([c.strip() for c in row.strip().removeprefix("| ").removesuffix(" |").split(" | ")])
            return rows
    raise AssertionError(f"no table with the columns {header}")


def unset(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """Remove variables for the test, also when code under test sets them again (load_dotenv): undone at the end."""
    for name in names:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def settings_variables() -> list[str]:
    return [k for k in os.environ if k.startswith(("NETFLIX_ELT_", "SNOWFLAKE_", "AWS_", "NETFLIX_DBT_"))]


# -- Two commands, Development: the Makefile ---------------------------------------------------------------------------


def make(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "TEST_WORKERS"}}
    return subprocess.run(["make", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)


def test_make_help_lists_every_target() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][a-z-]*):(?!=)", makefile, re.MULTILINE))
    assert {"help", "run", "test"} <= targets
    helped = make("-s", "help")
    assert helped.returncode == 0, helped.stderr
    listed = re.findall(r"^  make (\S+)\s+\S", helped.stdout, re.MULTILINE)
    assert sorted(listed) == sorted(targets), "make help must list every target once, with what it does"


def test_make_test_lints_type_checks_and_runs_pytest_on_three_workers_as_ci_does() -> None:
    planned = make("-n", "test")
    assert planned.returncode == 0, planned.stderr
    commands = planned.stdout.splitlines()

    def position(pattern: str) -> int:
        found = [i for i, c in enumerate(commands) if re.search(pattern, c)]
        assert found, f"make test does not run {pattern!r}:\n{planned.stdout}"
        return found[0]

    ruff = position(r"(^|/)ruff check \.$")
    ruff_format = position(r"(^|/)ruff format --check \.$")
    mypy = position(r"(^|/)mypy netflix_elt ")
    pytest_run = position(r"(^|/)pytest -n 3 ")
    assert max(ruff, ruff_format, mypy) < pytest_run, "lint and type-check come before the tests"
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == "make test"


# -- The six file contracts, Synthetic data ----------------------------------------------------------------------------


def test_the_readme_contract_table_is_the_contracts() -> None:
    rows = table_rows(readme_section("The six file contracts"), ["file", "header", "RAW table", "natural key"])
    expected = [
        [f"`{c.dataset}.csv`", f"`{c.header_line}`", f"`{c.qualified_raw_table}`", ", ".join(c.natural_key)]
        for c in contracts.CONTRACTS.values()
    ]
    assert sorted(rows) == sorted(expected)


def test_the_ml_32m_scale_has_the_full_datasets_ratings_count() -> None:
    from netflix_elt.generate import SCALES

    assert "32,000,204 ratings" in readme_section("Synthetic data")
    assert SCALES["ml-32m"].ratings == 32_000_204


# -- The local stack, Security: the tests the documents name -----------------------------------------------------------


def test_every_test_fidelity_md_names_exists() -> None:
    text = (REPO / "snowflake" / "emulator" / "FIDELITY.md").read_text(encoding="utf-8")
    header = ["Snowflake behaviour the production code relies on", "Snowflake documentation", "What the emulator does"]
    problems, rows = [], 0
    lines = text.splitlines()
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if not (line.startswith("|") and cells == [*header, "Pinned by"]):
            continue
        for row in lines[i + 2 :]:
            if not row.startswith("|"):
                break
            rows += 1
            pinned = row.rstrip().removesuffix("|").rsplit(" | ", 1)[-1]
            tests = re.findall(r"tests/[\w/]+\.py(?:::[\w\[\]-]+)+", pinned)
            if not tests:
                problems.append(f"no test pins: {row[:100]}")
            problems += [reason for t in tests if (reason := missing_test(t))]
    assert rows > 40, "FIDELITY.md's tables were not found"
    assert not problems, "\n".join(problems)


def test_every_test_the_threat_model_names_exists() -> None:
    rows = table_rows(readme_section("Security"), ["who", "trusted with", "cannot", "proved by"])
    assert len(rows) >= 8
    problems = []
    for who, *_, proof in rows:
        names = re.findall(r"`([^`]+)`", proof)
        if not names:
            problems.append(f"{who}: no test")
        file = ""
        for name in names:
            if name.startswith("::"):
                name = file + name
            file = name.split("::")[0]
            if "::" in name:
                if reason := missing_test(name):
                    problems.append(f"{who}: {reason}")
            elif not re.search(r"^def test_", (REPO / name).read_text() if (REPO / name).is_file() else "", re.M):
                problems.append(f"{who}: {name} is not a test file")
    assert not problems, "\n".join(problems)


# -- Settings: the local stack by default, a real account, .env -------------------------------------------------------


def test_the_local_stack_is_the_default_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from netflix_elt import pipeline
    from netflix_elt.config import Settings
    from netflix_elt.stack import LocalStack

    monkeypatch.chdir(tmp_path)  # no .env here
    unset(monkeypatch, *settings_variables())
    monkeypatch.setenv("NETFLIX_ELT_STACK_DIR", str(tmp_path / "stack"))

    settings = Settings.from_env()
    assert (settings.s3_port, settings.snowflake_port) == (9410, 8410)
    assert settings.snowflake_timeout == 3600  # NETFLIX_ELT_SNOWFLAKE_TIMEOUT: how long a lost CALL is retried
    assert (settings.bucket, settings.prefix, settings.database, settings.warehouse) == (
        "netflix-landing",
        "movielens/",
        "NETFLIX",
        "COMPUTE_WH",
    )
    assert pipeline.is_local()
    env = LocalStack(settings).env()
    assert {k: env[k] for k in ("SNOWFLAKE_ACCOUNT", "SNOWFLAKE_HOST", "SNOWFLAKE_PORT", "SNOWFLAKE_PROTOCOL")} == {
        "SNOWFLAKE_ACCOUNT": "emulator",
        "SNOWFLAKE_HOST": "127.0.0.1",
        "SNOWFLAKE_PORT": "8410",
        "SNOWFLAKE_PROTOCOL": "http",
    }
    assert env["AWS_ENDPOINT_URL"] == "http://127.0.0.1:9410"

    for account, local in (("emulator", True), ("", True), ("myorg-myaccount", False), ("xy12345.eu-west-1", False)):
        monkeypatch.setenv("SNOWFLAKE_ACCOUNT", account)
        assert pipeline.is_local() is local, account
    # a real account: schemachange and dbt get the caller's account, never the local stack's host, port or password
    target = pipeline.target_env()
    assert target["SNOWFLAKE_ACCOUNT"] == "xy12345.eu-west-1"
    assert not {"SNOWFLAKE_HOST", "SNOWFLAKE_PORT", "SNOWFLAKE_PROTOCOL", "SNOWFLAKE_PASSWORD"} & target.keys()


def test_a_dotenv_file_sets_what_the_environment_does_not(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from netflix_elt.config import Settings

    monkeypatch.chdir(tmp_path)
    unset(monkeypatch, *settings_variables(), "NETFLIX_ELT_BUCKET", "NETFLIX_ELT_PREFIX")  # .env sets them again
    dotenv = (
        "NETFLIX_ELT_BUCKET=bucket-from-dotenv\nNETFLIX_ELT_PREFIX=prefix-from-dotenv/\n"  # pragma: allowlist secret
    )
    (tmp_path / ".env").write_text(dotenv)
    monkeypatch.setenv("NETFLIX_ELT_PREFIX", "prefix-from-env/")
    settings = Settings.from_env()
    assert (settings.bucket, settings.prefix) == ("bucket-from-dotenv", "prefix-from-env/")


def _render_profile() -> dict[str, Any]:
    """netflix_dbt/profiles.yml rendered as dbt renders it: env_var(name) fails when unset, env_var(name, default)
    falls back to the default."""
    missing = object()

    def env_var(name: str, default: Any = missing) -> Any:
        if name in os.environ:
            return os.environ[name]
        if default is missing:
            raise KeyError(f"env_var({name!r}) is not set and has no default")
        return default

    text = (REPO / "netflix_dbt" / "profiles.yml").read_text(encoding="utf-8")
    rendered = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(text).render(env_var=env_var)
    profile: dict[str, Any] = yaml.safe_load(rendered)["netflix_dbt"]
    return profile


def test_connection_settings_default_as_documented(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from netflix_elt import pipeline

    monkeypatch.chdir(tmp_path)
    unset(monkeypatch, *settings_variables())
    for name, value in {
        "SNOWFLAKE_ACCOUNT": "myorg-myaccount",
        "SNOWFLAKE_USER": "DEPLOY_USER",
        "NETFLIX_ELT_BUCKET": "your-bucket",
        "NETFLIX_ELT_PREFIX": "movielens/",
    }.items():
        monkeypatch.setenv(name, value)

    env = pipeline.target_env()
    assert (env["SNOWFLAKE_WAREHOUSE"], env["SNOWFLAKE_DATABASE"]) == ("COMPUTE_WH", "NETFLIX")
    assert env["NETFLIX_ELT_STAGE_URL"] == "s3://your-bucket/movielens/"  # derived from the bucket and prefix
    monkeypatch.setenv("NETFLIX_ELT_STAGE_URL", "s3://elsewhere/landing/")
    assert pipeline.target_env()["NETFLIX_ELT_STAGE_URL"] == "s3://elsewhere/landing/"

    # dbt: target `local` unless NETFLIX_DBT_TARGET=snowflake, whose role defaults to NETFLIX_TRANSFORMER
    assert _render_profile()["target"] == "local"
    monkeypatch.setenv("NETFLIX_DBT_TARGET", "snowflake")
    profile = _render_profile()
    snowflake = profile["outputs"][profile["target"]]
    assert (snowflake["account"], snowflake["role"]) == ("myorg-myaccount", "NETFLIX_TRANSFORMER")
    assert (snowflake["warehouse"], snowflake["database"]) == ("COMPUTE_WH", "NETFLIX")
    monkeypatch.setenv("SNOWFLAKE_ROLE", "SOME_ROLE")
    assert _render_profile()["outputs"]["snowflake"]["role"] == "SOME_ROLE"


def test_reset_stops_the_stack_and_deletes_its_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from netflix_elt import cli

    monkeypatch.chdir(tmp_path)
    unset(monkeypatch, *settings_variables())
    root = tmp_path / "stack"
    monkeypatch.setenv("NETFLIX_ELT_STACK_DIR", str(root))
    (root / "s3" / "netflix-landing" / "movielens").mkdir(parents=True)
    (root / "s3" / "netflix-landing" / "movielens" / "ratings.csv").write_text("userId,movieId,rating,timestamp\n")
    (root / "credentials.env").write_text("SNOWFLAKE_PASSWORD=x\n")
    assert cli.main(["reset"]) == 0
    assert not root.exists()
    assert str(root) in capsys.readouterr().out


# -- Deploying: the first migration and the uploader's index ------------------------------------------------------------


def test_the_first_migration_creates_the_documented_database_schemas_and_warehouse() -> None:
    script = (REPO / "migrations" / "V1.0.0__database_schemas_warehouse.sql").read_text(encoding="utf-8")
    script = script.replace("{{ database }}", "NETFLIX").replace("{{ warehouse }}", "COMPUTE_WH")
    code = "\n".join(line.split("--", 1)[0] for line in script.splitlines())
    statements = {" ".join(s.split()).upper() for s in code.split(";") if s.strip()}
    warehouse = [s for s in statements if s.startswith("CREATE WAREHOUSE")]
    assert statements - set(warehouse) == {
        "CREATE DATABASE IF NOT EXISTS NETFLIX",
        "CREATE SCHEMA IF NOT EXISTS NETFLIX.RAW WITH MANAGED ACCESS",
        "CREATE SCHEMA IF NOT EXISTS NETFLIX.STAGING",
        "CREATE SCHEMA IF NOT EXISTS NETFLIX.CORE",
        "CREATE SCHEMA IF NOT EXISTS NETFLIX.MARTS",
        "CREATE SCHEMA IF NOT EXISTS NETFLIX.SNAPSHOTS",
    }
    (create,) = warehouse
    assert create.startswith("CREATE WAREHOUSE IF NOT EXISTS COMPUTE_WH ")
    properties = dict(re.findall(r"(\w+) = (\w+)", create))
    assert properties == {
        "WAREHOUSE_SIZE": "XSMALL",
        "AUTO_SUSPEND": "60",
        "AUTO_RESUME": "TRUE",
        "INITIALLY_SUSPENDED": "TRUE",
    }


def test_the_content_index_is_outside_the_stage_under_netflix_elt_index() -> None:
    from uploader import index_key

    assert "`your-bucket/_netflix_elt_index/*` (its" in " ".join(
        readme_section("Deploying to a real Snowflake account with schemachange").split()
    )
    key = index_key("movielens/", "ab" * 32)
    assert key.startswith("_netflix_elt_index/movielens/") and not key.startswith("movielens/")


# -- The uploader's and the S3 client's defaults ------------------------------------------------------------------------


def test_the_uploader_splits_plain_csv_files_over_256_mib_by_default(tmp_path: Path) -> None:
    from uploader import upload
    from uploader.cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args([str(tmp_path)]).split_threshold == 256 * MiB  # netflix-elt upload, python -m uploader
    assert inspect.signature(upload).parameters["split_threshold"].default == 256 * MiB  # the DAG's upload task


def test_s3_requests_are_tried_8_times_and_wait_60_s_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from uploader.core import s3_client_from_env

    monkeypatch.chdir(tmp_path)
    unset(monkeypatch, *settings_variables())
    for name, value in {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "unused",
        "AWS_SECRET_ACCESS_KEY": "unused",  # pragma: allowlist secret (made up; no request is sent)
    }.items():
        monkeypatch.setenv(name, value)

    config = s3_client_from_env().meta.config
    assert config.retries["total_max_attempts"] == 8
    assert (config.connect_timeout, config.read_timeout) == (60, 60)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    monkeypatch.setenv("NETFLIX_ELT_S3_TIMEOUT", "2")
    config = s3_client_from_env().meta.config
    assert config.retries["total_max_attempts"] == 3
    assert (config.connect_timeout, config.read_timeout) == (2, 2)


# -- Orchestrate: the load task's gate ----------------------------------------------------------------------------------


def load_summary(status: str, *, parsed: int, rejected: int, failed: int = 0, message: str = "") -> dict[str, Any]:
    """A load summary shaped as the procedure returns it (see README, From a worksheet)."""
    return {
        "status": status,
        "message": message or f"{status}: 1 file(s)",
        "load_id": "20261130T101556Z-412dd50f",
        "totals": {
            "files": 1 + failed,
            "loaded": 1,
            "partially_loaded": int(rejected > 0),
            "failed": failed,
            "duplicates": 0,
            "rows_parsed": parsed,
            "rows_loaded": parsed - rejected,
            "rows_rejected": rejected,
        },
        "files": [],
    }


def test_the_load_gate_fails_without_retry_on_a_failed_file_or_too_many_rejected_rows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    from netflix_elt.load_task import check_summary

    monkeypatch.delenv("NETFLIX_ELT_MAX_REJECTED_SHARE", raising=False)
    failed = load_summary(
        "FAILED", parsed=5, rejected=0, failed=1, message="1 file(s) failed: tags/20240726T000000Z_0/tags.csv.gz"
    )
    with pytest.raises(AirflowFailException) as caught:  # AirflowFailException: Airflow does not retry it
        check_summary(failed)
    assert str(caught.value) == "load failed: 1 file(s) failed: tags/20240726T000000Z_0/tags.csv.gz"

    with pytest.raises(AirflowFailException) as caught:
        check_summary(load_summary("PARTIAL", parsed=11, rejected=10))
    assert str(caught.value) == (
        "load rejected 10 of 11 rows (90.9%), above the allowed 1.0% (NETFLIX_ELT_MAX_REJECTED_SHARE); see "
        "RAW.LOAD_REJECTS for load 20261130T101556Z-412dd50f"
    )
    # the default limit is 1%: 2 rows of 100 are above it
    with pytest.raises(AirflowFailException):
        check_summary(load_summary("PARTIAL", parsed=100, rejected=2))
    monkeypatch.setenv("NETFLIX_ELT_MAX_REJECTED_SHARE", "0.05")
    assert check_summary(load_summary("PARTIAL", parsed=100, rejected=2))["status"] == "PARTIAL"


def test_the_load_gate_retries_a_waiting_load_and_passes_a_load_within_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException

    from netflix_elt.load_task import check_summary

    monkeypatch.delenv("NETFLIX_ELT_MAX_REJECTED_SHARE", raising=False)
    with pytest.raises(AirflowException) as caught:
        check_summary(load_summary("WAITING", parsed=10, rejected=0, message="1 file(s) held by another CALL"))
    assert not isinstance(caught.value, AirflowFailException), "a WAITING load is retried"
    assert "1 file(s) held by another CALL" in str(caught.value)

    within = load_summary("PARTIAL", parsed=100, rejected=1)
    assert check_summary(within) == within
    for status in ("SUCCESS", "NOTHING_TO_LOAD"):  # NOTHING_TO_LOAD: the task cleared after a partial load
        summary = load_summary(status, parsed=0 if status == "NOTHING_TO_LOAD" else 10, rejected=0)
        assert check_summary(summary) == summary


# -- Transform: the marts ------------------------------------------------------------------------------------------------


def test_every_mart_is_a_table_with_an_enforced_contract() -> None:
    marts = REPO / "netflix_dbt" / "models" / "marts"
    models = {}
    for path in marts.glob("*.yml"):
        for model in yaml.safe_load(path.read_text(encoding="utf-8")).get("models", []):
            models[model["name"]] = model
    names = sorted(p.stem for p in marts.glob("*.sql"))
    assert len(names) == 4 and sorted(models) == names
    project = yaml.safe_load((REPO / "netflix_dbt" / "dbt_project.yml").read_text(encoding="utf-8"))
    assert project["models"]["netflix_dbt"]["marts"]["+materialized"] == "table"
    for name, model in models.items():
        assert model.get("config", {}).get("contract") == {"enforced": True}, name
        untyped = [c["name"] for c in model["columns"] if not c.get("data_type")]
        assert model["columns"] and not untyped, (name, untyped)
        sql = (marts / f"{name}.sql").read_text(encoding="utf-8")
        assert not re.search(r"materialized\s*=\s*'(view|ephemeral)'", sql), name


# -- Development: the pins -----------------------------------------------------------------------------------------------


def test_the_main_pins_are_the_locked_and_installed_versions() -> None:
    development = readme_section("Development")
    bullet = " ".join(development.split("Main pins:", 1)[1].split("\n- ", 1)[0].split())
    pins = dict(re.findall(r"([A-Za-z][\w.-]*) (\d[\w.]*\d)", bullet))
    assert len(pins) >= 10, bullet

    lock = (REPO / "requirements.lock").read_text(encoding="utf-8").splitlines()
    entries = [line for line in lock if line.strip() and not line.lstrip().startswith("#")]
    unpinned = [e for e in entries if not re.fullmatch(r"[A-Za-z0-9][\w.-]*(\[[\w,.-]+\])?==[\w.+!-]+( ; .+)?", e)]
    assert not unpinned, f"requirements.lock entries without an exact version: {unpinned}"
    locked = {
        re.split(r"[\[=]", e, maxsplit=1)[0].lower().replace("_", "-"): e.split("==")[1].split(" ")[0] for e in entries
    }

    for name, version in pins.items():
        assert locked.get(name.lower()) == version, (
            f"README pins {name} {version}, requirements.lock {locked.get(name)}"
        )
        assert importlib.metadata.version(name) == version, f"{name} installed is not the locked {version}"


def test_make_airflow_starts_every_airflow_component_on_127_0_0_1(tmp_path: Path) -> None:
    """The environment `make airflow` gives `airflow standalone`: the API server (UI and REST API) on 127.0.0.1 at
    the chosen port, the URLs its components reach it by on 127.0.0.1, the scheduler's health check on 127.0.0.1 and
    the log servers found by the loopback host name (tests/test_airflow_ui.py checks the sockets of a running one)."""
    from urllib.parse import urlsplit

    from netflix_elt import orchestrate

    env = orchestrate.standalone_env({"PATH": "/usr/bin", "AIRFLOW_HOME": str(tmp_path)}, 8123, tmp_path / "pw.json")
    assert (env["AIRFLOW__API__HOST"], env["AIRFLOW__API__PORT"]) == ("127.0.0.1", "8123")
    for name in ("AIRFLOW__API__BASE_URL", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL"):
        url = urlsplit(env[name])
        assert (url.scheme, url.hostname, url.port) == ("http", "127.0.0.1", 8123), (name, env[name])
    assert env["AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST"] == "127.0.0.1"
    # the host name callable, from the airflow_local_settings.py `make airflow` writes into Airflow's home
    module, function = env["AIRFLOW__CORE__HOSTNAME_CALLABLE"].rsplit(".", 1)
    orchestrate.write_local_settings(env)
    namespace: dict[str, Any] = {"__name__": module}
    exec((tmp_path / "config" / f"{module}.py").read_text(), namespace)
    assert namespace[function]() == "127.0.0.1"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] == str(tmp_path / "pw.json")
