"""How the project's clients talk to Snowflake: dependency floors that Snowflake-side features need."""

from __future__ import annotations

import json
import re
import tomllib
from importlib.metadata import version
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.version import Version
from snowflake.connector.errors import ProgrammingError

from tests.conftest import REPO

# the incremental models use tmp_relation_type='transient' with the delete+insert strategy, which dbt-snowflake
# handles from this release on
TRANSIENT_DELETE_INSERT = Version("1.11.5")


def _transient_delete_insert_models() -> list[str]:
    models = []
    for path in sorted((REPO / "netflix_dbt" / "models").rglob("*.sql")):
        text = path.read_text()
        if re.search(r"tmp_relation_type\s*=\s*'transient'", text) and "delete+insert" in text:
            models.append(path.stem)
    return models


def test_dbt_snowflake_floor_admits_no_release_without_transient_delete_insert() -> None:
    models = _transient_delete_insert_models()
    assert models, "no incremental model uses tmp_relation_type='transient' with delete+insert any more"
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    (req,) = [Requirement(r) for r in project["project"]["dependencies"] if Requirement(r).name == "dbt-snowflake"]
    floors = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    assert floors and min(floors) >= TRANSIENT_DELETE_INSERT, (str(req), models)
    # and the locked, installed release is one of them
    assert Version(version("dbt-snowflake")) >= TRANSIENT_DELETE_INSERT
    assert req.specifier.contains(Version("1.11.4")) is False


def test_array_arguments_are_cast_where_the_project_calls_the_procedure(deployed_stack: Any) -> None:
    """FILES and DATASETS are ARRAY parameters: a VARIANT from PARSE_JSON must be cast, as the DAG's operator and the
    CLI do (an uncast VARIANT is refused)."""
    from netflix_elt import pipeline
    from netflix_elt.load_task import LOAD_SQL

    key = "ratings/20990101T000000Z_0000000000000000/ratings_nowhere.csv"
    with pipeline.connect() as conn:
        cur = conn.cursor()
        with pytest.raises(ProgrammingError, match="Invalid argument types"):
            cur.execute("CALL RAW.LOAD_RAW_FILES(PARSE_JSON(%s), FALSE, NULL, TRUE)", (json.dumps([key]),))
        cur.execute(LOAD_SQL.replace("FALSE)", "TRUE)"), {"files": json.dumps([key])})  # a dry run
        assert json.loads(cur.fetchone()[0])["status"] == "DRY_RUN"
    sql, params = pipeline.load_call_sql([key], datasets=["ratings"], dry_run=True)
    with pipeline.connect() as conn:
        cur = conn.cursor()
        cur.execute(sql, params)
        assert json.loads(cur.fetchone()[0])["status"] == "DRY_RUN"
