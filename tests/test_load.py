"""Extract & load on the local stack: schemachange migrations, the uploader, and CALL RAW.LOAD_RAW_FILES."""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import re
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from netflix_elt import contracts, pipeline
from netflix_elt.generate import generate_daily
from netflix_elt.stack import LocalStack
from tests import snapshots
from tests.conftest import REPO, snowpark_session, sql, upload_to

RAW_COUNTS_SQL = {c.dataset: f"SELECT COUNT(*) FROM {c.qualified_raw_table}" for c in contracts.CONTRACTS.values()}


@pytest.fixture(scope="module")
def deployed(deployment: tuple[LocalStack, snapshots.Deployed]) -> LocalStack:
    stack, first = deployment
    if not first.restored:  # the first deploy applies every script (a snapshot's stack had them applied)
        assert first.proc is not None
        assert pipeline.applied_scripts(first.proc) == len(list((REPO / "migrations").glob("*.sql")))
    return stack


def raw_counts(stack: LocalStack) -> dict[str, int]:
    return {d: sql(stack, q)[0][0] for d, q in RAW_COUNTS_SQL.items()}


# -- migrations ------------------------------------------------------------------------------------------------------


def test_second_deploy_applies_nothing(deployed: LocalStack) -> None:
    again = pipeline.deploy(deployed.settings, quiet=True)
    assert again.returncode == 0
    assert pipeline.applied_scripts(again) == 0
    names = {r[1] for r in sql(deployed, "SHOW ROLES")}
    assert {"NETFLIX_LOADER", "NETFLIX_TRANSFORMER", "NETFLIX_REPORTER"} <= names


LOAD_PROCEDURE = "NETFLIX.RAW.LOAD_RAW_FILES(ARRAY, BOOLEAN, ARRAY, BOOLEAN)"
FULL_REFRESH_PROCEDURE = "NETFLIX.RAW.FULL_REFRESH_RAW_FILES(ARRAY, BOOLEAN)"


def test_roles_are_least_privilege(deployed: LocalStack) -> None:
    """Each role holds what its job needs and nothing more: the loader only calls the load procedure and reads what
    it recorded; the procedures' owner (they run with its rights) uses the stage and file formats and writes RAW."""
    loader = {(r[1], r[2], r[3]) for r in sql(deployed, "SHOW GRANTS TO ROLE NETFLIX_LOADER")}
    assert loader == {
        ("USAGE", "WAREHOUSE", "COMPUTE_WH"),
        ("USAGE", "DATABASE", "NETFLIX"),
        ("USAGE", "SCHEMA", "NETFLIX.RAW"),
        ("USAGE", "PROCEDURE", LOAD_PROCEDURE),
        ("SELECT", "TABLE", "NETFLIX.RAW.LOAD_TRACKING"),
        ("SELECT", "TABLE", "NETFLIX.RAW.LOAD_REJECTS"),
    }
    owner = {(r[1], r[2], r[3]) for r in sql(deployed, "SHOW GRANTS TO ROLE NETFLIX_LOAD_PROCEDURE")}
    assert {("OWNERSHIP", "PROCEDURE", LOAD_PROCEDURE), ("OWNERSHIP", "PROCEDURE", FULL_REFRESH_PROCEDURE)} <= owner
    assert ("USAGE", "STAGE", "NETFLIX.RAW.LANDING") in owner
    raw_tables = {f"NETFLIX.RAW.{r[1]}" for r in sql(deployed, "SHOW TABLES IN SCHEMA NETFLIX.RAW")}
    for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE"):
        assert {name for p, kind, name in owner if p == privilege and kind == "TABLE"} == raw_tables
    others = {
        (p, kind, name)
        for p, kind, name in owner
        if not (kind == "TABLE" and name in raw_tables) and p != "OWNERSHIP" and kind != "STAGE"
    }
    assert others == {
        ("USAGE", "DATABASE", "NETFLIX"),
        ("USAGE", "SCHEMA", "NETFLIX.RAW"),
        ("USAGE", "FILE_FORMAT", "NETFLIX.RAW.CSV_MOVIELENS"),
        ("USAGE", "FILE_FORMAT", "NETFLIX.RAW.CSV_MOVIELENS_LOAD"),
    }
    # no role holds USAGE on the full refresh: only the owner's role and the roles above it may call it
    for role in {r[1] for r in sql(deployed, "SHOW ROLES")} - {"NETFLIX_LOAD_PROCEDURE"}:
        grants = sql(deployed, f"SHOW GRANTS TO ROLE {role}")
        assert not any(r[2] == "PROCEDURE" and "FULL_REFRESH" in r[3] for r in grants), role
    reporter = sql(deployed, "SHOW GRANTS TO ROLE NETFLIX_REPORTER")
    assert {r[1] for r in reporter} <= {"USAGE"}  # table access comes only from future SELECT grants
    future = sql(deployed, "SHOW FUTURE GRANTS IN SCHEMA NETFLIX.MARTS")
    assert {(r[1], r[5]) for r in future} == {("SELECT", "NETFLIX_REPORTER")}
    raw_future = {(r[1], r[5]) for r in sql(deployed, "SHOW FUTURE GRANTS IN SCHEMA NETFLIX.RAW")}
    assert {role for _, role in raw_future} == {"NETFLIX_LOAD_PROCEDURE", "NETFLIX_TRANSFORMER"}


