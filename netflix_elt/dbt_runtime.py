"""Make dbt cheap to invoke many times in one long-lived process, such as an Airflow worker that runs a dbt task
per model.

dbt-common records which module defined each behavior flag by calling ``inspect.stack()``, once per flag for every
adapter it creates. ``BehaviorFlagRendered._default_source`` is evaluated even when the flag names its source.
``inspect.stack()`` reads the source lines of every frame, and for a frame whose file is not a module it scans all
of ``sys.modules``. An Airflow task process has thousands of modules loaded, so this costs about 2.7 s per dbt
invocation there (measured: 3.9 s per invocation in all).

`speed_up_dbt` installs a frame walk that gives the same answer (the first caller outside the flags module) without
reading any source. It also moves the objects that exist after the imports to the permanent generation
(``gc.freeze()``, once per process). Cosmos runs ``gc.collect()`` after every dbt command, and that collection then
has only the new objects to look at.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

_FLAGS_MODULE = "dbt_common.behavior_flags"
_frozen = False


def _default_source() -> str:
    """The name of the first module on the call stack that is not dbt_common.behavior_flags (what dbt-common's
    own implementation returns, without inspect.stack())."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__")
        if name and name != _FLAGS_MODULE:
            return str(name)
        frame = frame.f_back  # type: ignore[assignment]
    return "Unknown"


def speed_up_dbt(*_context: Any) -> None:
    """Apply both measures (idempotent). Usable as an Airflow ``on_execute_callback`` (the context is ignored)."""
    global _frozen
    try:
        from dbt_common import behavior_flags
    except ImportError:  # dbt is not installed in this process: nothing to speed up
        return
    rendered = behavior_flags.BehaviorFlagRendered
    if getattr(rendered._default_source, "__func__", rendered._default_source) is not _default_source:
        rendered._default_source = staticmethod(_default_source)  # type: ignore[method-assign,assignment]
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True
