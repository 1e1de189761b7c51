"""Run the DAG's own load task, ``run_db_raw_ingestion`` of ``dags/full_netflix_pipeline.py``, outside a DAG run.

    python -m netflix_elt.certify.dag_load KEYS_JSON OUT_JSON [RUNS]

The task is taken from the parsed DAG, so its operator, SQL, parameters, handler and autocommit are the DAG's own.
Its templated fields are rendered by Airflow with the stage keys in place of the upload task's XCom, and
``execute`` runs it: the Snowflake hook logs in through the ``snowflake_default`` connection, which comes from the
environment (``AIRFLOW_CONN_SNOWFLAKE_DEFAULT``). No scheduler and no Airflow metadata database are involved.

The task runs RUNS times (default 1; 2 is a retry of the same XCom, which must load nothing) and writes
``{"summaries": [...]}`` (what the handler returned each time, the task's XCom), with ``"error"`` (the one line the
task would log before failing) if a run failed, to OUT_JSON. It runs in a child process of ``netflix-elt certify``, whose
environment names the connection, the dbt manifest the DAG renders its dbt task group from, and AIRFLOW_HOME.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent.parent
DAG_FILE = REPO / "dags" / "full_netflix_pipeline.py"
LOAD_TASK_ID = "run_db_raw_ingestion"


class UpstreamXCom:
    """The part of a task instance the load task's template reads: the upload task's return value (the keys)."""

    def __init__(self, upstream: set[str], keys: list[str]) -> None:
        self.upstream, self.keys = upstream, keys

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value", **_: Any) -> list[str] | None:
        return list(self.keys) if task_ids in self.upstream and key == "return_value" else None


def load_dag() -> Any:
    spec = importlib.util.spec_from_file_location("full_netflix_pipeline", DAG_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def run_load_task(dag: Any, keys: list[str]) -> Any:
    """Render and execute the DAG's load task for these stage keys; returns what it returns (its XCom)."""
    task = dag.get_task(LOAD_TASK_ID)
    context: dict[str, Any] = {"ti": UpstreamXCom(set(task.upstream_task_ids), keys), "task": task, "dag": dag}
    task.render_template_fields(context, jinja_env=dag.get_template_env())
    return task.execute(context)


def main(argv: list[str]) -> int:
    keys_file, out_file = Path(argv[0]), Path(argv[1])
    runs = int(argv[2]) if len(argv) > 2 else 1
    keys = json.loads(keys_file.read_text())
    out: dict[str, Any] = {"summaries": []}
    try:
        dag = load_dag()
        for _ in range(runs):
            out["summaries"].append(run_load_task(dag, keys))
    except Exception as e:  # the task's failure, as one line (its log has the rest)
        lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
        out["error"] = f"{type(e).__name__}: {lines[0] if lines else ''}"
    out_file.write_text(json.dumps(out, default=str))
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