def test_a_new_version_script_migrates_an_existing_database(deployed: LocalStack, tmp_path: Path) -> None:
    root = tmp_path / "migrations"
    shutil.copytree(REPO / "migrations", root)
    (root / "V9.9.0__add_column.sql").write_text(
        "ALTER TABLE {{ database }}.RAW.LOAD_TRACKING ADD COLUMN IF NOT EXISTS NOTE VARCHAR;\n"
    )
    proc = pipeline.deploy(deployed.settings, quiet=True, root=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert pipeline.applied_scripts(proc) == 1
    assert "NOTE" in [r[0] for r in sql(deployed, "DESCRIBE TABLE RAW.LOAD_TRACKING")]


def _render(path: Path) -> str:
    text = path.read_text()
    return text.replace("{{ database }}", "NETFLIX").replace("{{ warehouse }}", "COMPUTE_WH")


def _type(sql_type: str) -> str:
    return exp.DataType.build(sql_type, dialect="snowflake").sql("snowflake")


def _tables(script: str) -> dict[str, list[tuple[str, str, bool]]]:
    """{table: [(column, type, NOT NULL)]} of the CREATE TABLE statements of a migration script."""
    tables = {}
    for statement in sqlglot.parse(_render(REPO / "migrations" / script), read="snowflake"):
        if isinstance(statement, exp.Create) and statement.kind == "TABLE":
            schema = statement.this
            name = schema.this.name
            tables[name] = [
                (
                    c.name,
                    c.args["kind"].sql("snowflake"),
                    any(isinstance(k.args.get("kind"), exp.NotNullColumnConstraint) for k in c.constraints),
                )
                for c in schema.expressions
                if isinstance(c, exp.ColumnDef)
            ]
    return tables


def test_raw_tables_match_the_contracts() -> None:
    tables = _tables("V1.2.0__raw_tables.sql")
    assert set(tables) == {c.raw_table for c in contracts.CONTRACTS.values()}
    for c in contracts.CONTRACTS.values():
        expected = [(col.raw_name, _type(col.sql_type), not col.nullable) for col in c.columns] + [
            (name, _type(t), True) for name, t in contracts.LINEAGE_COLUMNS
        ]
        got = tables[c.raw_table]
        assert got == expected, c.dataset


def test_validation_shape_tables_match_the_contracts() -> None:
    # the always empty targets of the procedure's VALIDATION_MODE re-read: exactly a file's columns
    shapes = {
        t: cols for t, cols in _tables("V1.5.0__load_lock_file_format_and_shapes.sql").items() if t != "LOAD_LOCK"
    }
    assert shapes == {
        f"LOAD_SHAPE_{c.raw_table}": [(col.raw_name, _type(col.sql_type), not col.nullable) for col in c.columns]
        for c in contracts.CONTRACTS.values()
    }


def _file_format(script: str) -> dict[str, str]:
    (create,) = [
        s
        for s in sqlglot.parse(_render(REPO / "migrations" / script), read="snowflake")
        if isinstance(s, exp.Create) and s.kind == "FILE FORMAT"
    ]
    properties = create.args["properties"].expressions
    return {p.name.upper(): p.args["value"].sql("snowflake") for p in properties if type(p) is exp.Property}


def test_load_file_format_reads_like_the_stage_one_except_for_missing_fields() -> None:
    stage = _file_format("V1.1.0__file_format.sql")
    load = _file_format("V1.5.0__load_lock_file_format_and_shapes.sql")
    differ = {"EMPTY_FIELD_AS_NULL", "NULL_IF", "ERROR_ON_COLUMN_COUNT_MISMATCH"}
    assert {k: v for k, v in load.items() if k not in differ} == {k: v for k, v in stage.items() if k not in differ}
    # an empty field is '' and no text is NULL, so a NULL field is a missing one (the procedure's SELECT makes ''
    # and \N NULL, as the stage format reads them; Snowflake's default NULL_IF is \N)
    assert (load["EMPTY_FIELD_AS_NULL"], load["NULL_IF"]) == ("FALSE", "()")
    assert "NULL_IF" not in stage and stage["EMPTY_FIELD_AS_NULL"] == "TRUE"
    assert stage["ERROR_ON_COLUMN_COUNT_MISMATCH"] == "TRUE"  # the validation re-read reports wrong field counts


def test_file_format_matches_the_contracts() -> None:
    ddl = _render(REPO / "migrations" / "V1.1.0__file_format.sql")
    assert "SKIP_HEADER = 1" in ddl  # one header line, as every contract has
    assert "FIELD_OPTIONALLY_ENCLOSED_BY = '\"'" in ddl
    assert "FIELD_DELIMITER = ','" in ddl


# functions (and CASE) Snowflake documents for COPY transformations that the procedure's COPY may use, as sqlglot
# names them: https://docs.snowflake.com/en/user-guide/data-load-transform#supported-functions
COPY_FUNCTIONS = {"Case", "If", "Cast", "Nullif", "Or"}


def test_copy_rejects_wrong_field_counts_with_documented_functions_only() -> None:
    from snowflake.procedures.load_raw_files import copy_statement

    for c in contracts.CONTRACTS.values():
        copy = copy_statement(c, [f"{c.dataset}/20261130T061502Z_3f2a9c0d1e4b5a6f/{c.dataset}.csv"], "id")
        n = len(c.columns)
        # a row with too few or too many fields gets NULL in its first column, which is NOT NULL: rejected
        assert f"CASE WHEN ${n} IS NULL OR ${n + 1} IS NOT NULL THEN NULL ELSE" in copy, c.dataset
        assert not c.columns[0].nullable, c.dataset
        assert "FORMAT_NAME = 'RAW.CSV_MOVIELENS_LOAD'" in copy
        select = sqlglot.parse_one(copy, read="snowflake").find(exp.Select)
        assert select is not None
        assert {type(f).__name__ for f in select.find_all(exp.Func)} <= COPY_FUNCTIONS, c.dataset


def test_discovery_lists_a_few_date_prefixes_whatever_the_history() -> None:
    from snowflake.procedures.load_raw_files import date_prefixes

    d = dt.date
    assert date_prefixes(d(2026, 11, 29), d(2026, 11, 30)) == ["20261129", "20261130"]
    assert date_prefixes(d(2026, 11, 30), d(2026, 11, 30)) == ["20261130"]
    assert date_prefixes(d(2026, 10, 30), d(2026, 11, 30)) == ["202610", "202611"]
    assert date_prefixes(d(2025, 12, 1), d(2026, 1, 2)) == ["202512", "202601"]
    assert date_prefixes(d(2024, 6, 1), d(2026, 1, 2)) == ["2024", "2025", "2026"]
    assert date_prefixes(d(2019, 1, 1), d(2026, 1, 2)) == [""]  # a long gap: the whole dataset folder


def test_procedure_script_inlines_contracts_and_handler_whole() -> None:
    script = (REPO / "migrations" / "R__load_raw_files.sql").read_text()
    includes = re.findall(r"\{% include '([^']+)' %\}", script)
    assert includes == ["modules/netflix_elt/contracts.py", "modules/snowflake/procedures/load_raw_files.py"]
    for inc in includes:
        text = (REPO / inc.removeprefix("modules/")).read_text()
        # Jinja would otherwise rewrite the inlined Python
        assert not re.search(r"\{\{|\{%|\{#", text), inc
    # the handler imports nothing outside the standard library and Snowpark (Snowflake's sandbox)
    handler = (REPO / "snowflake/procedures/load_raw_files.py").read_text()
    imports = set(re.findall(r"^\s*(?:from|import) (\w+)", handler, re.MULTILINE))
    assert imports <= {"datetime", "time", "types", "uuid", "json", "re", "netflix_elt", "snowflake"}


# -- upload -> CALL ----------------------------------------------------------------------------------------------------


def test_real_sample_loads_exactly_and_reruns_change_nothing(deployed: LocalStack, sample_dir: Path) -> None:
    report = upload_to(deployed, sample_dir)
    assert len(report.uploaded_keys) == 4
    summary = pipeline.load(report.uploaded_keys)
    assert summary["status"] == "SUCCESS", summary["message"]
    counts = raw_counts(deployed)
    assert (counts["ratings"], counts["movies"], counts["tags"], counts["links"]) == (100_836, 9_742, 3_683, 9_742)
    tracked = dict(
        (r[0], r[1:])
        for r in sql(deployed, "SELECT DATASET, STATUS, ROWS_PARSED, ROWS_LOADED, ROWS_REJECTED FROM RAW.LOAD_TRACKING")
    )
    assert tracked["ratings"] == ("LOADED", 100_836, 100_836, 0)
    assert tracked["movies"] == ("LOADED", 9_742, 9_742, 0)
    # lineage: every row knows its file and row number
    assert sql(
        deployed, "SELECT MIN(SOURCE_ROW_NUMBER), MAX(SOURCE_ROW_NUMBER), COUNT(DISTINCT SOURCE_FILE) FROM RAW.RATINGS"
    )[0] == (1, 100_836, 1)

    again = upload_to(deployed, sample_dir)
    assert again.uploaded_keys == []
    assert pipeline.load()["status"] == "NOTHING_TO_LOAD"
    assert raw_counts(deployed) == counts


def _one_file(tmp: Path, src: Path, name: str | None = None) -> Path:
    landing = tmp / f"landing-{name or src.name}"
    landing.mkdir()
    shutil.copy(src, landing / (name or src.name))
    return landing


def test_daily_file_loads_alone(deployed: LocalStack, tmp_path: Path) -> None:
    daily = tmp_path / "daily"
    generate_daily(daily, dt.date(2024, 7, 21), scale="tiny", seed=7)
    ratings = daily / "ratings_20240721.csv"
    rows = sum(1 for _ in ratings.open()) - 1
    before = raw_counts(deployed)
    report = upload_to(deployed, _one_file(tmp_path, ratings))
    summary = pipeline.load()  # discovery: only the new file is not tracked yet
    assert [(f["file"], f["status"], f["rows_loaded"]) for f in summary["files"]] == [
        (report.uploaded_keys[0], "LOADED", rows)
    ]
    after = raw_counts(deployed)
    assert after["ratings"] == before["ratings"] + rows
    assert {k: v for k, v in after.items() if k != "ratings"} == {k: v for k, v in before.items() if k != "ratings"}


BAD_RATINGS = (
    "userId,movieId,rating,timestamp\n"
    "1,1,4.0,964982703\n"
    "1,3,four,964981247\n"  # non-numeric rating
    "1,6,4.0\n"  # missing field
    "1,47,5.0,964983815,7\n"  # extra field
    "1,50,5.0,964982931\n"
)


def test_malformed_rows_are_rejected_with_line_and_reason(deployed: LocalStack, tmp_path: Path) -> None:
    landing = tmp_path / "bad"
    landing.mkdir()
    (landing / "ratings_20240801.csv").write_bytes(BAD_RATINGS.encode() + b"2,\xff\xfe,3.0,964982931\n")
    report = upload_to(deployed, landing)
    summary = pipeline.load(report.uploaded_keys)
    (f,) = summary["files"]
    assert f["status"] == "PARTIALLY_LOADED", f.get("first_error")
    assert (f["rows_parsed"], f["rows_loaded"], f["rows_rejected"]) == (6, 2, 4)
    assert summary["status"] == "PARTIAL"
    rejects = sql(
        deployed,
        f"SELECT LINE, ERROR, REJECTED_RECORD FROM RAW.LOAD_REJECTS WHERE FILE_KEY = '{f['file']}' ORDER BY LINE",
    )
    assert [r[0] for r in rejects] == [3, 4, 5, 7]
    assert "Numeric value 'four' is not recognized" in rejects[0][1]
    assert "Number of columns in file (3)" in rejects[1][1]
    assert "Number of columns in file (5)" in rejects[2][1]
    assert "Invalid UTF8" in rejects[3][1]
    tracked = sql(
        deployed,
        f"SELECT ROWS_PARSED, ROWS_LOADED, ROWS_REJECTED FROM RAW.LOAD_TRACKING WHERE FILE_KEY = '{f['file']}'",
    )
    assert tracked == [(6, 2, 4)]


def test_same_content_under_a_new_name_is_not_loaded_twice(deployed: LocalStack, tmp_path: Path) -> None:
    daily = tmp_path / "daily"
    generate_daily(daily, dt.date(2024, 7, 22), scale="tiny", seed=8)
    first = upload_to(deployed, _one_file(tmp_path, daily / "tags_20240722.csv"))
    pipeline.load(first.uploaded_keys)
    tags = raw_counts(deployed)["tags"]
    # the uploader already refuses to upload known content; forced, the procedure still sees it is the same
    renamed = upload_to(deployed, _one_file(tmp_path, daily / "tags_20240722.csv", "tags_20240723.csv"), force=True)
    summary = pipeline.load(renamed.uploaded_keys)
    (f,) = summary["files"]
    assert f["status"] == "DUPLICATE"
    assert f["duplicate_of"] == first.uploaded_keys[0]
    assert raw_counts(deployed)["tags"] == tags


def test_dry_run_and_dataset_filter_change_nothing(deployed: LocalStack, tmp_path: Path) -> None:
    daily = tmp_path / "daily"
    generate_daily(daily, dt.date(2024, 7, 24), scale="tiny", seed=9)
    upload_to(deployed, daily)
    before = raw_counts(deployed)
    dry = pipeline.load(dry_run=True, datasets=["movies"])
    assert dry["status"] == "DRY_RUN"
    assert [f["dataset"] for f in dry["files"]] == ["movies"]
    assert raw_counts(deployed) == before
    only_movies = pipeline.load(datasets=["movies"])
    assert {f["dataset"] for f in only_movies["files"]} == {"movies"}
    rest = pipeline.load()
    assert "movies" not in {f["dataset"] for f in rest["files"]}


def test_two_concurrent_calls_each_return_a_result_and_load_each_file_once(
    deployed: LocalStack, tmp_path: Path
) -> None:
    daily = tmp_path / "daily"
    generate_daily(daily, dt.date(2024, 7, 25), scale="tiny", seed=10)
    ratings = daily / "ratings_20240725.csv"
    rows = sum(1 for _ in ratings.open()) - 1
    before = raw_counts(deployed)["ratings"]
    (key,) = upload_to(deployed, _one_file(tmp_path, ratings)).uploaded_keys
    results: list[Any] = []
    start = threading.Barrier(2)

    def call() -> None:
        start.wait()
        try:
            results.append(pipeline.load([key]))
        except BaseException as e:  # recorded: the assertion below shows it
            results.append(e)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(results) == 2 and all(isinstance(r, dict) for r in results), results  # neither CALL failed
    outcomes = sorted(
        ((r["status"], [(f["file"], f["status"], f["rows_loaded"]) for f in r["files"]]) for r in results),
        key=lambda o: o[0] != "SUCCESS",
    )
    # one CALL loaded the file; the other found it loaded already, or held by the first (then it says so)
    assert outcomes[0] == ("SUCCESS", [(key, "LOADED", rows)]), outcomes
    assert outcomes[1] in (("NOTHING_TO_LOAD", []), ("WAITING", [(key, "SKIPPED", 0)])), outcomes
    skipped = [f for r in results for f in r["files"] if f["status"] == "SKIPPED"]
    assert all("being loaded by CALL" in f["first_error"] for f in skipped), skipped
    assert raw_counts(deployed)["ratings"] == before + rows


def test_a_call_claims_its_files_only_when_the_claim_lock_is_free(deployed: LocalStack, tmp_path: Path) -> None:
    """CALLs take turns to claim files: while another session holds RAW.LOAD_LOCK (as a CALL does while it claims),
    a CALL waits, claims nothing, and loads its file once the lock is released."""
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "ratings_20240727.csv").write_text("userId,movieId,rating,timestamp\n727,1,3.5,1722038400\n")
    (key,) = upload_to(deployed, landing).uploaded_keys
    results: list[Any] = []

    def call() -> None:
        try:
            results.append(pipeline.load([key]))
        except BaseException as e:  # recorded: the assertion below shows it
            results.append(e)

    with deployed.connect(schema="RAW", autocommit=False) as holder:
        holder.cursor().execute("UPDATE RAW.LOAD_LOCK SET HELD_BY = 'another CALL'")
        caller = threading.Thread(target=call)
        caller.start()
        caller.join(timeout=5)
        waited = caller.is_alive()
        claimed = sql(deployed, f"SELECT STATUS FROM RAW.LOAD_TRACKING WHERE FILE_KEY = '{key}'")
        holder.rollback()
    caller.join(timeout=300)
    assert waited and claimed == [], (results, claimed)  # the CALL waited for the lock before claiming anything
    assert len(results) == 1 and isinstance(results[0], dict), results
    assert [(f["file"], f["status"], f["rows_loaded"]) for f in results[0]["files"]] == [(key, "LOADED", 1)]


