"""netflix_elt.dbt_runtime: dbt's behavior flags keep naming the module that defined them, without inspect.stack()."""

from __future__ import annotations

import gc

from dbt_common.behavior_flags import BehaviorFlagRendered

from netflix_elt.dbt_runtime import speed_up_dbt


def _flag_source() -> str:
    flag = BehaviorFlagRendered({"name": "some_flag", "default": False, "description": "d"}, {})  # type: ignore[typeddict-item]
    return str(flag._behavior_change_event.flag_source)


def test_behavior_flags_name_their_module_and_frozen_objects_are_left_alone() -> None:
    speed_up_dbt()
    speed_up_dbt({"task": None})  # as an Airflow callback; applying it twice changes nothing
    assert _flag_source() == __name__  # the module that created the flag, as dbt-common's own lookup says
    assert gc.get_freeze_count() > 0