def test_failed_file_does_not_lose_the_others(deployed: LocalStack, tmp_path: Path) -> None:
    daily = tmp_path / "daily"
    generate_daily(daily, dt.date(2024, 7, 26), scale="tiny", seed=11)
    good = upload_to(deployed, _one_file(tmp_path, daily / "ratings_20240726.csv"))
    # a truncated gzip staged by another writer (the uploader itself refuses to upload one), loaded before the
    # ratings file (a CALL loads its files in key order)
    data = gzip.compress((daily / "links_20240726.csv").read_bytes())
    bad_key = contracts.stage_key("links", "20240726T000000Z", "0" * 64, "links_20240726.csv.gz")
    assert bad_key < good.uploaded_keys[0]
    deployed.s3_client().put_object(
        Bucket=deployed.settings.bucket, Key=deployed.settings.prefix + bad_key, Body=data[: len(data) // 2]
    )
    summary = pipeline.load([bad_key, *good.uploaded_keys])
    by_dataset = {f["dataset"]: f for f in summary["files"]}
    assert sorted(by_dataset) == ["links", "ratings"], summary  # the file after the failed one has its result too
    assert by_dataset["ratings"]["status"] == "LOADED"
    assert by_dataset["links"]["status"] == "FAILED", by_dataset["links"]
    assert "decompression" in by_dataset["links"]["first_error"]
    assert summary["status"] == "FAILED"
    assert bad_key in summary["message"]
    tracked = sql(deployed, f"SELECT STATUS, FIRST_ERROR FROM RAW.LOAD_TRACKING WHERE FILE_KEY = '{bad_key}'")
    assert tracked[0][0] == "FAILED" and tracked[0][1]
    # a CALL without FILES lists only recent uploads, and still tries the failed file again (staged long before)
    again = pipeline.load()
    assert [(f["file"], f["status"]) for f in again["files"]] == [(bad_key, "FAILED")]
    assert sql(deployed, f"SELECT ATTEMPTS FROM RAW.LOAD_TRACKING WHERE FILE_KEY = '{bad_key}'") == [(2,)]


def test_worksheet_call_with_defaults_and_named_arguments(deployed: LocalStack, tmp_path: Path) -> None:
    import json

    (dry,) = sql(deployed, "CALL RAW.LOAD_RAW_FILES(DRY_RUN => TRUE)")[0]
    assert json.loads(dry)["status"] == "DRY_RUN"
    # a new tags file, and the truncated file test_failed_file_does_not_lose_the_others staged: every CALL without
    # FILES tries a FAILED file again
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "tags_20240728.csv").write_text("userId,movieId,tag,timestamp\n3,1,from a worksheet,1722124800\n")
    (key,) = upload_to(deployed, landing).uploaded_keys
    (failed,) = sql(deployed, "SELECT FILE_KEY FROM RAW.LOAD_TRACKING WHERE STATUS = 'FAILED'")[0]
    (result,) = sql(deployed, "CALL RAW.LOAD_RAW_FILES()")[0]
    summary = json.loads(result)
    assert summary["status"] == "FAILED", summary
    assert sorted((f["file"], f["status"], f["rows_loaded"]) for f in summary["files"]) == sorted(
        [(key, "LOADED", 1), (failed, "FAILED", 0)]
    )
    assert summary["load_id"] and f"Failed: {failed}" in summary["message"]
    (named,) = sql(deployed, f"CALL RAW.LOAD_RAW_FILES(FILES => ['{key}'], DRY_RUN => FALSE)")[0]
    assert json.loads(named)["status"] == "NOTHING_TO_LOAD"


def test_rows_committed_without_tracking_are_counted_not_loaded_again(deployed: LocalStack, tmp_path: Path) -> None:
    daily = tmp_path / "daily"
    generate_daily(daily, dt.date(2024, 7, 27), scale="tiny", seed=12)
    report = upload_to(deployed, _one_file(tmp_path, daily / "ratings_20240727.csv"))
    first = pipeline.load(report.uploaded_keys)
    rows = first["files"][0]["rows_loaded"]
    count = raw_counts(deployed)["ratings"]
    # as if a CALL died after its COPY committed but before it recorded the outcome
    sql(deployed, f"DELETE FROM RAW.LOAD_TRACKING WHERE FILE_KEY = '{report.uploaded_keys[0]}'")
    again = pipeline.load(report.uploaded_keys)
    assert (again["files"][0]["status"], again["files"][0]["rows_loaded"]) == ("LOADED", rows), again
    assert raw_counts(deployed)["ratings"] == count


def _staged_movies_rows(stack: LocalStack) -> dict[str, list[tuple[int, str, str]]]:
    """{stage key: its data rows} of every staged movies file, read from the bucket (what the stage holds)."""
    import csv
    import io

    s3, settings = stack.s3_client(), stack.settings
    rows: dict[str, list[tuple[int, str, str]]] = {}
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=settings.prefix + "movies/")
    for obj in (o for page in pages for o in page.get("Contents", [])):
        key = obj["Key"][len(settings.prefix) :]
        parsed = contracts.parse_stage_key(key)
        assert parsed is not None and parsed.part is None, key  # movies files are never split
        body = s3.get_object(Bucket=settings.bucket, Key=obj["Key"])["Body"].read()
        if key.endswith(".gz"):
            body = gzip.decompress(body)
        reader = csv.reader(io.StringIO(body.decode("utf-8")))
        next(reader)
        rows[key] = [(int(r[0]), r[1], r[2]) for r in reader]
    return rows


def test_full_refresh_rebuilds_raw_from_files_staged_over_two_years(deployed: LocalStack) -> None:
    """Files staged under upload times two years apart, one of them late (an incremental CALL lists only recent
    upload-date prefixes, so it does not see it): a full refresh lists every prefix before it empties anything and
    rebuilds RAW.MOVIES to exactly the rows of every staged movies file."""
    import hashlib

    s3, settings = deployed.s3_client(), deployed.settings

    def stage(uploaded_at: str, first_id: int) -> str:
        body = "movieId,title,genres\n" + "".join(
            f"{first_id + i},Staged {uploaded_at} #{i} (2001),Drama\n" for i in range(5)
        )
        key = contracts.stage_key(
            "movies", uploaded_at, hashlib.sha256(body.encode()).hexdigest(), f"movies_{uploaded_at[:8]}.csv"
        )
        s3.put_object(Bucket=settings.bucket, Key=settings.prefix + key, Body=body.encode())
        return key

    oldest = stage("20241103T101500Z", 9_100_000)
    newest = stage(dt.datetime.now(dt.UTC).strftime(contracts.UPLOADED_AT_FORMAT), 9_400_000)
    loaded = pipeline.load([oldest, newest])  # now CALLs without FILES list only prefixes from the day before newest
    assert {oldest, newest} <= {f["file"] for f in loaded["files"] if f["status"] == "LOADED"}, loaded["message"]
    late = [stage("20250615T080000Z", 9_200_000), stage("20241231T235959Z", 9_300_000)]
    assert pipeline.load(datasets=["movies"])["status"] == "NOTHING_TO_LOAD"  # staged under old upload times

    staged = _staged_movies_rows(deployed)
    assert {oldest, newest, *late} <= set(staged)
    summary = pipeline.load(full_refresh=True, datasets=["movies"])
    assert summary["full_refresh"] is True and summary["status"] == "SUCCESS", summary["message"]
    outcome = {f["file"]: f for f in summary["files"]}
    assert set(outcome) == set(staged)
    reloaded = {key for key, f in outcome.items() if f["status"] == "LOADED"}
    for key, f in outcome.items():  # a second copy of a file's content counts once, as its duplicate
        assert f["status"] == "LOADED" or (f["status"] == "DUPLICATE" and staged[key] == staged[f["duplicate_of"]]), f
    assert {oldest, newest, *late} <= reloaded

    in_raw = sql(deployed, "SELECT SOURCE_FILE, MOVIE_ID, TITLE, GENRES FROM RAW.MOVIES")
    expected = [(key, *row) for key in reloaded for row in staged[key]]
    assert sorted((str(r[0]).removeprefix(settings.prefix), int(r[1]), r[2], r[3]) for r in in_raw) == sorted(expected)
    tracked = sql(deployed, "SELECT FILE_KEY, STATUS FROM RAW.LOAD_TRACKING WHERE DATASET = 'movies'")
    assert sorted(tracked) == sorted((key, outcome[key]["status"]) for key in staged)


def test_full_refresh_rebuilds_raw_to_the_same_counts(deployed: LocalStack) -> None:
    before = raw_counts(deployed)
    summary = pipeline.load(full_refresh=True)
    assert summary["full_refresh"] is True
    assert raw_counts(deployed) == before
    (n,) = sql(deployed, "SELECT COUNT(*) FROM RAW.LOAD_TRACKING WHERE STATUS = 'LOADING'")[0]
    assert n == 0


def _staged_data_lines(stack: LocalStack, dataset: str) -> dict[str, int]:
    """{stage key: its data lines} of every object staged for ``dataset``, counted in the bytes the bucket holds (each
    object, part or whole file, starts with the header line), one entry per distinct content and part."""
    s3, settings = stack.s3_client(), stack.settings
    seen: set[tuple[str, int | None]] = set()
    lines: dict[str, int] = {}
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=f"{settings.prefix}{dataset}/")
    for obj in sorted((o for page in pages for o in page.get("Contents", [])), key=lambda o: o["Key"]):
        key = obj["Key"][len(settings.prefix) :]
        parsed = contracts.parse_stage_key(key)
        assert parsed is not None, key
        if (parsed.checksum, parsed.part) in seen:  # the same content staged again: loaded once
            continue
        seen.add((parsed.checksum, parsed.part))
        body = s3.get_object(Bucket=settings.bucket, Key=obj["Key"])["Body"].read()
        if key.endswith(".gz"):
            with contextlib.suppress(EOFError, OSError):  # a truncated gzip has no rows to load
                body = gzip.decompress(body)
            if body[:2] == b"\x1f\x8b":
                continue
        lines[key] = body.count(b"\n") - 1
    return lines


def test_full_refresh_reloads_every_file_with_new_load_ids_and_resets_rejects(
    deployed: LocalStack, tmp_path: Path
) -> None:
    """A full refresh of ratings and tags: every RAW row, tracking row and reject is the refresh's own (nothing kept
    from before, nothing doubled), each file counted once with ATTEMPTS 1, RAW.RATINGS holds exactly the staged files'
    own data lines less the 4 lines that test_malformed_rows_are_rejected_with_line_and_reason's file gets rejected."""
    bad = sql(deployed, "SELECT FILE_KEY FROM RAW.LOAD_TRACKING WHERE FILE_NAME = 'ratings_20240801.csv'")
    assert len(bad) == 1
    (bad_key,) = bad[0]
    # a tags file loaded before the refresh (also when this test runs after that one alone)
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "tags_20240103.csv").write_text("userId,movieId,tag,timestamp\n8,2,before the refresh,1700000001\n")
    pipeline.load(upload_to(deployed, landing).uploaded_keys)
    summary = pipeline.load(full_refresh=True, datasets=["ratings", "tags"])
    load_id = summary["load_id"]
    assert summary["full_refresh"] is True
    outcome = {f["file"]: f for f in summary["files"]}
    assert {f["dataset"] for f in outcome.values()} == {"ratings", "tags"}

    # every row of RAW.RATINGS and RAW.TAGS was loaded by the refresh
    for table in ("RAW.RATINGS", "RAW.TAGS"):
        assert sql(deployed, f"SELECT DISTINCT LOAD_ID FROM {table}") == [(load_id,)], table
    # each file tracked once, claimed by the refresh, first attempt
    tracked = sql(
        deployed,
        "SELECT FILE_KEY, STATUS, LOAD_ID, ATTEMPTS, ROWS_LOADED, ROWS_REJECTED FROM RAW.LOAD_TRACKING "
        "WHERE DATASET IN ('ratings', 'tags')",
    )
    assert sorted(r[0] for r in tracked) == sorted(outcome)
    assert {(r[2], r[3]) for r in tracked} == {(load_id, 1)}
    assert {r[0]: r[1] for r in tracked} == {k: f["status"] for k, f in outcome.items()}
    # the rejects are the refresh's: the malformed file's 4 lines once, nothing older
    rejects = sql(
        deployed,
        "SELECT FILE_KEY, LINE, LOAD_ID FROM RAW.LOAD_REJECTS WHERE FILE_KEY IN "
        "(SELECT FILE_KEY FROM RAW.LOAD_TRACKING WHERE DATASET IN ('ratings', 'tags')) ORDER BY FILE_KEY, LINE",
    )
    assert rejects == [(bad_key, line, load_id) for line in (3, 4, 5, 7)]
    assert outcome[bad_key]["status"] == "PARTIALLY_LOADED"

    # RAW.RATINGS against the staged files' own line counts, file by file
    staged = _staged_data_lines(deployed, "ratings")
    per_file = dict(sql(deployed, "SELECT SOURCE_FILE, COUNT(*) FROM RAW.RATINGS GROUP BY SOURCE_FILE"))
    per_file = {str(k).removeprefix(deployed.settings.prefix): v for k, v in per_file.items()}
    expected = {key: n - (4 if key == bad_key else 0) for key, n in staged.items()}
    assert per_file == expected
    duplicates = {k for k, f in outcome.items() if f["status"] == "DUPLICATE" and f["dataset"] == "ratings"}
    assert set(staged) | duplicates == {k for k, f in outcome.items() if f["dataset"] == "ratings"}


def test_a_file_taken_over_while_it_waited_its_turn_is_not_loaded_again(deployed: LocalStack, tmp_path: Path) -> None:
    """A CALL loads its claimed files one after another; one whose claim another CALL took over meanwhile (it waited
    longer than the stale-claim limit) is left to that CALL, never loaded by both."""
    from snowflake.procedures import load_raw_files as handler

    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "tags_20240102.csv").write_text("userId,movieId,tag,timestamp\n7,1,taken over,1700000000\n")
    (key,) = upload_to(deployed, landing).uploaded_keys
    parsed = contracts.parse_stage_key(key)
    assert parsed is not None
    # another CALL took the file over: the tracking row is LOADING under its load id
    sql(
        deployed,
        "INSERT INTO RAW.LOAD_TRACKING (FILE_KEY, DATASET, FILE_NAME, CONTENT_CHECKSUM, STATUS, LOAD_ID, CLAIMED_AT, "
        f"ATTEMPTS) VALUES ('{key}', 'tags', '{parsed.name}', '{parsed.checksum}', 'LOADING', 'the-other-call', "
        "SYSDATE(), 2)",
    )
    before = raw_counts(deployed)
    session = snowpark_session(deployed, "RAW")
    try:
        src = {"key": key, "dataset": "tags", "name": parsed.name, "checksum": parsed.checksum, "objects": [key]}
        result = handler._load(session, src, "this-call", None, force=True)
    finally:
        session.close()
    assert result["status"] == "SKIPPED" and "taken over by another CALL" in result["first_error"], result
    assert raw_counts(deployed) == before
    assert sql(deployed, f"SELECT STATUS, LOAD_ID FROM RAW.LOAD_TRACKING WHERE FILE_KEY = '{key}'") == [
        ("LOADING", "the-other-call")
    ]
    sql(deployed, f"DELETE FROM RAW.LOAD_TRACKING WHERE FILE_KEY = '{key}'")


def test_an_administrators_status_counts_the_staged_files(deployed: LocalStack, tmp_path: Path) -> None:
    """`netflix-elt status` as the administrator: the staged files (every stage key in the bucket) and, per dataset,
    the tracked files."""
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "tags_20240729.csv").write_text("userId,movieId,tag,timestamp\n4,1,counted,1722211200\n")
    assert pipeline.load(upload_to(deployed, landing).uploaded_keys)["status"] == "SUCCESS"
    prefix = deployed.settings.prefix
    pages = (
        deployed.s3_client().get_paginator("list_objects_v2").paginate(Bucket=deployed.settings.bucket, Prefix=prefix)
    )
    keys = [o["Key"].removeprefix(prefix) for page in pages for o in page.get("Contents", [])]
    staged = sum(1 for k in keys if contracts.parse_stage_key(k) is not None)
    assert staged >= 1
    status = pipeline.status()
    assert status["staged_objects"] == staged
    tracked = sql(deployed, "SELECT DATASET, COUNT(*) FROM RAW.LOAD_TRACKING GROUP BY DATASET")
    assert {d["dataset"]: d["files"] for d in status["datasets"]} == {d: int(n) for d, n in tracked}
